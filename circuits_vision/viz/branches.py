"""Figures for :mod:`circuits_vision.analysis.branches`: where each category's units sit, per branch.

:func:`plot_report` draws a :class:`~circuits_vision.analysis.branches.BranchReport` as two panels:
stacked bars (one bar per branch, one colour per category, bar height = units) and a heat map of
log2 enrichment (category x branch) with stars for Bonferroni-corrected significance
(``*`` < 0.05, ``**`` < 1e-3, ``***`` < 1e-6). Returns a ``matplotlib.figure.Figure`` built without
pyplot (no backend is chosen or changed, nothing is shown or saved; notebooks display it inline).
"""

from __future__ import annotations

import math

import matplotlib
from matplotlib.figure import Figure

__all__ = ["plot_report", "plot_routing"]


def _stars(p: float) -> str:
    return "***" if p < 1e-6 else "**" if p < 1e-3 else "*" if p < 0.05 else ""


def plot_report(report, *, title: str | None = None, figsize: tuple[float, float] = (11.0, 4.0)) -> Figure:
    """Stacked bars of category counts per branch and an enrichment heat map; returns the figure."""
    categories, branch_names, counts = report.matrix("count")
    fig = Figure(figsize=figsize)
    bars, key, heat = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 0.45, 1.3]})
    key.axis("off")  # holds the legend between the panels
    colours = matplotlib.colormaps["tab20"]
    bottoms = [0.0] * len(branch_names)
    for i, name in enumerate(categories):
        heights = counts[i]
        label = f"{name} ({len(report.categories[name])})"
        bars.bar(branch_names, heights, bottom=bottoms, color=colours(i % 20), label=label)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    widths = [b.width for b in report.branches]
    bars.plot(branch_names, widths, "k_", markersize=20, label="branch width")
    bars.set_ylabel("units")
    bars.set_title(f"{report.layer}: category units per branch")
    key.legend(*bars.get_legend_handles_labels(), fontsize=7, loc="center left", frameon=False)

    log_enrichment = [
        [math.log2(report.row(c, b).enrichment) if report.row(c, b).count > 0 else math.nan for b in branch_names]
        for c in categories
    ]
    finite = [abs(v) for row in log_enrichment for v in row if not math.isnan(v)]
    limit = max(finite + [1.0])
    image = heat.imshow(log_enrichment, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    heat.set_xticks(range(len(branch_names)), branch_names)
    heat.set_yticks(range(len(categories)), [c[:24] for c in categories], fontsize=7)
    for i, c in enumerate(categories):
        for j, b in enumerate(branch_names):
            row = report.row(c, b)
            text = "empty" if not row.tested else f"{row.count}{_stars(row.p_bonferroni)}"
            value = log_enrichment[i][j]
            dark = not math.isnan(value) and abs(value) > 0.6 * limit
            heat.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    heat.set_title("log2 enrichment (count; * Bonferroni p)")
    fig.colorbar(image, ax=heat, fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_routing(routing, *, figsize: tuple[float, float] = (8.0, 3.0)) -> Figure:
    """Each downstream unit's weight mass fraction per branch, units sorted by their dominant branch."""
    fraction = routing.fraction
    order = sorted(range(fraction.shape[0]), key=lambda t: (int(fraction[t].argmax()), -float(fraction[t].max())))
    fig = Figure(figsize=figsize)
    ax = fig.subplots()
    image = ax.imshow(fraction[order].T.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(routing.branches)), [b.name for b in routing.branches])
    ax.set_xlabel(f"{routing.target} units (sorted by dominant branch)")
    ax.set_title(f"share of |weights| from each branch of {routing.source} ({routing.method})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
