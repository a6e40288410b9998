"""Plots of tuning curves (display only): the radial plot of the Curve Detectors article, and line plots.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, works headless with Agg);
callers save them (``fig.savefig(...)``) or let a notebook display them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

__all__ = ["radial_tuning_plot", "tuning_curve_grid"]


def _orientation_curves(curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(orientations [K] degrees, responses [U, K] averaged over the other parameters, preferred [U])."""
    return (
        curves.orientations.numpy(),
        curves.orientation_curve().numpy(),
        curves.preferred_orientation().numpy(),
    )


def radial_tuning_plot(
    curves,
    *,
    normalize: bool = True,
    labels: Sequence[str] | None = None,
    cmap: str = "hsv",
    title: str | None = None,
    size: float = 5.0,
) -> Figure:
    """All units' orientation tuning (averaged over curvature) wrapped around one circle.

    Each unit is a closed polar curve, radius = response (scaled to its own peak when ``normalize``),
    coloured by its preferred orientation on a cyclic colour map, as in Curve Detectors' radial
    tuning figure. ``curves`` is a :class:`circuits_vision.analysis.tuning.TuningCurves`.
    """
    orientations, responses, preferred = _orientation_curves(curves)
    if normalize:
        peak = np.maximum(responses.max(axis=1, keepdims=True), 1e-12)
        responses = np.clip(responses, 0, None) / peak
    colour = colormaps[cmap]
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot(projection="polar")
    theta = np.deg2rad(np.append(orientations, orientations[:1] + curves.period)) * (360.0 / curves.period)
    for u, unit in enumerate(curves.units):
        radius = np.append(responses[u], responses[u, :1])
        label = labels[u] if labels is not None else str(unit)
        ax.plot(theta, radius, color=colour((preferred[u] % curves.period) / curves.period), lw=1.5, label=label)
    ax.set_yticklabels([])
    ax.set_title(title or f"{curves.layer}: orientation tuning of {len(curves.units)} units", fontsize=10)
    if len(curves.units) <= 16:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, title="unit")
    fig.tight_layout()
    return fig


def tuning_curve_grid(curves, *, columns: int = 5, size: float = 2.0) -> Figure:
    """One small line plot per unit: response (baseline std) vs orientation, one line per value of the
    second parameter axis (e.g. radius) when there is one."""
    n = len(curves.units)
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(columns * size, rows * size * 0.8))
    names = list(curves.axes)
    axis = names.index("orientation")
    moved = curves.responses.movedim(axis + 1, 1).reshape(n, len(curves.orientations), -1).numpy()
    other = [name for name in names if name != "orientation"]
    legend = [f"{other[0]}={v:g}" for v in curves.axes[other[0]].tolist()] if len(other) == 1 else None
    for u, unit in enumerate(curves.units):
        ax = fig.add_subplot(rows, columns, u + 1)
        ax.plot(curves.orientations.numpy(), moved[u], lw=1)
        ax.set_title(f"{curves.layer}:{unit}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xticks(np.linspace(0, curves.period, 5))
        if u == 0 and legend:
            ax.legend(legend, fontsize=5, frameon=False)
    fig.tight_layout()
    return fig
