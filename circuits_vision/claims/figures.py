"""One small PNG per claim: the claim's own plot of its measurement beside each null it was tested against.

Figures are drawn from a result's stored ``numbers`` (so a claim read back from the store gets its figure
too), with matplotlib's object API (no pyplot, no display needed).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable

import numpy as np

from circuits_vision.claims.result import ClaimResult

_COLOUR = {"holds": "#2a8a2a", "partly": "#b08a00", "fails": "#b02a2a", "not applicable": "#777777"}


def plot_null(null: dict, ax) -> None:
    """The null distribution of one statistic with the measured value marked."""
    observed = null["observed"]
    label = textwrap.fill(null["statistic"], 42)
    if null["kind"] == "overlap":
        ax.bar(null["support"], null["pmf"], color="#999999", width=0.8, label="shuffled labels")
        ax.set_xlabel(label, fontsize=6)
        ax.set_ylabel("probability", fontsize=7)
    elif null["kind"] == "samples" and null["samples"]:
        ax.hist(null["samples"], bins=20, color="#999999", label=f"null ({null['n']} draws)")
        ax.set_xlabel(label, fontsize=6)
        ax.set_ylabel("draws", fontsize=7)
    elif null["kind"] == "summary" and null["null_std"] > 0:
        mean, std = null["null_mean"], null["null_std"]
        x = np.linspace(min(mean - 4 * std, observed), max(mean + 4 * std, observed), 200)
        ax.fill_between(x, np.exp(-0.5 * ((x - mean) / std) ** 2), color="#cccccc", label=f"null ({null['n']} draws)")
        ax.set_xlabel(label, fontsize=6)
        ax.set_yticks([])
    else:
        if null["kind"] == "reference":
            ax.axvline(null["reference"], color="#555555", linestyle="--", label="null")
        ax.set_xlabel(label, fontsize=6)
        ax.set_yticks([])
    if isinstance(observed, (int, float)) and math.isfinite(observed):
        ax.axvline(observed, color="#c03030", linewidth=2, label="measured")
    ax.set_title(
        "beyond the null"
        if null["kind"] == "reference" and null["p_value"] == 0
        else "not beyond the null"
        if null["kind"] == "reference"
        else f"p = {null['p_value']:.2g}",
        fontsize=8,
    )
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, frameon=False)


def claim_figure(result: ClaimResult, plot: Callable | None = None) -> bytes | None:
    """PNG bytes: ``plot(numbers, ax)`` (when given) and one panel per null in ``numbers["nulls"]``;
    ``None`` when there is nothing to draw (a claim that did not apply)."""
    from matplotlib.figure import Figure

    nulls = list(result.numbers.get("nulls", []))
    panels = ([plot] if plot is not None and result.verdict != "not applicable" else []) + nulls
    if not panels:
        return None
    figure = Figure(figsize=(2.8 * len(panels), 2.6), dpi=80)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        try:
            panel(result.numbers, ax) if callable(panel) else plot_null(panel, ax)
        except (KeyError, ValueError, TypeError, IndexError) as error:  # a record without the plot's numbers
            ax.text(0.5, 0.5, f"no figure:\n{type(error).__name__}", ha="center", va="center", fontsize=7)
            ax.set_axis_off()
    figure.suptitle(f"{result.claim}: {result.verdict}", fontsize=9, color=_COLOUR[result.verdict])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def polar_orientations(ax, measured: dict, published: dict) -> None:
    """Measured against published preferred orientations (degrees), one point per unit, on a circle plot."""
    units = [u for u in published if u in measured]
    x = np.array([published[u] for u in units], dtype=float)
    y = np.array([measured[u] for u in units], dtype=float)
    ax.scatter(x, y, s=12, color="#3060c0")
    ax.plot([0, 360], [0, 360], color="#999999", linewidth=0.8)
    ax.set_xlim(0, 360)
    ax.set_ylim(0, 360)
    ax.set_xlabel("published orientation (deg)", fontsize=7)
    ax.set_ylabel("measured (deg)", fontsize=7)
    ax.tick_params(labelsize=6)


def plot_weight_profile(numbers: dict, ax) -> None:
    """Mean net weight by orientation difference (``bins``, ``profile``) inside its null band."""
    ax.fill_between(numbers["bins"], numbers["null_low"], numbers["null_high"], color="#dddddd", label="null 5-95%")
    ax.plot(numbers["bins"], numbers["profile"], marker="o", markersize=3, color="#3060c0", label="measured")
    ax.axhline(0, color="#999999", linewidth=0.6)
    ax.set_xlabel("3b - 3a orientation (deg)", fontsize=7)
    ax.set_ylabel("mean net weight", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, frameon=False)
