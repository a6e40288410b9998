"""lucent's ``param.image``: the default image parameterization."""

from __future__ import annotations

from collections.abc import Callable

import torch

from circuits_vision.compat.lucent.optvis.param.color import to_valid_rgb
from circuits_vision.compat.lucent.optvis.param.spatial import fft_image, pixel_image

__all__ = ["image"]


def image(
    w: int,
    h: int | None = None,
    sd: float | None = None,
    batch: int | None = None,
    decorrelate: bool = True,
    fft: bool = True,
    channels: int | None = None,
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """``(params, image_f)`` with ``image_f() -> [batch, channels or 3, h, w]`` in [0, 1].

    Fourier (``fft=True``) or pixel parameterization, initial sd 0.01, ImageNet colour
    decorrelation unless ``decorrelate=False`` or ``channels`` is given (lucent's rule).
    """
    h = h or w
    shape = [batch or 1, channels or 3, h, w]
    params, raw = (fft_image if fft else pixel_image)(shape, sd=sd)
    return params, to_valid_rgb(raw, decorrelate=decorrelate and not channels)
