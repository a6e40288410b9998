"""The per-step image pipeline of ``render``: colour, sigmoid and all geometric transforms at once.

``image_pipeline(x, color, theta, pad_value, out_size, scale, shift) -> (out, img)``:

    img = sigmoid(color @ x)                      per pixel; x: [N, 3, H, W] decorrelated image
    out = bilinear sample of img at theta(p)      p: output pixel, theta: [N, 2, 3] F.affine_grid
                                                  convention (align_corners=False); outside the
                                                  image reads pad_value
    out = out * scale + shift                     per channel

This is the contract of the fused C++/CUDA op ``circuits_vision.ops.image_pipeline``; when the
compiled op is there ``render`` uses it, otherwise :func:`image_pipeline_torch`, the same maths
in plain PyTorch. One resample replaces lucid's pad, jitter, scale, rotate and jitter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["image_pipeline_torch", "fused_image_pipeline"]

Pipeline = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def image_pipeline_torch(
    x: torch.Tensor,
    color: torch.Tensor,
    theta: torch.Tensor,
    pad_value: float,
    out_size: tuple[int, int],
    scale: torch.Tensor,
    shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-PyTorch image pipeline (see module doc). Returns ``(out [N,3,h,w], img [N,3,H,W])``."""
    img = torch.sigmoid(torch.einsum("ij,njhw->nihw", color, x))
    grid = F.affine_grid(theta, [x.shape[0], 3, *out_size], align_corners=False)
    # grid_sample reads zeros outside; shifting by the pad value makes the outside read pad_value,
    # with the same bilinear blend at the border as a padded image would give.
    out = F.grid_sample(img - pad_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + pad_value
    return out * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1), img


def fused_image_pipeline() -> Pipeline | None:
    """The compiled ``image_pipeline`` op when the extension provides it, else ``None``."""
    try:
        ops = importlib.import_module("circuits_vision.ops")
        from circuits_vision.ops._extension import extension_available
    except ImportError:
        return None
    op = getattr(ops, "image_pipeline", None)
    if op is None or not extension_available():
        return None
    if not hasattr(torch.ops.circuits_vision, "image_pipeline"):
        return None
    return op
