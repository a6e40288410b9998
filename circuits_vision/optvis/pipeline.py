"""The per-step image pipeline of ``render``: colour, sigmoid and all geometric transforms at once.

``image_pipeline(x, color, theta, pad_value, out_size, scale, shift) -> (out, img)``:

    img = sigmoid(color @ x)                      per pixel; x: [N, 3, H, W] decorrelated image
    out = bilinear sample of img at theta(p)      p: output pixel, theta: [N, 2, 3] F.affine_grid
                                                  convention (align_corners=False); outside the
                                                  image reads pad_value
    out = out * scale + shift                     per channel

This is the contract of the fused C++/CUDA op ``circuits_vision.ops.image_pipeline``; when the
compiled op is there ``render`` uses it, otherwise :func:`image_pipeline_torch`, the op's
pure-PyTorch twin. One resample replaces lucid's pad, jitter, scale, rotate and jitter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from circuits_vision import ops
from circuits_vision.ops._reference import image_pipeline as image_pipeline_torch

__all__ = ["image_pipeline_torch", "fused_image_pipeline"]

Pipeline = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def fused_image_pipeline() -> Pipeline | None:
    """The compiled ``image_pipeline`` op when the extension provides it, else ``None``."""
    if not ops.extension_available() or not hasattr(torch.ops.circuits_vision, "image_pipeline"):
        return None
    return ops.image_pipeline
