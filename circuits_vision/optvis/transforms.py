"""Transformation robustness: random geometric transforms applied to the image every step.

Two ways to run the same list of transforms:

- sequentially, as lucid and lucent do: ``compose(ts)(x, generator)`` applies each transform in
  turn; one random draw per call, shared by the batch (call it per image for different draws);
- fused: every geometric transform here is also an affine map of pixel coordinates, so a whole
  ``compose([...])`` of them is one affine map per image. :meth:`Compose.sample` returns
  ``[count, 3, 3]`` matrices (output pixel -> input pixel) drawn from a ``torch.Generator``, and
  ``render`` resamples the image once per step through them (see ``pipeline.py``).

Pixel coordinates are continuous ``(x, y)`` with pixel ``(i, j)`` covering ``[j, j+1) x [i, i+1)``,
so centres sit at half-integers (``align_corners=False``). In the fused form a transform that
changes the canvas size in a data-dependent way (``random_scale``) keeps the nominal size and
zooms about the centre instead; everything outside the original image reads the pad value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Transform",
    "GeometricTransform",
    "Compose",
    "pad",
    "jitter",
    "random_scale",
    "random_rotate",
    "crop_or_pad_to",
    "resize",
    "compose",
    "collapse_alpha",
    "normalize",
    "standard_transforms",
    "lucent_transforms",
    "affine_to_theta",
]

Size = tuple[int, int]


def _choice(values: Sequence[float], count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` uniform draws from ``values`` as float64."""
    table = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return table[torch.randint(len(table), (count,), generator=generator)]


def _translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """``[count, 3, 3]`` maps ``u -> u + (tx, ty)``."""
    m = torch.eye(3, dtype=torch.float64).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2] = tx
    m[:, 1, 2] = ty
    return m


