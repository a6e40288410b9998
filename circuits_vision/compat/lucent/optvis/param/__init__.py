"""lucent's ``optvis.param``: ``param_f() -> (params, image_f)``.

``params`` are the tensors to optimise, ``image_f()`` returns the image ``[N, C, H, W]`` in [0, 1]
on CUDA when it is available (as lucent). :func:`image` returns the engine's fusable image
function, so ``render_vis`` can hand colour, sigmoid and transforms to one fused resample.
"""

from circuits_vision.compat.lucent.optvis.param.color import (
    color_correlation_normalized,
    color_correlation_svd_sqrt,
    color_mean,
    max_norm_svd_sqrt,
    to_valid_rgb,
)
from circuits_vision.compat.lucent.optvis.param.cppn import CompositeActivation, cppn
from circuits_vision.compat.lucent.optvis.param.images import image
from circuits_vision.compat.lucent.optvis.param.lowres import lowres_tensor, resize_bilinear_nd
from circuits_vision.compat.lucent.optvis.param.spatial import fft_image, pixel_image, rfft2d_freqs

__all__ = [
    "CompositeActivation",
    "color_correlation_normalized",
    "color_correlation_svd_sqrt",
    "color_mean",
    "cppn",
    "fft_image",
    "image",
    "lowres_tensor",
    "max_norm_svd_sqrt",
    "pixel_image",
    "resize_bilinear_nd",
    "rfft2d_freqs",
    "to_valid_rgb",
]
