"""Which way does a curve in a picture face? A model-free read-out of a picture's curve orientation.

Feature visualizations of curve directions are judged by eye in the Distill articles; to judge many of
them (an activation atlas's curve cells) this module measures it: the picture's edge map (the
colour-gradient magnitude, so colour and polarity do not matter) is matched, by normalised
cross-correlation at every position, against the edge maps of drawn curves
(:func:`circuits_vision.stimuli.curves`) at every ``step`` degrees and a few radii. The picture's
orientation is the template orientation with the best match anywhere in the picture; the angle uses
the stimuli's convention (the direction the convex side faces, 0..360).

    found = curve_orientation(images)        # images [N, 3, H, W] in [0, 1]
    found.degrees                            # [N]
    found.contrast                           # [N] best match minus the mean over orientations

No model is involved, so the measure is not circular when it judges renders of a model's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from circuits_vision import stimuli
from circuits_vision.results import Result

__all__ = ["CurveOrientation", "circular_difference", "curve_orientation", "edge_map"]

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


@dataclass(repr=False)
class CurveOrientation(Result):
    """The measured curve orientation of ``N`` pictures.

    Attributes:
        degrees: ``[N]`` the best-matching template orientation (0..360, the convex side's direction).
        scores: ``[N, T]`` the best normalised cross-correlation anywhere in the picture, per orientation.
        orientations: ``[T]`` the template orientations (degrees).
        contrast: ``[N]`` the best score minus the mean score over orientations (how much the picture
            prefers one orientation; near 0 for a picture without an oriented curve).
    """

    degrees: torch.Tensor
    scores: torch.Tensor
    orientations: torch.Tensor

    @property
    def contrast(self) -> torch.Tensor:
        return self.scores.amax(1) - self.scores.mean(1)

    def table(self) -> list[dict]:
        return [
            {"image": i, "degrees": float(d), "best_score": float(s), "contrast": float(c)}
            for i, (d, s, c) in enumerate(zip(self.degrees, self.scores.amax(1), self.contrast))
        ]

    def __str__(self) -> str:
        shown = ", ".join(f"{float(d):.0f}" for d in self.degrees[:8])
        more = ", ..." if len(self.degrees) > 8 else ""
        return f"curve orientation of {len(self.degrees)} pictures (degrees): {shown}{more}"

    def __repr__(self) -> str:
        return f"CurveOrientation(n={len(self.degrees)}, templates={len(self.orientations)})"


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> ``[N, 1, H, W]``: the Sobel gradient magnitude summed over colour channels."""
    n, c, h, w = images.shape
    kernel = torch.stack([_SOBEL, _SOBEL.t()])[:, None].to(images)
    flat = F.pad(images.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    gradient = F.conv2d(flat, kernel)
    return gradient.pow(2).sum(1).sqrt().reshape(n, c, h, w).sum(1, keepdim=True)


def _templates(
    step: float, radii: Sequence[float], width: float, thickness: float, dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([T] orientations, [T * R, 1, s, s] zero-mean unit-norm edge templates)``, orientation-major."""
    orientations = torch.arange(0.0, 360.0, float(step), dtype=torch.float64).to(dtype)
    size = 2 * int(max(radii) + 2 * thickness + 3) + 1
    bank = [
        edge_map(stimuli.curves(orientations, float(r), angular_width=width, thickness=thickness, size=size))
        for r in radii
    ]
    kernels = torch.stack(bank, 1).reshape(len(orientations) * len(radii), 1, size, size).to(dtype)
    kernels = kernels - kernels.mean((2, 3), keepdim=True)
    return orientations, kernels / kernels.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


@torch.no_grad()
def curve_orientation(
    images: torch.Tensor,
    *,
    step: float = 5.0,
    radii: Sequence[float] = (8.0, 12.0, 16.0),
    angular_width: float = 110.0,
    thickness: float = 2.5,
    batch_size: int = 32,
) -> CurveOrientation:
    """The orientation of the curve that best matches each picture (see the module docstring).

    Args:
        images: ``[N, 3, H, W]`` in [0, 1].
        step: degrees between template orientations (divides 360).
        radii: template radii of curvature in pixels; the best radius is taken per orientation.
        angular_width, thickness: the templates' arc span (degrees) and stroke width (pixels).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] < 3:
        raise ValueError(f"images must be a [N, 3, H, W] tensor, got {getattr(images, 'shape', type(images))}")
    if not 0 < float(step) <= 180 or abs(360.0 / float(step) - round(360.0 / float(step))) > 1e-9:
        raise ValueError(f"step must divide 360 degrees, got {step}")
    if not radii or min(float(r) for r in radii) <= 0:
        raise ValueError(f"radii must be positive pixel radii, got {radii}")
    pictures = images[:, :3].detach().float().cpu()
    orientations, kernels = _templates(
        step, [float(r) for r in radii], float(angular_width), float(thickness), torch.float32
    )
    size = kernels.shape[-1]
    box = torch.ones(1, 1, size, size)
    scores = []
    for start in range(0, pictures.shape[0], int(batch_size)):
        # no edges beyond the border: a curve cut by the border still matches by its visible part
        edges = F.pad(edge_map(pictures[start : start + int(batch_size)]), (size // 2,) * 4)
        dot = F.conv2d(edges, kernels)
        total, squares = F.conv2d(edges, box), F.conv2d(edges * edges, box)
        # normalised cross-correlation: the zero-mean template against the picture patch's deviation
        spread = (squares - total * total / box.numel()).clamp_min(1e-8).sqrt()
        ncc = (dot / spread).flatten(2).amax(2)  # [B, T * R]
        scores.append(ncc.reshape(ncc.shape[0], len(orientations), len(radii)).amax(2))
    scores = torch.cat(scores)
    return CurveOrientation(orientations[scores.argmax(1)], scores, orientations)


def circular_difference(a: torch.Tensor, b: torch.Tensor, period: float = 360.0) -> torch.Tensor:
    """``|a - b|`` on a circle of ``period`` degrees, in ``[0, period / 2]`` (elementwise, broadcast)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    d = torch.remainder(a - b, period)
    return torch.minimum(d, period - d)
