"""The per-step image pipeline of ``render``: colour, sigmoid and all geometric transforms at once.

``image_pipeline(x, color, theta, pad_value, out_size, scale, shift) -> (out, img)``:

    img = sigmoid(color @ x)                      per pixel; x: [N, 3, H, W] decorrelated image
    out = bilinear sample of img at theta(p)      p: output pixel, theta: [N, 2, 3] F.affine_grid
                                                  convention (align_corners=False); outside the
                                                  image reads pad_value
    out = out * scale + shift                     per channel

This is the contract of the fused C++/CUDA op ``circuits_vision.ops.image_pipeline``, which
``render`` calls; without the compiled extension that op runs :func:`image_pipeline_torch`, its
pure-PyTorch twin, after one warning (``CIRCUITS_VISION_REQUIRE_EXT=1`` makes it an error). One
resample replaces lucid's pad, jitter, scale, rotate and jitter.
"""

from __future__ import annotations

from circuits_vision.ops import image_pipeline_reference as image_pipeline_torch

__all__ = ["image_pipeline_torch"]