class Transform:
    """A sequential transform: ``t(x [N, C, H, W], generator) -> [N, C, H', W']``."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class GeometricTransform(Transform):
    """A transform that is an affine map of pixel coordinates, so it can be fused."""

    #: the value read outside the image when this transform is fused (``None``: no preference)
    pad_value: float | None = None

    def output_size(self, size: Size) -> Size:
        return size

    def sample(self, count: int, size: Size, generator: torch.Generator | None) -> torch.Tensor:
        """``[count, 3, 3]`` float64 maps from output to input pixel coordinates for an input of ``size``."""
        raise NotImplementedError


class pad(GeometricTransform):  # noqa: N801  (lucid/lucent spell transforms in lower case)
    """Pad ``w`` pixels on each side (lucent defaults: ``mode="reflect"``; constant pads use ``constant_value``)."""

    def __init__(self, w: int, mode: str = "reflect", constant_value: float = 0.5):
        self.w = int(w)
        self.mode = mode
        self.constant_value = float(constant_value) if mode == "constant" else 0.0
        self.pad_value = self.constant_value if mode == "constant" else None

    def __repr__(self) -> str:
        return f"pad({self.w}, mode={self.mode!r}, constant_value={self.constant_value})"

    def __call__(self, x, generator=None):
        if self.mode == "constant":
            return F.pad(x, [self.w] * 4, mode="constant", value=self.constant_value)
        return F.pad(x, [self.w] * 4, mode=self.mode)

    def output_size(self, size):
        return (size[0] + 2 * self.w, size[1] + 2 * self.w)

    def sample(self, count, size, generator):
        shift = torch.full((count,), -float(self.w), dtype=torch.float64)
        return _translation(shift, shift)


class jitter(GeometricTransform):  # noqa: N801
    """Random shift by up to ``d`` pixels.

    ``crop=True`` (lucid): a random ``(H-d) x (W-d)`` crop, offsets uniform in ``0..d``.
    ``crop=False`` (lucent): the same size, content moved by ``0..d-1`` pixels right/down, zero fill.
    """

    def __init__(self, d: int, crop: bool = True):
        if d < 1 or (not crop and d < 2):
            raise ValueError(f"jitter needs d >= {1 if crop else 2}, got {d}")
        self.d = int(d)
        self.crop = crop

    def __repr__(self) -> str:
        return f"jitter({self.d}, crop={self.crop})"

    def _draw(self, count: int, generator) -> torch.Tensor:
        high = self.d + 1 if self.crop else self.d
        return torch.randint(high, (count, 2), generator=generator)

    def __call__(self, x, generator=None):
        dx, dy = (int(v) for v in self._draw(1, generator)[0])
        height, width = x.shape[-2:]
        if self.crop:
            return x[..., dy : dy + height - self.d, dx : dx + width - self.d]
        shifted = F.pad(x, [dx, 0, dy, 0])
        return shifted[..., :height, :width]

    def output_size(self, size):
        return (size[0] - self.d, size[1] - self.d) if self.crop else size

    def sample(self, count, size, generator):
        offsets = self._draw(count, generator).double()
        if self.crop:
            return _translation(offsets[:, 0], offsets[:, 1])
        return _translation(-offsets[:, 0], -offsets[:, 1])


class random_scale(GeometricTransform):  # noqa: N801
    """Random zoom by a factor drawn from ``scales``.

    Sequential (lucent): bilinear resize to ``ceil(s * size)`` (``align_corners=True``), zero
    padded back to at least the input size when ``s < 1``. Fused: zoom about the centre, same size.
    """

    def __init__(self, scales: Sequence[float]):
        self.scales = [float(s) for s in scales]

    def __repr__(self) -> str:
        return f"random_scale({self.scales})"

    def __call__(self, x, generator=None):
        scale = float(_choice(self.scales, 1, generator)[0])
        height, width = x.shape[-2:]
        new_h, new_w = math.ceil(scale * height), math.ceil(scale * width)
        out = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=True)
        pad_h, pad_w = max(0, math.ceil((height - new_h) / 2)), max(0, math.ceil((width - new_w) / 2))
        return F.pad(out, [pad_w, pad_w, pad_h, pad_h])

    def sample(self, count, size, generator):
        scale = _choice(self.scales, count, generator)
        cx, cy = size[1] / 2.0, size[0] / 2.0
        m = torch.eye(3, dtype=torch.float64).repeat(count, 1, 1)
        m[:, 0, 0] = m[:, 1, 1] = 1.0 / scale
        m[:, 0, 2] = cx - cx / scale
        m[:, 1, 2] = cy - cy / scale
        return m


class random_rotate(GeometricTransform):  # noqa: N801
    """Random rotation about the image centre by an angle drawn from ``angles`` (bilinear, zero fill)."""

    def __init__(self, angles: Sequence[float], units: str = "degrees"):
        if units.lower() not in ("degrees", "radians", "rads", "rad"):
            raise ValueError(f"units must be 'degrees' or 'radians', got {units!r}")
        to_radians = math.pi / 180.0 if units.lower() == "degrees" else 1.0
        self.angles = [float(a) * to_radians for a in angles]

    def __repr__(self) -> str:
        return f"random_rotate({[round(math.degrees(a), 3) for a in self.angles]} degrees)"

    def _matrix(self, angle: torch.Tensor, size: Size) -> torch.Tensor:
        # Counter-clockwise rotation of the content on screen (y down): output u reads input
        # c + R(angle) (u - c) with R = [[cos, -sin], [sin, cos]] in (x, y-down) coordinates.
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = size[1] / 2.0, size[0] / 2.0
        m = torch.eye(3, dtype=torch.float64).repeat(angle.shape[0], 1, 1)
        m[:, 0, 0], m[:, 0, 1] = cos, -sin
        m[:, 1, 0], m[:, 1, 1] = sin, cos
        m[:, 0, 2] = cx - cos * cx + sin * cy
        m[:, 1, 2] = cy - sin * cx - cos * cy
        return m

    def __call__(self, x, generator=None):
        angle = _choice(self.angles, 1, generator)
        size = tuple(x.shape[-2:])
        theta = affine_to_theta(self._matrix(angle, size), size, size).to(x).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def sample(self, count, size, generator):
        return self._matrix(_choice(self.angles, count, generator), size)


class crop_or_pad_to(GeometricTransform):  # noqa: N801
    """Centre crop or pad (with ``value``) to ``height x width``."""

    def __init__(self, height: int, width: int | None = None, value: float = 0.0):
        self.height, self.width = int(height), int(width or height)
        self.value = float(value)

    def __repr__(self) -> str:
        return f"crop_or_pad_to({self.height}, {self.width})"

    def _offsets(self, size: Size) -> tuple[int, int]:
        return ((size[0] - self.height) // 2, (size[1] - self.width) // 2)

    def __call__(self, x, generator=None):
        top, left = self._offsets(tuple(x.shape[-2:]))
        height, width = x.shape[-2:]
        # negative offsets pad, positive ones crop; F.pad does both
        return F.pad(
            x,
            [-left, self.width - width + left, -top, self.height - height + top],
            value=self.value,
        )

    def output_size(self, size):
        return (self.height, self.width)

    def sample(self, count, size, generator):
        top, left = self._offsets(size)
        return _translation(torch.full((count,), float(left)), torch.full((count,), float(top))).double()


class resize(Transform):  # noqa: N801
    """Bilinear resize to ``size`` (lucent's final upsampling: ``align_corners=True``)."""

    def __init__(self, size: int | Size, align_corners: bool = True):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.align_corners = align_corners

    def __repr__(self) -> str:
        return f"resize({self.size})"

    def __call__(self, x, generator=None):
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


class collapse_alpha(Transform):  # noqa: N801
    """RGBA ``[N, 4, H, W]`` -> RGB over a random background (lucid's ``collapse_alpha_random``).

    The background is a random decorrelated Fourier image with spectrum sd ``sd`` (lucid's
    ``image_sample``), a new one every call, so the image must look right on any background.
    """

    def __init__(self, sd: float = 0.5):
        self.sd = float(sd)

    def __call__(self, x, generator=None):
        from circuits_vision.optvis.param import image

        n, _, height, width = x.shape
        _, background_f = image(width, height, sd=self.sd, batch=n, generator=generator, device=x.device)
        background = background_f().to(x.dtype).detach()
        rgb, alpha = x[:, :3], x[:, 3:4]
        return alpha * rgb + (1 - alpha) * background


class normalize(Transform):  # noqa: N801
    """Channel normalisation ``(x - mean) / std`` (lucent's torchvision preprocessing)."""

    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225)):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x, generator=None):
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


