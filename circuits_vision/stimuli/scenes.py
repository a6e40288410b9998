"""Random labelled scenes for training and testing small vision models.

Each scene is one drawn object (curve, angle, line, circle, grating, high-low pattern or blob) at a
random position, size, thickness and colour on a random contrasting background, plus a little pixel
noise. Labels make a model tell orientation, curvature and colour apart:

- ``shape``: object kind x orientation bin (``SHAPE_CLASSES``): curves and angles in eight 45-degree
  bins over 0..360 (which way the convex side / apex faces), lines in four bins over 0..180, and
  orientation-free kinds (circle, grating, high-low, blob);
- ``color``: the object's colour (``COLOR_NAMES``), drawn from a palette with a small jitter.

Everything is drawn from the ``torch.Generator`` passed in, so a seed fixes the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ._canvas import as_device
from .geometry import angles, circles, curves, lines
from .patterns import blobs, gratings, high_low

ORIENTED_KINDS = {"curve": (8, 360.0), "angle": (8, 360.0), "line": (4, 180.0)}
"""kind -> (number of orientation bins, period in degrees); bin k is centred on k * 45 degrees."""
PLAIN_KINDS = ("circle", "grating", "high_low", "blob")

SHAPE_CLASSES: tuple[str, ...] = (
    tuple(f"{kind}_{int(k * period / bins)}" for kind, (bins, period) in ORIENTED_KINDS.items() for k in range(bins))
    + PLAIN_KINDS
)
"""Class names of the ``shape`` label, e.g. ``"curve_45"`` (a curve facing 22.5..67.5 degrees)."""

COLORS = {
    "black": (0.0, 0.0, 0.0),
    "white": (1.0, 1.0, 1.0),
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.15),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "cyan": (0.1, 0.8, 0.85),
    "magenta": (0.85, 0.1, 0.8),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def _backgrounds(fg: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random background colours [N, 3] at least 0.45 (RGB distance) from the foreground ``fg`` [N, 3]."""
    bg = torch.rand(fg.shape, generator=g, device=fg.device)
    # Dim or pale backgrounds half the time, as in natural line drawings.
    grey = torch.rand(fg.shape[0], 1, generator=g, device=fg.device)
    bg = torch.where(torch.rand(fg.shape[0], 1, generator=g, device=fg.device) < 0.5, grey.expand_as(bg), bg)
    too_close = (bg - fg).norm(dim=1, keepdim=True) < 0.45
    far = torch.where(fg.mean(1, keepdim=True) > 0.5, 0.12, 0.88).expand_as(bg)
    return torch.where(too_close, far, bg)


