"""Are an activation atlas's curve cells rendered as curves of their orientation? A measured answer.

    check = curve_cells(result)          # result: activation_atlas(...) on scenes with known orientations
    check.median_error                   # degrees, rendered orientation against the cell's scenes
    check.null_median, check.p_value     # the same with the renders shuffled among the curve cells

A cell belongs to the curve region when at least ``min_share`` of its activations are curve
activations: the position sees a curve (labels named ``curve_*``; with object masks, positions beside
the object are ``background``). Its scene orientation is the circular mean of those activations'
drawn orientations; its rendered orientation is read from the picture by
:func:`circuits_vision.analysis.image_orientation.curve_orientation` (no model involved). The null
keeps every cell's scenes and every picture and only breaks which picture goes with which cell, so a
median error below the null's says the renders follow the cells' orientations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuits_vision.analysis.image_orientation import circular_difference, curve_orientation
from circuits_vision.results import Result

__all__ = ["CurveCells", "curve_cells"]


@dataclass(repr=False)
class CurveCells(Result):
    """The curve region of an activation atlas and how well its pictures follow it.

    Attributes:
        cells: ``[K]`` indices into the atlas's cells; ``shares [K]`` curve activations' share of each.
        scene_orientation: ``[K]`` circular mean of the cell's curve activations' drawn orientations (degrees);
            ``concentration [K]`` its mean resultant length (1: all the same, 0: spread round the circle).
        rendered_orientation: ``[K]`` the orientation read from each cell's picture; ``errors [K]`` the
            circular difference to ``scene_orientation`` (0..180).
        null_medians: ``[P]`` the median error with pictures permuted among the curve cells.
        axis_null_medians: ``[P]`` the same for the axis error (:attr:`axis_errors`), same permutations.
    """

    cells: torch.Tensor
    shares: torch.Tensor
    scene_orientation: torch.Tensor
    concentration: torch.Tensor
    rendered_orientation: torch.Tensor
    errors: torch.Tensor
    null_medians: torch.Tensor
    axis_null_medians: torch.Tensor

    @property
    def axis_errors(self) -> torch.Tensor:
        """``[K]`` 0..90 degrees: the error of the stroke's axis, whichever way it bends (``min(e, 180 - e)``)."""
        return torch.minimum(self.errors, 180 - self.errors)

    @property
    def median_axis_error(self) -> float:
        return float(self.axis_errors.median()) if self.errors.numel() else float("nan")

    @property
    def axis_null_median(self) -> float:
        return float(self.axis_null_medians.median()) if self.axis_null_medians.numel() else float("nan")

    @property
    def axis_p_value(self) -> float:
        """As :attr:`p_value`, for the axis error."""
        return _p_value(self.axis_null_medians, self.median_axis_error)

    @property
    def median_error(self) -> float:
        return float(self.errors.median()) if self.errors.numel() else float("nan")

    @property
    def null_median(self) -> float:
        return float(self.null_medians.median()) if self.null_medians.numel() else float("nan")

    @property
    def p_value(self) -> float:
        """Share of permutations whose median error is at most the observed one (with the observed counted)."""
        return _p_value(self.null_medians, self.median_error)

    def within(self, degrees: float) -> float:
        """Share of curve cells whose picture is within ``degrees`` of their scenes' orientation."""
        return float((self.errors <= float(degrees)).double().mean()) if self.errors.numel() else float("nan")

    def table(self) -> list[dict]:
        return [
            {
                "cell": int(c),
                "curve_share": float(s),
                "scene_orientation": float(o),
                "concentration": float(r),
                "rendered_orientation": float(p),
                "error": float(e),
            }
            for c, s, o, r, p, e in zip(
                self.cells,
                self.shares,
                self.scene_orientation,
                self.concentration,
                self.rendered_orientation,
                self.errors,
            )
        ]

    def __str__(self) -> str:
        if not self.cells.numel():
            return "no curve cells"
        return (
            f"{len(self.cells)} curve cells: median orientation error {self.median_error:.1f} deg "
            f"({self.within(45):.0%} within 45 deg); pictures shuffled among the cells {self.null_median:.1f} deg "
            f"(p = {self.p_value:.3g}); chance 90 deg. Axis (either bend): {self.median_axis_error:.1f} deg, "
            f"shuffled {self.axis_null_median:.1f} deg (p = {self.axis_p_value:.3g}); chance 45 deg"
        )

    def __repr__(self) -> str:
        return f"CurveCells(cells={len(self.cells)}, median_error={self.median_error:.1f})"


def _p_value(null: torch.Tensor, observed: float) -> float:
    """Share of permutations whose median error is at most the observed one (the observed counted)."""
    if not null.numel():
        return float("nan")
    return (int((null <= observed).sum()) + 1) / (null.numel() + 1)


def curve_cells(result, *, min_share: float = 0.5, permutations: int = 2000, seed: int = 0) -> CurveCells:
    """Measure the curve region of ``result`` (an :class:`ActivationAtlas` with ``orientations``).

    Args:
        min_share: a cell is a curve cell when at least this share of its activations are curve activations.
        permutations: shuffles of pictures among the curve cells for the null (``torch.Generator`` seeded by ``seed``).
    """
    if getattr(result, "orientations", None) is None:
        raise ValueError(
            "the atlas has no drawn orientations: build it on the held-out scenes (images=None) "
            "or on a (batch, labels, {'orientation': ...}) stream"
        )
    if not 0 < float(min_share) <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    curve = torch.tensor([name.startswith("curve_") for name in result.label_names] + [False])
    labels = result.labels.clamp(min=-1)
    is_curve = curve[torch.where(labels >= 0, labels, len(result.label_names))] & ~torch.isnan(result.orientations)
    rows = []
    for k in range(len(result.cells)):
        members = result.sample_cell == k
        mine = members & is_curve
        share = float(mine.sum()) / max(1, int(members.sum()))
        if share < float(min_share) or not bool(mine.any()):
            continue
        angles = torch.deg2rad(result.orientations[mine].double())
        s, c = angles.sin().mean(), angles.cos().mean()
        rows.append((k, share, float(torch.rad2deg(torch.atan2(s, c))) % 360.0, float(torch.sqrt(s * s + c * c))))
    if not rows:
        empty = torch.zeros(0)
        return CurveCells(torch.zeros(0, dtype=torch.long), empty, empty, empty, empty, empty, empty, empty)
    cells = torch.tensor([r[0] for r in rows])
    scene = torch.tensor([r[2] for r in rows], dtype=torch.float64)
    rendered = curve_orientation(result.images[cells]).degrees.double()
    errors = circular_difference(rendered, scene)
    generator = torch.Generator().manual_seed(int(seed))
    shuffled = [
        circular_difference(rendered[torch.randperm(len(rows), generator=generator)], scene)
        for _ in range(int(permutations) if len(rows) > 1 else 0)
    ]
    null = torch.stack([e.median() for e in shuffled]) if shuffled else torch.zeros(0, dtype=torch.float64)
    axis_null = (
        torch.stack([torch.minimum(e, 180 - e).median() for e in shuffled])
        if shuffled
        else torch.zeros(0, dtype=torch.float64)
    )
    return CurveCells(
        cells,
        torch.tensor([r[1] for r in rows]),
        scene,
        torch.tensor([r[3] for r in rows]),
        rendered,
        errors,
        null,
        axis_null,
    )
