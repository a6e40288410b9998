"""lucent's ``param.color``: the ImageNet colour decorrelation constants and :func:`to_valid_rgb`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from circuits_vision.optvis import param as engine_param

__all__ = [
    "color_correlation_svd_sqrt",
    "max_norm_svd_sqrt",
    "color_correlation_normalized",
    "color_mean",
    "to_valid_rgb",
]

color_correlation_svd_sqrt = np.asarray(engine_param.IMAGENET_COLOR_CORRELATION_SVD_SQRT, dtype=np.float32)
max_norm_svd_sqrt = np.max(np.linalg.norm(color_correlation_svd_sqrt, axis=0))
color_correlation_normalized = color_correlation_svd_sqrt / max_norm_svd_sqrt
color_mean = [0.48, 0.46, 0.41]


def to_valid_rgb(image_f: Callable[[], torch.Tensor], decorrelate: bool = False) -> Callable[[], torch.Tensor]:
    """``sigmoid`` of ``image_f()`` (``[N, C, H, W]``), colour-decorrelated first when ``decorrelate``.

    Three-channel images get the engine's image function, which ``render_vis`` can fuse with the
    transforms; other channel counts a plain ``sigmoid`` of every channel, as lucent.
    """
    channels = image_f().shape[1]
    if decorrelate:
        if channels != 3:
            raise ValueError(f"colour decorrelation needs 3 channels, got an image with {channels}")
        return engine_param.to_valid_rgb(image_f, decorrelate=True)
    if channels == 3:
        return engine_param.to_valid_rgb(image_f, decorrelate=False)
    return lambda: torch.sigmoid(image_f())
