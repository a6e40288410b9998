"""The linear map from a source layer to one node of the graph, as a strided kernel.

A node's value ``node[c, y, x]`` (up to a constant) is
``sum_{c', u, v} weight[c, c', u, v] * source[c', y*stride_y - offset_y + u, x*stride_x - offset_x + v]``
away from borders. Every supported layer maps such a kernel to a new one:

- a convolution of padding ``p``, stride ``t``, dilation ``d`` composes its weight onto the kernel with
  ``compose_kernels(W, K, stride=d*s)``; stride becomes ``t*s`` and offset ``p*s + o`` (the first of its
  taps sits ``p`` node pixels, i.e. ``p*s`` source pixels, before the output pixel); when either kernel
  is 1x1 the composition is a plain matrix product over channels and skips ``compose_kernels``;
- an explicit pad of ``p`` on the left/top acts like the padding of a 1x1 identity convolution;
- a pool is a depthwise convolution with a fixed kernel (a box for average pooling). That filter is
  the same on every map, so it commutes with the channel mixing of every later convolution: it is
  kept aside (``Kernel.taps``) and applied once, where the kernel has the fewest maps (after the
  1x1 reductions of an Inception block rather than on the block's wide input);
- scales (BatchNorm, linear approximations) multiply output channels; biases are constants and drop out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from circuits_vision._utils import int_pair

Pair = tuple[int, int]
Composer = Callable[..., torch.Tensor]  # compose_kernels(outer, inner, stride, dilation)


pair = int_pair  # a conv's stride, padding or dilation (an int or a 1- or 2-tuple) as (y, x)


@dataclass
class Kernel:
    """``weight [C_node, C_source, kh, kw]``, cumulative stride and offset on the source.

    ``weight=None`` is the source itself, kept implicit so that the first layers after the source cost
    O(C) instead of O(C^2): the identity restricted to the source channels ``columns`` (all when
    ``None``). ``taps [th, tw]`` (in source pixels) is a filter still to be applied to every map of the
    weight (pools passed so far); the node's kernel is ``taps (*) weight``, of size ``k + t - 1``.
    :func:`settle` applies it.
    """

    weight: torch.Tensor | None
    channels: int
    stride: Pair = (1, 1)
    offset: Pair = (0, 0)
    columns: torch.Tensor | None = None
    taps: torch.Tensor | None = None

    @property
    def size(self) -> Pair:
        own = (1, 1) if self.weight is None else (self.weight.shape[2], self.weight.shape[3])
        if self.taps is None:
            return own
        return (own[0] + self.taps.shape[0] - 1, own[1] + self.taps.shape[1] - 1)

    def dense(self, like: torch.Tensor) -> torch.Tensor:
        """The kernel as a tensor (materialising the implicit identity with ``like``'s dtype and device).

        A dense weight must be settled first (:func:`settle`): applying its pending taps needs a composer.
        """
        if self.weight is not None:
            if self.taps is not None:
                raise AssertionError("internal: a kernel with pending pool taps must be settled before use")
            return self.weight
        eye = torch.eye(self.channels, dtype=like.dtype, device=like.device)
        if self.columns is not None:
            eye = eye[:, self.columns.to(like.device)]
        eye = eye[:, :, None, None]
        return eye if self.taps is None else eye * self.taps.to(like)


def _stepped(kernel: Kernel, stride: Pair, padding: Pair) -> tuple[Pair, Pair]:
    """Cumulative stride and offset after a layer of ``stride`` and (top, left) ``padding``."""
    return (
        (stride[0] * kernel.stride[0], stride[1] * kernel.stride[1]),
        (padding[0] * kernel.stride[0] + kernel.offset[0], padding[1] * kernel.stride[1] + kernel.offset[1]),
    )


def identity(channels: int, columns: torch.Tensor | None = None) -> Kernel:
    """The source layer's own kernel (``columns``: keep only these source channels)."""
    return Kernel(None, channels, columns=columns)


def settle(kernel: Kernel, compose: Composer) -> Kernel:
    """Apply a dense kernel's pending taps to its every map (one shared-filter composition)."""
    if kernel.weight is None or kernel.taps is None:
        return kernel
    c_node, c_source, kh, kw = kernel.weight.shape
    flat = kernel.weight.reshape(1, c_node * c_source, kh, kw)
    composed = compose(kernel.taps.to(flat)[None, None], flat, (1, 1), (1, 1))
    return replace(kernel, weight=composed.reshape(c_node, c_source, composed.shape[2], composed.shape[3]), taps=None)


def convolve(
    kernel: Kernel, weight: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair, compose: Composer
) -> Kernel:
    """Follow ``kernel`` by a convolution with ``weight [O, C_node, k, k]`` (groups already expanded)."""
    spacing = (dilation[0] * kernel.stride[0], dilation[1] * kernel.stride[1])
    if kernel.weight is not None and kernel.taps is not None:
        # the pending taps commute with this convolution: apply them on whichever side has fewer maps
        if weight.shape[0] > weight.shape[1]:
            kernel = settle(kernel, compose)
        else:
            convolved = convolve(replace(kernel, taps=None), weight, stride, padding, dilation, compose)
            return replace(convolved, taps=kernel.taps)
    if kernel.weight is not None and weight.shape[2:] == (1, 1):
        # a 1x1 conv mixes channels only: one matrix product on the kernel's contiguous layout
        m, i, kh, kw = kernel.weight.shape
        composed = (weight.reshape(weight.shape[0], m) @ kernel.weight.reshape(m, i * kh * kw)).reshape(-1, i, kh, kw)
    elif kernel.weight is not None and kernel.weight.shape[2:] == (1, 1):
        # after a 1x1 kernel (a bottleneck) every tap of the conv is a channel mix: one matrix product
        o, m, kh, kw = weight.shape
        taps = weight.permute(0, 2, 3, 1).reshape(o * kh * kw, m) @ kernel.weight.reshape(m, -1)
        composed = _spread(taps.reshape(o, kh, kw, -1).permute(0, 3, 1, 2).contiguous(), spacing)
    elif kernel.weight is not None:
        composed = compose(weight, kernel.weight, spacing, (1, 1))
    else:  # conv after the (filtered) identity: its own weight's columns, taps spread by `spacing`
        own = weight if kernel.columns is None else weight[:, kernel.columns.to(weight.device)]
        if kernel.taps is None:
            composed = _spread(own, spacing)
        else:  # every (o, c) pair composed with the same taps: one batched composition
            o, c, kh, kw = own.shape
            composed = compose(own.reshape(o * c, 1, kh, kw), kernel.taps.to(own)[None, None], spacing, (1, 1))
            composed = composed.reshape(o, c, composed.shape[2], composed.shape[3])
    return Kernel(composed, weight.shape[0], *_stepped(kernel, stride, padding))


def depthwise(
    kernel: Kernel, taps: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair, compose: Composer
) -> Kernel:
    """Follow ``kernel`` by the same 2-D filter ``taps [kh, kw]`` on every channel (a pool).

    Free until the kernel is settled: the filter joins the kernel's pending ``taps`` (composed with
    those already there, a few taps), and is applied to the maps later, where they are fewest.
    """
    spacing = (dilation[0] * kernel.stride[0], dilation[1] * kernel.stride[1])
    inner = torch.ones(1, 1, dtype=taps.dtype, device=taps.device) if kernel.taps is None else kernel.taps.to(taps)
    composed = compose(taps[None, None], inner[None, None], spacing, (1, 1))[0, 0]
    new_stride, new_offset = _stepped(kernel, stride, padding)
    return replace(kernel, taps=composed, stride=new_stride, offset=new_offset)


def shift(kernel: Kernel, before: Pair) -> Kernel:
    """An explicit pad of ``before = (top, left)`` node pixels (negative: a crop)."""
    offset = (before[0] * kernel.stride[0] + kernel.offset[0], before[1] * kernel.stride[1] + kernel.offset[1])
    return replace(kernel, offset=offset)


def scale(kernel: Kernel, factor: torch.Tensor | float, like: torch.Tensor) -> Kernel:
    """Multiply output channels by ``factor`` (a number or ``[C_node]``)."""
    per_channel = isinstance(factor, torch.Tensor) and factor.dim() > 0
    if per_channel:
        factor = factor.to(like)[:, None, None, None]
    if kernel.weight is not None:  # pending taps commute with a scale
        return replace(kernel, weight=kernel.weight * factor)
    if per_channel:  # the identity becomes a diagonal weight
        return Kernel(kernel.dense(like) * factor, kernel.channels, kernel.stride, kernel.offset)
    # a number times the identity: scale its shared taps
    taps = torch.ones(1, 1, dtype=like.dtype, device=like.device) if kernel.taps is None else kernel.taps
    return replace(kernel, taps=taps * float(factor))


def _union(kernels: list[Kernel], what: str) -> tuple[Pair, Pair]:
    """Offset and size of the smallest window on the source holding every kernel's window."""
    strides = {k.stride for k in kernels}
    if len(strides) > 1:
        raise ValueError(f"cannot {what} branches that sit on the source with different strides {sorted(strides)}")
    offset = (max(k.offset[0] for k in kernels), max(k.offset[1] for k in kernels))
    end = (max(k.size[0] - k.offset[0] for k in kernels), max(k.size[1] - k.offset[1] for k in kernels))
    return offset, (end[0] + offset[0], end[1] + offset[1])


def _window(kernel: Kernel, offset: Pair) -> tuple[slice, slice]:
    """Where ``kernel``'s taps fall inside a union window with ``offset``."""
    top, left = offset[0] - kernel.offset[0], offset[1] - kernel.offset[1]
    return slice(top, top + kernel.size[0]), slice(left, left + kernel.size[1])


def concatenate(parts: list[Kernel | int], like: torch.Tensor) -> Kernel:
    """Channel concatenation; an ``int`` part is that many channels that do not depend on the source.

    Branch kernels are written straight into one tensor of the union window (centres aligned by
    their offsets), so no padded copies are made; only the frame around each branch's window is
    zeroed (the result can be hundreds of MB, and a full zero fill is a pass over all of it).
    """
    kernels = [p for p in parts if isinstance(p, Kernel)]
    offset, size = _union(kernels, "concatenate")
    dense = [k.dense(like) for k in kernels]
    rows = sum(d.shape[0] for d in dense) + sum(p for p in parts if isinstance(p, int))
    weight = dense[0].new_empty((rows, dense[0].shape[1], size[0], size[1]))
    start, it = 0, iter(zip(kernels, dense))
    for part in parts:
        if isinstance(part, int):
            weight[start : start + part].zero_()
            start += part
            continue
        kernel, d = next(it)
        block = weight[start : start + d.shape[0]]
        ys, xs = _window(kernel, offset)
        block[:, :, : ys.start].zero_()
        block[:, :, ys.stop :].zero_()
        block[:, :, ys, : xs.start].zero_()
        block[:, :, ys, xs.stop :].zero_()
        block[:, :, ys, xs] = d
        start += d.shape[0]
    return Kernel(weight, rows, kernels[0].stride, offset)


def add(kernels: list[Kernel], signs: list[float], like: torch.Tensor) -> Kernel:
    """Sum of branches (a residual addition), each multiplied by its sign."""
    offset, size = _union(kernels, "add")
    dense = [k.dense(like) for k in kernels]
    weight = dense[0].new_zeros((dense[0].shape[0], dense[0].shape[1], size[0], size[1]))
    for kernel, d, sign in zip(kernels, dense, signs):
        ys, xs = _window(kernel, offset)
        weight[:, :, ys, xs] += sign * d
    return Kernel(weight, kernels[0].channels, kernels[0].stride, offset)


def crop(kernel: Kernel, size: int, like: torch.Tensor) -> Kernel:
    """The central ``size x size`` window of the kernel (the offset moves with it)."""
    weight = kernel.dense(like)
    kh, kw = weight.shape[2], weight.shape[3]
    if size > min(kh, kw):
        raise ValueError(
            f"crop={size} is larger than the expanded kernel ({kh}x{kw}); use crop <= {min(kh, kw)} or none"
        )
    top, left = (kh - size) // 2, (kw - size) // 2
    return Kernel(
        weight[:, :, top : top + size, left : left + size],
        kernel.channels,
        kernel.stride,
        (kernel.offset[0] - top, kernel.offset[1] - left),
    )


def _spread(weight: torch.Tensor, spacing: Pair) -> torch.Tensor:
    """Insert ``spacing - 1`` zeros between the taps of ``weight`` (a dilated kernel)."""
    if spacing == (1, 1):
        return weight
    o, c, kh, kw = weight.shape
    out = weight.new_zeros((o, c, (kh - 1) * spacing[0] + 1, (kw - 1) * spacing[1] + 1))
    out[:, :, :: spacing[0], :: spacing[1]] = weight
    return out
