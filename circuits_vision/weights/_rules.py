"""Expanded-weight rules for the layers of newer conv nets (MobileNetV3, ConvNeXt) and classifier heads.

Each rule maps the kernel of a node's input (see :mod:`circuits_vision.weights._kernel`) to the kernel of
its output; they are mixed into the walker of :mod:`circuits_vision.weights.expanded`:

- channels-last blocks: ``permute(0, 2, 3, 1)`` / ``permute(0, 3, 1, 2)`` only move the channel axis,
  so the kernel is unchanged and the node is marked channels-last; ``nn.Linear`` on the channel axis
  (of a channels-last map or an ``[N, C]`` vector) is a 1x1 convolution;
- ``LayerNorm`` over the channels: ``gamma * (x - mean_c(x))``, the centring and the affine scale.
  The division by the per-position standard deviation is not a constant of the model (it depends on
  the input), so it is left out like a bias: weights through a LayerNorm are per unit of the input's
  standard deviation there;
- adaptive average pooling whose input is a multiple of its output (a 7x7 map to 1x1: one 7x7 box),
  and ``mean`` over the spatial dims: average pools;
- ``flatten`` of an ``[N, C, 1, 1]`` map: the same kernel;
- multiplication by a per-channel constant tensor (ConvNeXt's layer scale ``[C, 1, 1]``): a scale;
- squeeze-and-excitation blocks (torchvision's ``SqueezeExcitation``, used by MobileNetV3 and
  EfficientNet): ``x * gate(x)`` -> ``x * gate(0)``, the first-order expansion around a zero input
  (there the gate's own dependence on ``x`` is multiplied by 0): one scale per channel, computed from
  the block's real layers (ReLU and Hardsigmoid as they are) on zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from circuits_vision.weights import _kernel
from circuits_vision.weights._kernel import Kernel
from circuits_vision.weights._trace import Node

TO_CHANNELS_LAST, TO_CHANNELS_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)


def permutation(node: Node) -> tuple[int, ...] | None:
    """The dims of a ``permute`` call on a 4-d tensor, normalised to 0..3 (``None`` for anything else)."""
    dims = node.args[1:] or (node.kwargs.get("dims"),)
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = tuple(dims[0])
    x = node.args[0] if node.args else None
    if not isinstance(x, Node) or x.shape is None or len(x.shape) != 4 or len(dims) != 4:
        return None
    if any(not isinstance(d, int) for d in dims):
        return None
    return tuple(d % 4 for d in dims)


def channels_last_nodes(nodes: list[Node], keeps_layout) -> set[Node]:
    """The nodes holding ``[N, H, W, C]`` maps: a ``permute(0, 2, 3, 1)`` of an NCHW map, and whatever
    ``keeps_layout(node)`` (Linear, LayerNorm, activations, arithmetic) computes from one, until
    ``permute(0, 3, 1, 2)``. A property of the whole graph, so a source inside such a block is read right."""
    last: set[Node] = set()
    for node in nodes:  # execution order: inputs come first
        inputs = node.inputs
        if node.op == "function" and node.target == "permute":
            if inputs and inputs[0] not in last and permutation(node) == TO_CHANNELS_LAST:
                last.add(node)
        elif node.op == "item" and inputs and inputs[0] in last:
            last.add(node)
        elif any(n in last for n in inputs) and keeps_layout(node):
            last.add(node)
    return last


class ChannelRules:
    """Mixin for the walker: needs ``like``, ``compose``, ``channels_last`` (see :func:`channels_last_nodes`),
    ``_pool`` and ``_unsupported``."""

    like: torch.Tensor
    channels_last: set[Node]

    def _last_axis_is_channels(self, x: Node) -> bool:
        return x in self.channels_last or (x.shape is not None and len(x.shape) == 2)

    def _permute(self, node: Node, kernel: Kernel) -> Kernel:
        x, dims = node.args[0], permutation(node)
        if (
            dims == TO_CHANNELS_FIRST
            and x in self.channels_last
            or dims == TO_CHANNELS_LAST
            and node in self.channels_last
        ):
            return kernel
        raise self._unsupported(node, f"a permutation {dims} of a tensor that is not NCHW -> NHWC or back")

    def _linear(self, node: Node, kernel: Kernel, x: Node, weight: torch.Tensor) -> Kernel:
        if not self._last_axis_is_channels(x):
            raise self._unsupported(node, "a Linear on the last axis of an [N, C, H, W] map (it would mix positions)")
        return _kernel.convolve(kernel, weight.to(self.like)[:, :, None, None], (1, 1), (0, 0), (1, 1), self.compose)

    def _layer_norm(self, node: Node, kernel: Kernel, x: Node, normalized_shape, weight: torch.Tensor | None) -> Kernel:
        channels = x.shape[-1]
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if shape != (channels,) or not self._last_axis_is_channels(x):
            raise self._unsupported(node, f"a LayerNorm over {shape}, not over the channels alone")
        eye = torch.eye(channels, dtype=self.like.dtype, device=self.like.device)
        mix = eye - 1.0 / channels  # x - mean over channels
        if weight is not None:
            mix = weight.to(self.like)[:, None] * mix
        return _kernel.convolve(kernel, mix[:, :, None, None], (1, 1), (0, 0), (1, 1), self.compose)

    def _flatten(self, node: Node, kernel: Kernel, x: Node, start_dim: int, end_dim: int) -> Kernel:
        if x.shape is None or len(x.shape) != 4 or x in self.channels_last or start_dim != 1 or end_dim not in (-1, 3):
            raise self._unsupported(node, "a flatten other than [N, C, 1, 1] -> [N, C]")
        if tuple(x.shape[2:]) != (1, 1):
            raise self._unsupported(
                node,
                f"a flatten of a {x.shape[2]}x{x.shape[3]} map (it mixes positions into "
                "channels); pool it to 1x1 first, or choose a target before it",
            )
        return kernel

    def _adaptive_pool(self, node: Node, kernel: Kernel, x: Node, output_size) -> Kernel:
        if x.shape is None or len(x.shape) != 4 or x in self.channels_last:
            raise self._unsupported(node, "adaptive pooling of a tensor that is not [N, C, H, W]")
        height, width = x.shape[2:]
        out = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        out = (out[0] or height, out[1] or width)  # None keeps that size
        if height % out[0] or width % out[1]:
            raise self._unsupported(
                node,
                f"adaptive average pooling of a {height}x{width} map to {out[0]}x{out[1]}: its "
                "windows differ by position; use an input size whose map is a multiple",
            )
        size = (height // out[0], width // out[1])
        return self._pool(kernel, size, size, 0, 1, "avg")

    def _spatial_mean(self, node: Node, kernel: Kernel, x: Node, dims) -> Kernel:
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if x.shape is None or len(x.shape) != 4 or x in self.channels_last or sorted(d % 4 for d in dims) != [2, 3]:
            raise self._unsupported(node, f"a mean over dims {dims} (only the spatial dims of [N, C, H, W])")
        size = tuple(x.shape[2:])
        return self._pool(kernel, size, size, 0, 1, "avg")

    def _constant_factor(self, node: Node, x: Node, constant: torch.Tensor) -> torch.Tensor | float:
        """``constant`` as a per-channel factor of ``x``'s channels (``[C]``) or a number."""
        if constant.is_meta:
            raise self._unsupported(node, "a product with a tensor the forward computes (not a parameter or buffer)")
        if constant.numel() == 1:
            return float(constant)
        channels = x.shape[-1] if self._last_axis_is_channels(x) else x.shape[1]
        shape = tuple(constant.shape)
        per_channel = (
            (shape[-1:] == (channels,) and all(s == 1 for s in shape[:-1]))
            if self._last_axis_is_channels(x)
            else (len(shape) >= 3 and shape[-3:] == (channels, 1, 1) and all(s == 1 for s in shape[:-3]))
        )
        if not per_channel:
            raise self._unsupported(node, f"a product with a {shape} tensor that is not one number per channel")
        return constant.reshape(-1)


