"""compose_kernels: the kernel of two stacked convolutions as one convolution.

This is the primitive behind expanded weights: ``conv(x, inner)`` followed by
``conv(., outer)`` equals ``conv(x, compose_kernels(outer, inner, ...))`` with the
composite stride, up to the borders where padding acts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from circuits_vision.ops import _reference
from circuits_vision.ops._args import int_pair
from circuits_vision.ops._extension import extension_available, use_fallback

_OP = "circuits_vision::compose_kernels"


def compose_kernels(
    outer: torch.Tensor,
    inner: torch.Tensor,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
) -> torch.Tensor:
    """Compose two convolution kernels into the kernel of their composition.

    Args:
        outer: the later layer's kernel ``[O, M, k2h, k2w]``.
        inner: the earlier layer's kernel ``[M, I, k1h, k1w]``.
        stride: spacing, in input pixels, of the outer kernel's taps: the inner layer's
            stride times the outer layer's dilation.
        dilation: the inner layer's dilation.

    Returns:
        ``[O, I, kh, kw]`` with ``kh = (k2h - 1) * stride + (k1h - 1) * dilation + 1``.
        Float32 and float64, CPU and CUDA, differentiable in both arguments.
    """
    stride = int_pair(stride, "compose_kernels: `stride` must be an int or a pair (y, x)")
    dilation = int_pair(dilation, "compose_kernels: `dilation` must be an int or a pair (y, x)")
    if use_fallback("compose_kernels"):
        return _reference.compose_kernels(outer, inner, stride, dilation)
    return torch.ops.circuits_vision.compose_kernels(outer, inner, list(stride), list(dilation))


def _composed_size(k_outer: int, k_inner: int, stride: int, dilation: int) -> int:
    return (k_outer - 1) * stride + (k_inner - 1) * dilation + 1


if extension_available():

    @torch.library.register_fake(_OP)
    def _compose_kernels_fake(outer, inner, stride, dilation):
        torch._check(outer.dim() == 4 and inner.dim() == 4, lambda: "compose_kernels: kernels must be 4-D")
        torch._check(outer.shape[1] == inner.shape[0], lambda: "compose_kernels: outer.shape[1] != inner.shape[0]")
        kh = _composed_size(outer.shape[2], inner.shape[2], stride[0], dilation[0])
        kw = _composed_size(outer.shape[3], inner.shape[3], stride[1], dilation[1])
        return outer.new_empty((outer.shape[0], inner.shape[1], kh, kw))

    @torch.library.register_fake("circuits_vision::_compose_kernels_backward")
    def _compose_kernels_backward_fake(grad, outer, inner, stride, dilation):
        return torch.empty_like(outer), torch.empty_like(inner)

    def _setup_context(ctx, inputs, output):
        outer, inner, stride, dilation = inputs
        ctx.save_for_backward(outer, inner)
        ctx.stride, ctx.dilation = stride, dilation

    def _backward(ctx, grad):
        outer, inner = ctx.saved_tensors
        grad_outer, grad_inner = torch.ops.circuits_vision._compose_kernels_backward(
            grad, outer, inner, ctx.stride, ctx.dilation
        )
        return grad_outer, grad_inner, None, None

    torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
