"""Pure-PyTorch twins of every custom op.

Each function here computes exactly what its op in ``csrc/ops`` computes, with
ordinary differentiable torch calls. They are the fallback when the extension is
missing and the ground truth the op tests hold the kernels to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def compose_kernels(outer: torch.Tensor, inner: torch.Tensor, stride: Sequence[int], dilation: Sequence[int]) -> torch.Tensor:
    """Kernel of conv(outer) after conv(inner), as one convolution.

    outer: [O, M, k2h, k2w]; inner: [M, I, k1h, k1w] -> [O, I, (k2-1)*stride + (k1-1)*dilation + 1 per axis].
    ``E[o, i, t] = sum_m sum_{t = v*stride + u*dilation} outer[o, m, v] * inner[m, i, u]``: a transposed
    convolution of the outer kernel (batch O, channels M) by the inner one.
    """
    return F.conv_transpose2d(outer, inner, stride=tuple(stride), dilation=tuple(dilation))