def random_scenes(
    n: int,
    generator: torch.Generator,
    *,
    size: int = 64,
    noise: float = 0.03,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw ``n`` labelled scenes -> ``(images [n, 3, size, size] in [0, 1], labels)``.

    ``labels``: ``"shape"`` and ``"color"``, int64 class indices [n] into ``SHAPE_CLASSES`` and
    ``COLOR_NAMES``; ``"orientation"``, the drawn orientation in degrees [n] (NaN for kinds
    without one); ``"arc"`` [n, 4], a curve's ``(radius, angular_width, center_x, center_y)`` in the
    conventions of ``stimuli.curves`` (NaN rows for every other kind), from which
    :func:`local_curve_facing` derives where the arc runs and which way each piece of it faces. Objects are scaled with ``size`` (the ranges below are for 64 px). ``generator``
    must live on ``device``.
    """
    if n < 1:
        raise ValueError(f"parameter 'n' must be >= 1, got {n}")
    if size < 16:
        raise ValueError(f"parameter 'size' must be >= 16 pixels for recognisable scenes, got {size}")
    dev = as_device(device)
    g = generator
    s = size / 64.0
    shape = torch.randint(len(SHAPE_CLASSES), (n,), generator=g, device=dev)
    color = torch.randint(len(COLOR_NAMES), (n,), generator=g, device=dev)
    palette = torch.tensor(list(COLORS.values()), device=dev)
    fg = (palette[color] + 0.08 * torch.randn(n, 3, generator=g, device=dev)).clamp(0, 1)
    bg = _backgrounds(fg, g)
    images = torch.empty(n, 3, size, size, device=dev)
    orientation = torch.full((n,), float("nan"), device=dev)
    arc = torch.full((n, 4), float("nan"), device=dev)

    start = 0
    for kind, (bins, period) in ORIENTED_KINDS.items():
        for k in range(bins):
            idx = (shape == start + k).nonzero().flatten()
            if idx.numel():
                images[idx], orientation[idx], drawn_arc = _draw_oriented(
                    kind, k * period / bins, idx, fg, bg, size, s, g, dev
                )
                if drawn_arc is not None:
                    arc[idx] = drawn_arc
        start += bins
    for offset, kind in enumerate(PLAIN_KINDS):
        idx = (shape == start + offset).nonzero().flatten()
        if idx.numel():
            images[idx] = _draw_plain(kind, idx, fg, bg, size, s, g, dev)

    if noise > 0:
        images = (images + noise * torch.randn(images.shape, generator=g, device=dev)).clamp(0, 1)
    return images, {"shape": shape, "color": color, "orientation": orientation, "arc": arc}


def _draw_oriented(kind, centre_deg, idx, fg, bg, size, s, g, dev):
    """-> ``(images [m, 3, size, size], orientation [m], arc [m, 4] for curves else None)``."""
    m = idx.numel()
    orientation = centre_deg + _uniform(m, -22.5, 22.5, g, dev)
    thickness = _uniform(m, 1.5, 3.5, g, dev) * s
    center = torch.stack([_uniform(m, -12, 12, g, dev), _uniform(m, -12, 12, g, dev)], 1) * s
    common = dict(thickness=thickness, center=center, color=fg[idx], background=bg[idx], size=size, device=dev)
    if kind == "curve":
        radius = _uniform(m, 6, 20, g, dev) * s
        width = _uniform(m, 70, 160, g, dev)
        arc = torch.stack([radius, width, center[:, 0], center[:, 1]], 1)
        return curves(orientation, radius, angular_width=width, **common), orientation, arc
    if kind == "angle":
        opening = _uniform(m, 45, 120, g, dev)
        return angles(orientation, opening, arm_length=_uniform(m, 9, 18, g, dev) * s, **common), orientation, None
    return lines(orientation, length=_uniform(m, 16, 40, g, dev) * s, **common), orientation, None


def local_curve_facing(orientation: torch.Tensor, arc: torch.Tensor, grid: int, *, size: int = 64) -> torch.Tensor:
    """Which way the curve faces in each cell of a ``grid`` x ``grid`` map -> ``[n, grid, grid]`` degrees.

    ``orientation`` [n] and ``arc`` [n, 4] are the labels of :func:`random_scenes`. A cell (of
    ``size / grid`` pixels) that the arc passes through (within half the cell's diagonal of its
    centre) gets the direction the convex side of the nearest piece of the arc faces, the outward
    normal of the circle, in [0, 360); the arc's midpoint faces ``orientation``
    and its ends ``orientation +- angular_width / 2``. Every other cell, and every scene without a
    curve, is NaN. This is the local label of an early curve detector: one small piece of a curve
    and the side it bulges toward.
    """
    if orientation.dim() != 1 or arc.shape != (orientation.shape[0], 4):
        raise ValueError(
            f"expected orientation [n] and arc [n, 4], got {tuple(orientation.shape)} and {tuple(arc.shape)}"
        )
    cell = size / grid
    centres = (torch.arange(grid, dtype=arc.dtype, device=arc.device) + 0.5) * cell - size / 2
    y, x = -centres.view(1, grid, 1), centres.view(1, 1, grid)  # y up, as in stimuli
    theta = torch.deg2rad(orientation).view(-1, 1, 1)
    radius, width, cx, cy = (arc[:, k].view(-1, 1, 1) for k in range(4))
    ox, oy = cx - radius * torch.cos(theta), cy - radius * torch.sin(theta)  # the circle's centre
    facing = torch.atan2(y - oy, x - ox)
    offset = torch.remainder(facing - theta + math.pi, 2 * math.pi) - math.pi
    distance = torch.hypot(x - ox, y - oy)
    # A cell counts when the arc passes within half its diagonal of the cell's centre; the facing is
    # that of the nearest point of the arc (clamped to the arc's ends).
    reach = cell / math.sqrt(2)
    half = torch.deg2rad(width) / 2
    slack = torch.asin((reach / distance.clamp_min(reach)).clamp(max=1.0))
    on_arc = ((distance - radius).abs() <= reach) & (offset.abs() <= half + slack)
    facing = theta + offset.clamp(-half, half)
    degrees = torch.remainder(torch.rad2deg(facing), 360.0)
    return torch.where(on_arc, degrees, torch.full_like(degrees, float("nan")))


def curve_midpoint_cells(orientation: torch.Tensor, arc: torch.Tensor, grid: int, *, size: int = 64) -> torch.Tensor:
    """The cell of a ``grid`` x ``grid`` map that holds each curve's midpoint -> ``[n, grid, grid]`` degrees.

    That cell holds the curve's ``orientation`` (the way its midpoint faces); every other cell, and
    every scene without a curve, is NaN. This is the label of a whole-curve detector centred there,
    the position at which ``analysis.tuning.find_curve_detectors`` shows its stimuli.
    """
    if orientation.dim() != 1 or arc.shape != (orientation.shape[0], 4):
        raise ValueError(
            f"expected orientation [n] and arc [n, 4], got {tuple(orientation.shape)} and {tuple(arc.shape)}"
        )
    cell = size / grid
    column = torch.floor((arc[:, 2] + size / 2) / cell).clamp(0, grid - 1)
    row = torch.floor((size / 2 - arc[:, 3]) / cell).clamp(0, grid - 1)  # y up
    out = torch.full((orientation.shape[0], grid, grid), float("nan"), dtype=arc.dtype, device=arc.device)
    curve = ~torch.isnan(arc[:, 0])
    index = curve.nonzero().flatten()
    out[index, row[index].long(), column[index].long()] = torch.remainder(orientation[index], 360.0).to(arc.dtype)
    return out


def _draw_plain(kind, idx, fg, bg, size, s, g, dev) -> torch.Tensor:
    m = idx.numel()
    center = torch.stack([_uniform(m, -12, 12, g, dev), _uniform(m, -12, 12, g, dev)], 1) * s
    colors = dict(color=fg[idx], background=bg[idx], size=size, device=dev)
    if kind == "circle":
        return circles(
            _uniform(m, 5, 14, g, dev) * s, thickness=_uniform(m, 1.5, 3.5, g, dev) * s, center=center, **colors
        )
    if kind == "grating":
        return gratings(
            _uniform(m, 0, 360, g, dev),
            (_uniform(m, 0.06, 0.3, g, dev) / s).clamp(max=0.5),
            phase=_uniform(m, 0, 360, g, dev),
            **colors,
        )
    if kind == "high_low":
        return high_low(
            _uniform(m, 0, 360, g, dev),
            _uniform(m, 3, 8, g, dev),
            frequency=(_uniform(m, 0.2, 0.4, g, dev) / s).clamp(max=0.5),
            center=center,
            **colors,
        )
    return blobs(_uniform(m, 3, 8, g, dev) * s, center=center, **colors)


def scene_batches(
    n: int,
    seed: int,
    *,
    batch_size: int = 128,
    size: int = 64,
    labels: dict[str, list] | None = None,
) -> Iterator[torch.Tensor]:
    """``n`` scenes of :func:`random_scenes` drawn from ``seed``, in batches ``[b, 3, size, size]``.

    The same ``(n, seed, size, batch_size)`` gives the same scenes (one generator draws every batch
    in turn; only ``batch_size`` scenes are in memory at a time). ``labels``: a dict whose
    ``"shape"`` and ``"color"`` lists get each scene's class indices appended as it is drawn, so a
    consumer of the stream can name the scenes it kept.
    """
    if int(n) < 1:
        raise ValueError(f"parameter 'n' must be >= 1 scenes, got {n}")
    if int(batch_size) < 1:
        raise ValueError(f"parameter 'batch_size' must be >= 1, got {batch_size}")
    generator = torch.Generator().manual_seed(int(seed))
    for start in range(0, int(n), int(batch_size)):
        images, drawn = random_scenes(min(int(batch_size), int(n) - start), generator, size=size)
        if labels is not None:
            for key in ("shape", "color"):
                labels.setdefault(key, []).extend(int(v) for v in drawn[key])
        yield images
