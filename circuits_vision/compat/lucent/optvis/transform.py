"""lucent's ``optvis.transform``: ``transform(image [N, C, H, W]) -> image``, and
:data:`standard_transforms`.

The transforms are the engine's (:mod:`circuits_vision.optvis.transforms`) with lucent's
semantics: ``jitter`` moves the content by ``0..d-1`` pixels with zero fill, ``random_scale``
resizes the canvas (``align_corners=True``), ``random_rotate`` turns about the centre with zero
fill. Called as ``t(x)`` they draw from torch's global generator. Because the engine knows what
they are, ``render_vis`` can fuse a list of them into one resample per step, and move
``normalize`` / ``preprocess_inceptionv1`` into the model's input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from circuits_vision.optvis import transforms as engine_transforms

__all__ = [
    "ValueMap",
    "compose",
    "jitter",
    "normalize",
    "pad",
    "preprocess_inceptionv1",
    "random_rotate",
    "random_scale",
    "standard_transforms",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ValueMap(engine_transforms.Transform):
    """A per-channel affine map of pixel values, ``x * scale + shift`` (``[N, 3, H, W]``).

    Resampling commutes with it, so ``render_vis`` may apply it to the model input instead.
    """

    def __init__(self, scale: Sequence[float], shift: Sequence[float], name: str):
        self.scale, self.shift, self.name = tuple(float(s) for s in scale), tuple(float(s) for s in shift), name

    def __repr__(self) -> str:
        return f"{self.name}()"

    def then(self, other: ValueMap) -> ValueMap:
        """This map followed by ``other``."""
        scale = tuple(a * b for a, b in zip(self.scale, other.scale))
        shift = tuple(s * b + t for s, b, t in zip(self.shift, other.scale, other.shift))
        return ValueMap(scale, shift, f"{self.name}+{other.name}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != len(self.scale):
            raise ValueError(f"{self.name}() expects images [N, {len(self.scale)}, H, W], got {tuple(x.shape)}")
        scale = torch.tensor(self.scale, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        shift = torch.tensor(self.shift, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * scale + shift


def jitter(d: int) -> engine_transforms.jitter:
    """Move the content right and down by ``0..d-1`` pixels each (independently), filling with zeros."""
    if not d > 1:
        raise ValueError(f"Jitter parameter d must be more than 1, currently {d}")
    return engine_transforms.jitter(d, crop=False)


def pad(w: int, mode: str = "reflect", constant_value: float = 0.5) -> engine_transforms.pad:
    """Pad ``w`` pixels on every side (``mode`` as ``F.pad``; ``constant_value`` only for "constant")."""
    return engine_transforms.pad(w, mode=mode, constant_value=constant_value)


def random_scale(scales: Sequence[float]) -> engine_transforms.random_scale:
    """Resize the canvas by a factor drawn from ``scales``; zero-pad back when it shrinks."""
    return engine_transforms.random_scale(scales)


def random_rotate(angles: Sequence[float], units: str = "degrees") -> engine_transforms.random_rotate:
    """Rotate about the centre by an angle drawn from ``angles`` (bilinear, zero fill)."""
    return engine_transforms.random_rotate(angles, units=units)


def compose(transforms: Sequence[Callable]) -> engine_transforms.Compose:
    """Apply ``transforms`` in order: ``compose(ts)(x)``."""
    return engine_transforms.compose(list(transforms))


def normalize() -> ValueMap:
    """torchvision's ImageNet normalisation ``(x - mean) / std``."""
    return ValueMap([1 / s for s in IMAGENET_STD], [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], "normalize")


def preprocess_inceptionv1() -> ValueMap:
    """[0, 1] -> lucid's InceptionV1 input range [-117, 138]: ``x * 255 - 117``."""
    return ValueMap([255.0] * 3, [-117.0] * 3, "preprocess_inceptionv1")


standard_transforms = [
    pad(12, mode="constant", constant_value=0.5),
    jitter(8),
    random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
    random_rotate(list(range(-10, 11)) + 5 * [0]),
    jitter(4),
]
