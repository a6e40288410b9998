"""Shared machinery for drawing stimuli: parameter batching, pixel coordinates, coverage, compositing.

Every stimulus is a signed-distance field (distance in pixels from each pixel centre to the shape)
turned into a coverage in [0, 1] with a linear ramp one ``antialias`` pixel wide, then composited
``background * (1 - coverage) + color * coverage``. All of it is batched tensor maths: no Python loop
over pixels or over the batch.

Coordinates: ``x`` grows to the right, ``y`` grows *up* (row 0 is the top of the image), the origin is
the image centre, and angles are degrees counter-clockwise from +x. Rotating an image by 90 degrees
counter-clockwise (``torch.rot90(img, 1, dims=(-2, -1))``) therefore adds 90 degrees to the orientation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import torch

Number = float | int
ParamLike = Number | Sequence[Number] | torch.Tensor


def as_device(device: torch.device | str | None) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


# Dtypes a drawing is returned in, and the dtype its geometry is computed in. Half precision flushes the
# small guards of the distance maths to zero (the 1e-12 floor on a segment's squared length: a curve
# without arms then divides 0 by 0, NaN in every pixel) and costs bfloat16 up to 0.04 of coverage, so
# half-precision drawings are computed in float32 and cast at the end.
_COMPUTE_DTYPE = {
    torch.float32: torch.float32,
    torch.float64: torch.float64,
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
}

_Drawing = TypeVar("_Drawing", bound=Callable[..., torch.Tensor])


def check_dtype(dtype) -> torch.dtype:
    """``dtype`` if images can be returned in it; TypeError naming the supported dtypes otherwise."""
    if not isinstance(dtype, torch.dtype) or dtype not in _COMPUTE_DTYPE:
        raise TypeError(
            f"parameter 'dtype' must be a floating torch dtype (torch.float32, torch.float64, torch.float16 or "
            f"torch.bfloat16), got {dtype!r}: stimuli are coverages in [0, 1]; for 8-bit pixels convert the result "
            "with (images * 255).round().to(torch.uint8)"
        )
    return dtype


def drawn_in_float(draw: _Drawing) -> _Drawing:
    """Wrap a stimulus function so that its ``dtype`` keyword is checked, the drawing is computed in at least
    float32 (float64 stays float64) and the images ``[N, 3, H, W]`` are cast to ``dtype`` at the end."""

    @functools.wraps(draw)
    def wrapper(*args, dtype: torch.dtype = torch.float32, **kwargs) -> torch.Tensor:
        dtype = check_dtype(dtype)
        return draw(*args, dtype=_COMPUTE_DTYPE[dtype], **kwargs).to(dtype)

    return wrapper  # type: ignore[return-value]


def batch_params(device: torch.device, dtype: torch.dtype, **params: ParamLike) -> tuple[int, dict[str, torch.Tensor]]:
    """Broadcast scalar / 1-D parameters to a common batch size N.

    Returns ``(N, {name: tensor [N]})``. A 1-D parameter of length 1 or a scalar broadcasts; two 1-D
    parameters of different lengths > 1 raise ValueError naming both.
    """
    tensors: dict[str, torch.Tensor] = {}
    n = 1
    owner = None
    for name, value in params.items():
        t = torch.as_tensor(value, dtype=dtype, device=device)
        if t.dim() > 1:
            raise ValueError(f"parameter '{name}' must be a scalar or 1-D, got shape {tuple(t.shape)}")
        t = t.reshape(-1)
        if t.numel() == 0:
            raise ValueError(f"parameter '{name}' is empty")
        if not torch.isfinite(t).all():
            raise ValueError(f"parameter '{name}' has non-finite values")
        if t.numel() > 1:
            if n > 1 and t.numel() != n:
                raise ValueError(
                    f"parameter '{name}' has {t.numel()} values but '{owner}' has {n}; "
                    "pass equal lengths or scalars (see stimuli.parameter_grid for grids)"
                )
            n, owner = t.numel(), name
        tensors[name] = t
    return n, {name: t.expand(n) for name, t in tensors.items()}


def batch_vectors(
    name: str, value: ParamLike, width: int, n: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """A ``(width,)`` or ``(N, width)`` parameter (colour, centre) as ``[N, width]``."""
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[1] != width or t.shape[0] not in (1, n):
        raise ValueError(f"parameter '{name}' must have shape ({width},) or ({n}, {width}), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"parameter '{name}' has non-finite values")
    return t.expand(n, width)


def check_colors(n: int, device: torch.device, dtype: torch.dtype, **colors: ParamLike) -> list[torch.Tensor]:
    out = []
    for name, value in colors.items():
        t = batch_vectors(name, value, 3, n, device, dtype)
        if (t < 0).any() or (t > 1).any():
            raise ValueError(f"parameter '{name}' must be RGB values in [0, 1]")
        out.append(t)
    return out


def require(condition: torch.Tensor | bool, name: str, requirement: str, value) -> None:
    """Raise ``ValueError("<name> must be <requirement>, got ...")`` unless ``condition`` holds everywhere."""
    ok = bool(condition.all()) if isinstance(condition, torch.Tensor) else bool(condition)
    if not ok:
        if isinstance(value, torch.Tensor) and value.numel() > 1:
            if isinstance(condition, torch.Tensor) and condition.shape == value.shape:
                value = value[~condition]  # show the offending values only
            value = value.tolist() if value.numel() <= 8 else f"{value.numel()} values such as {value[0].item()}"
        elif isinstance(value, torch.Tensor):
            value = value.item()
        raise ValueError(f"parameter '{name}' must be {requirement}, got {value}")


def check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"parameter 'size' must be a positive int (pixels), got {size!r}")
    return size


def check_antialias(antialias: float) -> float:
    if not antialias > 0:
        raise ValueError(f"parameter 'antialias' must be > 0 pixels, got {antialias!r}")
    return float(antialias)


def pixel_grid(size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``x, y`` of shape [1, H, W] (y up, origin at the image centre)."""
    c = (size - 1) / 2
    idx = torch.arange(size, device=device, dtype=dtype)
    y = (c - idx).view(1, size, 1).expand(1, size, size)
    x = (idx - c).view(1, 1, size).expand(1, size, size)
    return x, y


