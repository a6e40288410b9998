"""Textures and colour stimuli: gratings, high-low frequency patterns, blobs and solid colours.

Same conventions as ``geometry``: scalars or 1-D parameters broadcast to a batch N, output
``[N, 3, size, size]`` in [0, 1], pixels and degrees (counter-clockwise from +x, y up). Frequencies are
in cycles per pixel and must stay at or below the Nyquist limit 0.5.
"""

from __future__ import annotations

import math

import torch

from ._canvas import (
    ParamLike,
    as_device,
    batch_params,
    check_antialias,
    check_colors,
    check_size,
    col,
    drawn_in_float,
    fill_coverage,
    make_canvas,
    radians,
    require,
)
from .geometry import BLACK, WHITE


def _wave(x, y, orientation_deg, frequency, phase_deg, contrast) -> torch.Tensor:
    """Cosine wave in [0, 1], [N, H, W], with its wave vector along ``orientation`` (parameters [N])."""
    theta = col(radians(orientation_deg))
    along = x * torch.cos(theta) + y * torch.sin(theta)
    wave = torch.cos(2 * math.pi * col(frequency) * along + col(radians(phase_deg)))
    return 0.5 + 0.5 * col(contrast) * wave


@drawn_in_float
def gratings(
    orientation: ParamLike,
    frequency: ParamLike = 0.125,
    *,
    phase: ParamLike = 0.0,
    contrast: ParamLike = 1.0,
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sinusoidal gratings -> [N, 3, size, size]; the wave vector points along ``orientation`` (stripes across it).

    ``phase`` (deg) is the wave's phase at the image centre; ``contrast`` in [0, 1] blends between the
    mid colour (0) and full ``color``/``background`` swings (1).
    """
    dev = as_device(device)
    size = check_size(size)
    n, p = batch_params(dev, dtype, orientation=orientation, frequency=frequency, phase=phase, contrast=contrast)
    require((p["frequency"] > 0) & (p["frequency"] <= 0.5), "frequency", "in (0, 0.5] cycles/pixel", p["frequency"])
    require((p["contrast"] >= 0) & (p["contrast"] <= 1), "contrast", "in [0, 1]", p["contrast"])
    canvas = make_canvas(n, size, dev, dtype, color=color, background=background)
    # The wave is the foreground coverage: 1 on crests (``color``), 0 in troughs (``background``).
    return canvas.paint(_wave(canvas.x, canvas.y, p["orientation"], p["frequency"], p["phase"], p["contrast"]))


@drawn_in_float
def high_low(
    orientation: ParamLike,
    ratio: ParamLike = 4.0,
    *,
    frequency: ParamLike = 0.25,
    phase: ParamLike = 0.0,
    center: ParamLike = (0.0, 0.0),
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    antialias: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """High-low frequency patterns -> [N, 3, size, size].

    A boundary through ``center`` splits the image; on the side ``orientation`` points to, a cosine wave
    of ``frequency`` cycles/pixel, on the other side one of ``frequency / ratio`` (``ratio`` >= 1; the
    Distill detectors are probed with 1..10). The stripes run across the boundary (wave vector along it),
    so only the frequency changes at the boundary, not the phase pattern.
    """
    dev = as_device(device)
    size, antialias = check_size(size), check_antialias(antialias)
    n, p = batch_params(dev, dtype, orientation=orientation, ratio=ratio, frequency=frequency, phase=phase)
    require(p["ratio"] >= 1, "ratio", ">= 1 (high frequency / low frequency)", p["ratio"])
    require((p["frequency"] > 0) & (p["frequency"] <= 0.5), "frequency", "in (0, 0.5] cycles/pixel", p["frequency"])
    canvas = make_canvas(n, size, dev, dtype, center=center, color=color, background=background)
    theta = col(radians(p["orientation"]))
    dx, dy = canvas.x - canvas.cx, canvas.y - canvas.cy
    high_side = fill_coverage(-(dx * torch.cos(theta) + dy * torch.sin(theta)), antialias)
    tangent = p["orientation"] + 90.0
    ones = torch.ones_like(p["ratio"])
    high = _wave(dx, dy, tangent, p["frequency"], p["phase"], ones)
    low = _wave(dx, dy, tangent, p["frequency"] / p["ratio"], p["phase"], ones)
    return canvas.paint(high_side * high + (1 - high_side) * low)


@drawn_in_float
def blobs(
    radius: ParamLike,
    *,
    center: ParamLike = (0.0, 0.0),
    color: ParamLike = BLACK,
    background: ParamLike = WHITE,
    size: int = 64,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian blobs (standard deviation ``radius`` pixels) of ``color`` on ``background`` -> [N, 3, size, size]."""
    dev = as_device(device)
    size = check_size(size)
    n, p = batch_params(dev, dtype, radius=radius)
    require(p["radius"] > 0, "radius", "> 0 pixels", p["radius"])
    canvas = make_canvas(n, size, dev, dtype, center=center, color=color, background=background)
    d2 = (canvas.x - canvas.cx) ** 2 + (canvas.y - canvas.cy) ** 2
    return canvas.paint(torch.exp(-d2 / (2 * col(p["radius"]) ** 2)))


@drawn_in_float
def solid(
    color: ParamLike,
    *,
    size: int = 64,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform images of ``color`` ((3,) or (N, 3), RGB in [0, 1]) -> [N, 3, size, size]."""
    dev = as_device(device)
    size = check_size(size)
    t = torch.as_tensor(color, dtype=dtype, device=dev)
    n = t.shape[0] if t.dim() == 2 else 1
    (fg,) = check_colors(n, dev, dtype, color=color)
    return fg[:, :, None, None].expand(n, 3, size, size).clone()
