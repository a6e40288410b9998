"""Small layers shared by the InceptionV1-style models.

Everything here is an ``nn.Module`` so that hooks can reach it by name:

- :class:`Concat` joins branch outputs along channels (``mixed3a``, ``mixed3a_pre_relu``).
- :class:`LocalResponseNormTF` is TensorFlow's ``tf.nn.local_response_normalization``, the LRN lucid's
  InceptionV1 (``inception5h``) was trained with.
- :class:`LocalResponseNormLucent` is the LRN lucent's port uses (``F.local_response_norm(x, size=9,
  alpha=1e-4, beta=0.5, k=1)``), kept for bit-for-bit comparisons with lucent.
- :func:`same_padding` / :func:`pad_same` give TensorFlow "SAME" padding as an explicit ``F.pad``.

Both LRNs compute the windowed sum of squares over channels as a banded 1x1 convolution of ``x**2``
(one GEMM), which is several times faster than torch's ``avg_pool3d`` based ``local_response_norm``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Concat(nn.Module):
    """Concatenate tensors along the channel dimension: ``forward(*tensors) -> torch.cat(tensors, 1)``.

    ``inputs`` optionally names the layers whose outputs are concatenated, in order, so that
    generic code can tell which channel range comes from which branch.
    """

    def __init__(self, inputs: tuple[str, ...] | list[str] = ()):
        super().__init__()
        self.inputs = tuple(inputs)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, 1)

    def extra_repr(self) -> str:
        return f"inputs={list(self.inputs)}" if self.inputs else ""


class BandedLocalResponseNorm(nn.Module):
    """``y[:, c] = x[:, c] / (bias + alpha * sum_{|c'-c| <= radius} x[:, c']**2) ** beta``.

    Channels outside ``[0, C)`` count as zero. Input and output: ``[N, C, H, W]``.

    The windowed sum is ``conv2d(x**2, band)`` with a ``[C, C, 1, 1]`` 0/1 band matrix, cached per
    (channels, dtype, device).
    """

    def __init__(self, depth_radius: int, bias: float, alpha: float, beta: float):
        super().__init__()
        if depth_radius < 0:
            raise ValueError(f"depth_radius must be >= 0, got {depth_radius}")
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self._bands: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def band(self, channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The ``[C, C, 1, 1]`` matrix with ones where ``|i - j| <= depth_radius``."""
        key = (channels, dtype, device)
        band = self._bands.get(key)
        if band is None:
            index = torch.arange(channels, device=device)
            band = ((index[:, None] - index[None, :]).abs() <= self.depth_radius).to(dtype)
            band = band[:, :, None, None].contiguous()
            self._bands[key] = band
        return band

    def squared_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_{|c'-c| <= radius} x[:, c']**2`` for every channel c: ``[N, C, H, W]``."""
        return F.conv2d(x * x, self.band(x.shape[1], x.dtype, x.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects [N, C, H, W], got shape {tuple(x.shape)}")
        denominator = torch.addcmul(
            torch.full((), self.bias, dtype=x.dtype, device=x.device),
            self.squared_sum(x),
            torch.full((), self.alpha, dtype=x.dtype, device=x.device),
        )
        if self.beta == 0.5:
            return x * torch.rsqrt(denominator)
        return x * denominator.pow(-self.beta)

    def linear_approximation(self) -> float:
        """The scale applied to inputs near 0 (where ``sqr_sum`` vanishes): ``bias ** -beta``."""
        return self.bias**-self.beta

    def extra_repr(self) -> str:
        return f"depth_radius={self.depth_radius}, bias={self.bias}, alpha={self.alpha}, beta={self.beta}"

    def __getstate__(self):
        # The band cache is derived data (and may hold CUDA tensors): never pickle or deepcopy it.
        state = self.__dict__.copy()
        state["_bands"] = {}
        return state


class LocalResponseNormTF(BandedLocalResponseNorm):
    """TensorFlow's ``tf.nn.local_response_normalization`` on ``[N, C, H, W]`` tensors.

    ``sqr_sum[c] = sum(x[c - depth_radius : c + depth_radius + 1] ** 2)`` and
    ``output = x / (bias + alpha * sqr_sum) ** beta``; unlike torch's ``local_response_norm``, alpha is
    *not* divided by the window size. Defaults are the values in lucid's ``inception5h`` graph.
    """

    def __init__(self, depth_radius: int = 5, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.5):
        super().__init__(depth_radius, bias, alpha, beta)


class LocalResponseNormLucent(BandedLocalResponseNorm):
    """The LRN of lucent's InceptionV1: ``F.local_response_norm(x, size, alpha, beta, k)``.

    torch's definition divides alpha by ``size`` and sums over ``[c - size//2, c + (size-1)//2]``;
    for odd ``size`` that is a symmetric band of radius ``size // 2``. Defaults are lucent's call
    (``size=9, alpha=9.99999974738e-05, beta=0.5, k=1``).
    """

    def __init__(self, size: int = 9, alpha: float = 9.99999974738e-05, beta: float = 0.5, k: float = 1.0):
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LocalResponseNormLucent needs an odd window size, got {size}")
        super().__init__(size // 2, k, alpha / size, beta)
        self.size = size


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(before, after)`` for one spatial dimension.

    The output has ``ceil(size / stride)`` positions; the extra row/column goes after (bottom/right).
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad ``[N, C, H, W]`` like TensorFlow "SAME" for a ``kernel_size`` window at ``stride``.

    Max pools pass ``value=-inf`` so padding never wins the max. Returns ``x`` itself when no
    padding is needed (1x1 kernels), avoiding a copy.
    """
    top, bottom = same_padding(x.shape[-2], kernel_size, stride)
    left, right = same_padding(x.shape[-1], kernel_size, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)