def col(t: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, 1] so it broadcasts against pixel grids."""
    return t.view(-1, 1, 1)


def radians(degrees: torch.Tensor) -> torch.Tensor:
    return degrees * (math.pi / 180.0)


def segment_distance(x, y, ax, ay, bx, by) -> torch.Tensor:
    """Distance [N, H, W] from pixels to the segments a-b (endpoints [N, 1, 1])."""
    px, py = x - ax, y - ay
    dx, dy = bx - ax, by - ay
    h = ((px * dx + py * dy) / (dx * dx + dy * dy).clamp_min(1e-12)).clamp(0, 1)
    return torch.hypot(px - dx * h, py - dy * h)


def stroke_coverage(distance: torch.Tensor, thickness: torch.Tensor, antialias: float) -> torch.Tensor:
    """Coverage in [0, 1] of a stroke ``thickness`` pixels wide around the zero set of ``distance``."""
    return ((col(thickness) / 2 - distance) / antialias + 0.5).clamp(0, 1)


def fill_coverage(signed_distance: torch.Tensor, antialias: float) -> torch.Tensor:
    """Coverage in [0, 1] of the region where ``signed_distance`` < 0 (inside)."""
    return (0.5 - signed_distance / antialias).clamp(0, 1)


def composite(coverage: torch.Tensor, color: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``coverage`` [N, H, W] and colours [N, 3] -> images [N, 3, H, W] in [0, 1]."""
    a = coverage.unsqueeze(1)
    return (background[:, :, None, None] * (1 - a) + color[:, :, None, None] * a).clamp(0, 1)


class Canvas(NamedTuple):
    """A batch of N drawings: the pixel grid with each drawing's centre and colours, validated."""

    x: torch.Tensor  # [1, H, W] pixel-centre x, right of the image centre
    y: torch.Tensor  # [1, H, W] pixel-centre y, above the image centre
    center: torch.Tensor  # [N, 2] (x, y) of each drawing's centre
    color: torch.Tensor  # [N, 3]
    background: torch.Tensor  # [N, 3]

    @property
    def cx(self) -> torch.Tensor:
        """Centre x as [N, 1, 1]."""
        return col(self.center[:, 0])

    @property
    def cy(self) -> torch.Tensor:
        """Centre y as [N, 1, 1]."""
        return col(self.center[:, 1])

    def paint(self, coverage: torch.Tensor) -> torch.Tensor:
        """Coverage [N, H, W] of ``color`` over ``background`` -> images [N, 3, H, W] in [0, 1]."""
        return composite(coverage, self.color, self.background)


def make_canvas(
    n: int,
    size: int,
    device: torch.device,
    dtype: torch.dtype,
    *,
    color: ParamLike,
    background: ParamLike,
    center: ParamLike = (0.0, 0.0),
) -> Canvas:
    """Check ``center`` ((2,) or (N, 2) pixels), then ``color`` and ``background`` ((3,) or (N, 3) RGB in
    [0, 1]) and lay out the ``size`` x ``size`` pixel grid for N drawings."""
    center_t = batch_vectors("center", center, 2, n, device, dtype)
    fg, bg = check_colors(n, device, dtype, color=color, background=background)
    x, y = pixel_grid(size, device, dtype)
    return Canvas(x, y, center_t, fg, bg)
