"""Image parameterizations: ``param -> (params, image_f)`` as in lucid and lucent.

- :func:`image`: lucid's default (FFT, 1/f scaling, ImageNet colour decorrelation, sigmoid, sd 0.01).
- :func:`pixel_image`, :func:`fft_image`: the raw spatial parameterizations.
- :func:`cppn`: a compositional pattern-producing network.
- :func:`to_valid_rgb`, :func:`color_matrix_from_images`, :func:`imagenet_color_matrix`: colour.
- :class:`FFT`, :class:`Pixel`, :class:`CPPN`: factories for ``render(param=...)``.
"""

from circuits_vision.optvis.param.color import (
    IMAGENET_COLOR_CORRELATION_SVD_SQRT,
    color_matrix_from_images,
    decorrelate_color,
    imagenet_color_matrix,
)
from circuits_vision.optvis.param.cppn import composite_activation, cppn
from circuits_vision.optvis.param.images import CPPN, FFT, ImageFunction, ParamFactory, Pixel, image, to_valid_rgb
from circuits_vision.optvis.param.spatial import fft_image, pixel_image, random_normal, rfft2d_freqs

__all__ = [
    "CPPN",
    "FFT",
    "IMAGENET_COLOR_CORRELATION_SVD_SQRT",
    "ImageFunction",
    "ParamFactory",
    "Pixel",
    "color_matrix_from_images",
    "composite_activation",
    "cppn",
    "decorrelate_color",
    "fft_image",
    "image",
    "imagenet_color_matrix",
    "pixel_image",
    "random_normal",
    "rfft2d_freqs",
    "to_valid_rgb",
]