def linear_weight(node: Node) -> torch.Tensor:
    """The weight of an ``nn.Linear`` node or an ``F.linear(x, weight, bias)`` call."""
    if node.op == "module":
        return node.module.weight
    return node.args[1] if len(node.args) > 1 else node.kwargs["weight"]


def layer_norm_arguments(node: Node) -> tuple[object, torch.Tensor | None]:
    """``(normalized_shape, weight)`` of an ``nn.LayerNorm`` node or an ``F.layer_norm`` call."""
    if node.op == "module":
        module: nn.LayerNorm = node.module
        return module.normalized_shape, module.weight
    names = ["input", "normalized_shape", "weight", "bias", "eps"]
    bound = dict(zip(names, node.args)) | dict(node.kwargs)
    return bound["normalized_shape"], bound.get("weight")


def squeeze_excitation_types() -> tuple[type, ...]:
    """The squeeze-and-excitation classes handled here (none when torchvision is not installed)."""
    try:
        from torchvision.ops import SqueezeExcitation
    except ImportError:
        return ()
    return (SqueezeExcitation,)


def squeeze_excitation_gate(module: nn.Module) -> torch.Tensor:
    """``[C]``: the block's gate for a zero input, ``scale_activation(fc2(activation(fc1(0))))``.

    Call it outside :func:`~circuits_vision.weights.linearized`'s forward, so the gate's ReLU is the real one.
    """
    zeros = module.fc1.weight.new_zeros((1, module.fc1.in_channels, 1, 1))  # avgpool(0) = 0
    return module.scale_activation(module.fc2(module.activation(module.fc1(zeros)))).reshape(-1)
