"""Pictures of feature families and their circuits (display only, matplotlib).

Every function returns a ``matplotlib.figure.Figure`` and never shows or saves it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["echo_figure", "family_figure", "pattern_figure", "similarity_figure"]


def _figure(rows: int, columns: int, size: float):
    import matplotlib.pyplot as plt  # only when drawing

    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * size * 1.2), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _picture(value) -> tuple[np.ndarray, dict]:
    """A kernel / image ``[C, H, W]`` (or ``[H, W]``) -> an array imshow can draw, and its imshow keywords.

    3 channels: RGB (images in [0, 1] as they are; signed kernels around mid grey). Otherwise the sum
    over channels on a red (positive) / blue (negative) scale centred on 0.
    """
    array = (
        value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, dtype=np.float32)
    )
    if array.ndim == 3 and array.shape[0] == 3:
        if array.min() < 0 or array.max() > 1:
            array = 0.5 + array / (2 * max(float(np.abs(array).max()), 1e-12))
        return np.clip(array.transpose(1, 2, 0), 0, 1), {}
    if array.ndim == 3:
        array = array.sum(0)
    bound = max(float(np.abs(array).max()), 1e-12)
    return array, {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}


def family_figure(family, pictures, *, columns: int = 8, size: float = 1.4, title: str | None = None):
    """Small multiples of one family's members ordered by angle (hue, scale), labelled ``unit @ value``.

    Args:
        family: a :class:`~circuits_vision.analysis.equivariance.Family`.
        pictures: ``{unit: [C, H, W]}``, or a tensor ``[C_layer, C, H, W]`` indexed by unit (kernels from
            ``unit_kernels`` or feature visualizations).
    """
    members = sorted(family.members, key=lambda u: family.values[u])
    rows = -(-len(members) // columns)
    fig, axes = _figure(rows, min(columns, len(members)), size)
    unit_label = "" if family.kind == "scale" else "\N{DEGREE SIGN}"
    for ax in axes.flat[len(members) :]:
        ax.axis("off")
    for ax, unit in zip(axes.flat, members):
        picture = pictures[unit] if isinstance(pictures, Mapping) else pictures[unit]
        array, style = _picture(picture)
        ax.imshow(array, **style)
        ax.set_title(f"{unit} @ {family.values[unit]:.0f}{unit_label}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def similarity_figure(report, *, size: float = 5.0):
    """Best similarity over the searched transformations for every pair, units grouped by family and angle."""
    import matplotlib.pyplot as plt

    if report.similarity is None:
        raise ValueError(f"this report has no similarity matrix ({report.explanation or 'empty'})")
    best = report.similarity.max(0).values.float().cpu().numpy()
    row_of = {u: i for i, u in enumerate(report.units)}
    ordered = [u for fam in report.families for u in fam.members]
    ordered += [u for u in report.units if u not in set(ordered)]
    index = [row_of[u] for u in ordered]
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(best[np.ix_(index, index)], cmap="viridis", vmin=-1, vmax=1)
    ax.set_title(f"best similarity after {report.kind} ({report.layer or 'units'})", fontsize=9)
    ax.set_xlabel("units (families first, by angle)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig


def pattern_figure(pattern, *, size: float = 4.0):
    """Net weight against relative angle for a :class:`~circuits_vision.analysis.motifs.CurvePattern`."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(size * 1.3, size))
    colors = ["tab:red" if w > 0 else "tab:blue" for w in pattern.net_weight]
    width = 0.8 * (pattern.relative_angles[1] - pattern.relative_angles[0]) if len(pattern.relative_angles) > 1 else 10
    ax.bar(pattern.relative_angles, pattern.net_weight, width=width, color=colors)
    ax.axvline(pattern.aligned, color="k", linestyle=":", label="aligned")
    ax.axvline(pattern.opposite, color="gray", linestyle="--", label="opposite")
    ax.axhline(0, color="k", linewidth=0.5)
    ax.set_xlabel("relative angle b - a (deg)")
    ax.set_ylabel("mean net weight")
    ax.legend(fontsize=8)
    return fig


def echo_figure(result, *, columns: int = 4, size: float = 2.2):
    """Tuning of each target member before (black) and after (red) the inhibition was zeroed."""
    rows = -(-len(result.units) // columns)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        rows, min(columns, len(result.units)), figsize=(columns * size, rows * size), squeeze=False
    )
    angles = result.orientations.numpy()
    for ax in axes.flat[len(result.units) :]:
        ax.axis("off")
    for k, (ax, unit) in enumerate(zip(axes.flat, result.units)):
        ax.plot(angles, result.before[k].numpy(), color="k", label="before")
        ax.plot(angles, result.after[k].numpy(), color="tab:red", label="after")
        ax.set_title(
            f"unit {unit}: echo {float(result.echo_before[k]):.2f} -> {float(result.echo_after[k]):.2f}", fontsize=7
        )
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6)
    return fig