def _apply(transform: Callable, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Apply our transforms with the generator, plain lucent-style ``f(x)`` callables without."""
    if isinstance(transform, Transform):
        return transform(x, generator)
    return transform(x)


class Compose(Transform):
    """Transforms applied in order; fusable into one affine resample when all are geometric."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __repr__(self) -> str:
        return f"compose({self.transforms})"

    def __call__(self, x, generator=None):
        for transform in self.transforms:
            x = _apply(transform, x, generator)
        return x

    @property
    def fusable(self) -> bool:
        """Whether every transform is an affine map and they agree on one pad value."""
        if not all(isinstance(t, GeometricTransform) for t in self.transforms):
            return False
        if any(isinstance(t, pad) and t.mode != "constant" for t in self.transforms):
            return False
        return len({t.pad_value for t in self.transforms if t.pad_value is not None}) <= 1

    @property
    def pad_value(self) -> float:
        values = [t.pad_value for t in self.transforms if isinstance(t, GeometricTransform) and t.pad_value is not None]
        return values[0] if values else 0.0

    def output_size(self, size: Size) -> Size:
        for transform in self.transforms:
            if isinstance(transform, GeometricTransform):
                size = transform.output_size(size)
        return size

    def sample(self, count: int, size: Size, generator: torch.Generator | None) -> torch.Tensor:
        """``[count, 3, 3]`` float64 output->input pixel maps of the whole chain (see module doc)."""
        if not self.fusable:
            raise ValueError(f"{self!r} cannot be fused: every transform must be geometric with constant padding")
        matrix = torch.eye(3, dtype=torch.float64).repeat(count, 1, 1)
        for transform in self.transforms:
            matrix = matrix @ transform.sample(count, size, generator)
            size = transform.output_size(size)
        return matrix


def compose(transforms: Sequence[Callable]) -> Compose:
    """lucid/lucent ``compose``; the result is also fusable (see :class:`Compose`)."""
    return Compose(transforms)


def affine_to_theta(matrix: torch.Tensor, in_size: Size, out_size: Size) -> torch.Tensor:
    """Pixel-coordinate maps ``[N, 3, 3]`` -> ``F.affine_grid`` thetas ``[N, 2, 3]`` (``align_corners=False``).

    ``theta`` maps normalised output coordinates (``-1..1`` across the output edges) to normalised
    input coordinates, as ``F.affine_grid`` and the fused image op expect.
    """
    in_h, in_w = in_size
    out_h, out_w = out_size
    to_normalized = torch.tensor([[2.0 / in_w, 0, -1], [0, 2.0 / in_h, -1], [0, 0, 1]], dtype=torch.float64)
    from_normalized = torch.tensor(
        [[out_w / 2.0, 0, out_w / 2.0], [0, out_h / 2.0, out_h / 2.0], [0, 0, 1]], dtype=torch.float64
    )
    return (to_normalized @ matrix.double() @ from_normalized)[:, :2, :]


def standard_transforms() -> Compose:
    """lucid's ``standard_transforms``: pad 12 (grey), jitter 8, scale 0.9-1.1, rotate ±10°, jitter 4."""
    return Compose(
        [
            pad(12, mode="constant", constant_value=0.5),
            jitter(8),
            random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
            random_rotate(list(range(-10, 11)) + 5 * [0]),
            jitter(4),
        ]
    )


def lucent_transforms() -> Compose:
    """lucent's ``standard_transforms``: as lucid's but jitter shifts (zero fill) instead of cropping."""
    return Compose(
        [
            pad(12, mode="constant", constant_value=0.5),
            jitter(8, crop=False),
            random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
            random_rotate(list(range(-10, 11)) + 5 * [0]),
            jitter(4, crop=False),
        ]
    )
