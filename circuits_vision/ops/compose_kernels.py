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
        Float32 and float64, CPU and CUDA, differentiable in both arguments to any order (the backward
        is itself made of these kernels).

    Raises:
        ValueError: a composed size or element count that int64 cannot hold (e.g. stride 2**61), before
            anything is allocated; TypeError: a stride or dilation that is not an int.
    """
    stride = int_pair(stride, "compose_kernels: `stride` must be an int or a pair (y, x)")
    dilation = int_pair(dilation, "compose_kernels: `dilation` must be an int or a pair (y, x)")
    if use_fallback("compose_kernels"):
        if outer.dim() == 4 and inner.dim() == 4:
            _composed_shape(outer, inner, stride, dilation)  # the op's size checks, before the twin allocates
        return _reference.compose_kernels(outer, inner, stride, dilation)
    return torch.ops.circuits_vision.compose_kernels(outer, inner, list(stride), list(dilation))


_INT64_MAX = 2**63 - 1


def _composed_size(k_outer, k_inner, stride, dilation, axis: str):
    """``(k_outer - 1) * stride + (k_inner - 1) * dilation + 1``, checked to fit in int64 as the kernels check it.

    Python ints do not wrap, so the check is exact; a SymInt under torch.compile becomes a runtime assert.
    """
    size = (k_outer - 1) * stride + (k_inner - 1) * dilation + 1
    torch._check_value(
        size <= _INT64_MAX,
        lambda: (
            f"compose_kernels: the composed kernel's {axis} size ({k_outer} - 1) * stride {stride} + "
            f"({k_inner} - 1) * dilation {dilation} + 1 does not fit in int64; use a smaller stride or dilation"
        ),
    )
    return size


def _composed_shape(outer, inner, stride, dilation) -> tuple:
    """Shape ``(O, I, kh, kw)`` of ``compose_kernels(outer, inner, stride, dilation)``; ValueError when it cannot
    be indexed with int64 (the compiled kernels make the same checks, with the same messages)."""
    kh = _composed_size(outer.shape[2], inner.shape[2], stride[0], dilation[0], "y")
    kw = _composed_size(outer.shape[3], inner.shape[3], stride[1], dilation[1], "x")
    shape = (outer.shape[0], inner.shape[1], kh, kw)
    torch._check_value(
        shape[0] * shape[1] * kh * kw * outer.element_size() <= _INT64_MAX,
        lambda: (
            f"compose_kernels: the composed kernel {list(shape)} (from stride {list(stride)} and dilation "
            f"{list(dilation)}) has more elements than int64 can count; use a smaller stride or dilation"
        ),
    )
    return shape


if extension_available():

    @torch.library.register_fake(_OP)
    def _compose_kernels_fake(outer, inner, stride, dilation):
        torch._check(outer.dim() == 4 and inner.dim() == 4, lambda: "compose_kernels: kernels must be 4-D")
        torch._check(outer.shape[1] == inner.shape[0], lambda: "compose_kernels: outer.shape[1] != inner.shape[0]")
        return outer.new_empty(_composed_shape(outer, inner, stride, dilation))

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

    # The backward is bilinear: grad_outer = B_o(grad, inner) is the adjoint of outer -> E, grad_inner =
    # B_i(grad, outer) the adjoint of inner -> E. Its own vjp is therefore made of the two ops again,
    # so gradients of every order stay exact (and each step runs the compiled kernels):
    #   d grad  = compose(gg_outer, inner) + compose(outer, gg_inner)
    #   d outer = B_o(grad, gg_inner)       d inner = B_i(grad, gg_outer)
    def _setup_backward_context(ctx, inputs, output):
        grad, outer, inner, stride, dilation = inputs
        ctx.save_for_backward(grad, outer, inner)
        ctx.stride, ctx.dilation = stride, dilation
        # a result of the backward that fed nothing arrives as None, not as a tensor of zeros
        ctx.set_materialize_grads(False)

    def _backward_of_backward(ctx, gg_outer, gg_inner):
        grad, outer, inner = ctx.saved_tensors
        need_grad, need_outer, need_inner = ctx.needs_input_grad[:3]
        compose = torch.ops.circuits_vision.compose_kernels
        adjoint = torch.ops.circuits_vision._compose_kernels_backward
        d_grad = d_outer = d_inner = None
        if need_grad:
            terms = []
            if gg_outer is not None:
                terms.append(compose(gg_outer, inner, ctx.stride, ctx.dilation))
            if gg_inner is not None:
                terms.append(compose(outer, gg_inner, ctx.stride, ctx.dilation))
            d_grad = None if not terms else terms[0] if len(terms) == 1 else terms[0] + terms[1]
        if need_outer and gg_inner is not None:
            d_outer = adjoint(grad, outer, gg_inner, ctx.stride, ctx.dilation)[0]
        if need_inner and gg_outer is not None:
            d_inner = adjoint(grad, gg_outer, inner, ctx.stride, ctx.dilation)[1]
        return d_grad, d_outer, d_inner, None, None

    torch.library.register_autograd(
        "circuits_vision::_compose_kernels_backward", _backward_of_backward, setup_context=_setup_backward_context
    )
