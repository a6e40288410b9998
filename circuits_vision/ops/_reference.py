"""Pure-PyTorch twins of every custom op.

Each function here computes exactly what its op in ``csrc/ops`` computes, with
ordinary differentiable torch calls. They are the fallback when the extension is
missing and the ground truth the op tests hold the kernels to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def compose_kernels(
    outer: torch.Tensor, inner: torch.Tensor, stride: Sequence[int], dilation: Sequence[int]
) -> torch.Tensor:
    """Kernel of conv(outer) after conv(inner), as one convolution.

    outer: [O, M, k2h, k2w]; inner: [M, I, k1h, k1w] -> [O, I, (k2-1)*stride + (k1-1)*dilation + 1 per axis].
    ``E[o, i, t] = sum_m sum_{t = v*stride + u*dilation} outer[o, m, v] * inner[m, i, u]``: a transposed
    convolution of the outer kernel (batch O, channels M) by the inner one.
    """
    return F.conv_transpose2d(outer, inner, stride=tuple(stride), dilation=tuple(dilation))


def image_pipeline(
    x: torch.Tensor,
    color: torch.Tensor,
    theta: torch.Tensor,
    pad_value: float,
    out_size: Sequence[int],
    norm_scale: torch.Tensor,
    norm_shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour, sigmoid, affine resample and normalise a batch of decorrelated images.

    x: [N, 3, H, W] pre-colour image; color: [3, 3]; theta: [N, 2, 3] (F.affine_grid convention,
    align_corners=False); out_size: (h, w); norm_scale, norm_shift: [3].
    Returns ``(out [N, 3, h, w], image [N, 3, H, W])`` with ``image = sigmoid(color @ x)`` per pixel and
    ``out = (grid_sample(image - pad_value, grid) + pad_value) * norm_scale + norm_shift``, bilinear with
    zero padding, so a tap outside the image reads ``pad_value``.
    """
    image = torch.sigmoid(torch.einsum("ij,njhw->nihw", color, x))
    h, w = (int(v) for v in out_size)
    grid = F.affine_grid(theta, [x.shape[0], 3, h, w], align_corners=False)
    sampled = F.grid_sample(image - pad_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = (sampled + pad_value) * norm_scale.view(1, 3, 1, 1) + norm_shift.view(1, 3, 1, 1)
    return out, image
