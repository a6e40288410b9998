"""Expanded weights: the linear map between two (not necessarily adjacent) layers as one kernel.

"Visualizing Weights" (Voss et al., Distill 2021) defines the expanded weights from layer A to
layer B as the product of the weight matrices in between, once every non-linearity is replaced
by a linear approximation. They equal the gradient of a B unit with respect to the A activations
in that linearised model (see :func:`circuits_vision.weights.linearized`), but cost one chain of
kernel compositions instead of one backward pass per B channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision.hooks import resolve_layer
from circuits_vision.ops import compose_kernels
from circuits_vision.weights import _kernel
from circuits_vision.weights._kernel import Kernel, Pair
from circuits_vision.weights._rules import (
    ChannelRules,
    channels_last_nodes,
    layer_norm_arguments,
    linear_weight,
    squeeze_excitation_gate,
    squeeze_excitation_types,
)
from circuits_vision.weights._trace import Graph, Node, ancestors, descendants, record

MAXPOOL_APPROXIMATIONS = ("avg", "center")

# Layers and torch functions (by name, as a TorchFunctionMode sees them) that are linear or get the
# identity as linear approximation. Activations that are the identity for large inputs (ReLU, ReLU6,
# Hardswish, GELU, SiLU) get the identity: every unit on its linear side, as "Visualizing Weights" does
# for ReLU. linearize.py replaces the same functions.
_IDENTITY_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardswish,
    nn.GELU,
    nn.SiLU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout1d,
    nn.AlphaDropout,
)
ACTIVATIONS_AS_IDENTITY = frozenset(
    {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "gelu", "silu", "silu_"}
)
_IDENTITY_FUNCTIONS = set(ACTIVATIONS_AS_IDENTITY) | {"contiguous", "clone", "detach"}
_IDENTITY_FUNCTIONS |= {"dropout", "dropout2d", "feature_dropout"}
# what may run on a channels-last map (ConvNeXt blocks): everything else assumes [N, C, H, W]
_CHANNELS_LAST_MODULES = (nn.Linear, nn.LayerNorm, *_IDENTITY_MODULES)
_ADD = {"add", "add_", "__add__", "__radd__", "__iadd__"}
_SUB = {"sub", "sub_", "__sub__", "__isub__", "subtract"}
_RSUB = {"__rsub__", "rsub"}
_MUL = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"}
_DIV = {"div", "div_", "__truediv__", "__itruediv__", "true_divide", "divide"}
_NEG = {"neg", "neg_", "__neg__", "negative"}
_CAT = {"cat", "concat", "concatenate"}
_CHANNELS_LAST_FUNCTIONS = _IDENTITY_FUNCTIONS | _ADD | _SUB | _RSUB | _MUL | _DIV | _NEG | {"layer_norm", "linear"}


@dataclass
class Expansion:
    """Expanded weights with their placement on the source layer.

    ``weights [C_target, C_source, kh, kw]``: target unit ``(c, y, x)`` reads source pixels
    ``[y*stride[0] - offset[0], ... + kh) x [x*stride[1] - offset[1], ... + kw)`` with these weights
    (away from the borders, in the linearised model, biases dropped).
    """

    weights: torch.Tensor
    stride: Pair
    offset: Pair

    def source_window(self, y: int, x: int) -> tuple[slice, slice]:
        """The source rows and columns that target pixel ``(y, x)`` reads."""
        top, left = y * self.stride[0] - self.offset[0], x * self.stride[1] - self.offset[1]
        return slice(top, top + self.weights.shape[2]), slice(left, left + self.weights.shape[3])


def expanded_weights(
    model: nn.Module,
    source: str,
    target: str,
    *,
    crop: int | None = None,
    source_channels: Sequence[int] | None = None,
    maxpool: str = "avg",
    dtype: torch.dtype | None = None,
    differentiable: bool = False,
    compose: Callable[..., torch.Tensor] = compose_kernels,
) -> torch.Tensor:
    """Expanded weights from layer ``source`` to layer ``target``: ``[C_target, C_source, kh, kw]``.

    ``E[t, s, u, v]`` is how much target channel ``t`` at a pixel changes per unit of source channel
    ``s`` at offset ``(u, v)`` inside its receptive field, in the linearised model (see
    :func:`expand` for the placement). Linear approximations used:

    - ReLU / ReLU6 / hardtanh / Hardswish / GELU / SiLU (modules or functions): the identity (every unit on
      its linear side);
    - LayerNorm over the channels (``nn.LayerNorm`` on a channels-last map, ConvNeXt's ``LayerNorm2d``):
      ``gamma * (x - mean_c(x))``; its division by the input's standard deviation at each position is
      not a constant of the model and is left out (weights through it are per unit of that deviation);
    - max pooling: an average pool of the same kernel, stride and padding (``maxpool="avg"``, as in
      "Visualizing Weights"), or ``maxpool="center"``: the centre tap of each window (a strided identity);
    - modules defining ``linear_approximation()`` (e.g. the TF local response norm): the scale it returns;
    - BatchNorm (its running statistics): the per-channel scale ``gamma / sqrt(var + eps)``;
    - squeeze-and-excitation (torchvision's, in MobileNetV3): ``x * gate(x)`` -> ``x * gate(0)``, the
      first-order expansion around a zero input: the gate's value there as a per-channel scale;
    - average pooling (also adaptive, when the map is a multiple of its output, and ``mean`` over H, W),
      convolutions (any stride, dilation, groups), ``nn.Linear`` on the channels (after a pool to 1x1 and
      ``flatten``, or on a channels-last map), NCHW <-> NHWC permutes, concatenation along channels,
      residual additions/subtractions, multiplication by a number or a per-channel parameter (layer
      scale), explicit ``F.pad``, Identity and Dropout are already linear (Dropout: eval mode). All
      biases and constants drop out.

    Args:
        model: a conv net; its dataflow graph is recorded from one forward on meta tensors (any Python
            control flow is fine), so it must accept ``[1, C_in, S, S]`` with ``S = model.input_size`` or 224.
        source, target: layer names (any alias :func:`circuits_vision.hooks.get_layer` accepts).
        crop: keep the central ``crop x crop`` taps.
        source_channels: only these source channels (``C_source`` becomes their count, in this order);
            the cost scales with their number.
        maxpool: ``"avg"`` or ``"center"``.
        dtype: compute in ``torch.float32`` or ``torch.float64``; default the model's (float32 for a
            float16 / bfloat16 model).
        differentiable: keep the autograd graph to the model's weights (default: computed under no_grad).
        compose: the kernel-composition function (default the compiled op; its pure-PyTorch twin gives
            the same numbers).

    Raises:
        UnknownLayerError: a name that is not a layer (the message lists close names).
        ValueError: ``target`` does not depend on ``source``, or a layer on the path has no linear
            approximation here (the message names it).
    """
    options = dict(
        crop=crop, source_channels=source_channels, maxpool=maxpool, dtype=dtype, differentiable=differentiable
    )
    return expand(model, source, target, compose=compose, **options).weights


def expand(
    model: nn.Module,
    source: str,
    target: str,
    *,
    crop: int | None = None,
    source_channels: Sequence[int] | None = None,
    maxpool: str = "avg",
    dtype: torch.dtype | None = None,
    differentiable: bool = False,
    compose: Callable[..., torch.Tensor] = compose_kernels,
) -> Expansion:
    """Like :func:`expanded_weights`, with the kernel's stride and offset on the source layer."""
    if maxpool not in MAXPOOL_APPROXIMATIONS:
        raise ValueError(f"maxpool must be one of {MAXPOOL_APPROXIMATIONS}, got {maxpool!r}")
    if crop is not None and crop < 1:
        raise ValueError(f"crop must be a positive kernel size, got {crop}")
    source_path, _ = resolve_layer(model, source)  # unknown names: UnknownLayerError listing close names
    target_path, target_module = resolve_layer(model, target)
    graph = record(model, target_module, _is_leaf)
    like = _reference_tensor(model, dtype)
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        target_node = graph.output_of(
            target_path, "target", f"target layer '{target}' produced no tensor output in the model's forward"
        )
        source_node = graph.output_of(
            source_path,
            "source",
            f"layer '{target}' does not depend on layer '{source}': '{source}' does not run before '{target}' in the "
            "model's forward (swap them?)",
        )
        kernel = _Walker(graph, like, maxpool, compose, source_channels).run(source_node, target_node, source, target)
        kernel = _kernel.settle(kernel, compose)
        if crop is not None:
            kernel = _kernel.crop(kernel, crop, like)
        return Expansion(kernel.dense(like), kernel.stride, kernel.offset)


def _is_leaf(module: nn.Module) -> bool:
    """Modules recorded as one graph node: torch.nn layers (not containers) and linear_approximation owners."""
    if callable(getattr(module, "linear_approximation", None)) or isinstance(module, squeeze_excitation_types()):
        return True
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return type(module).__module__.startswith("torch.nn") and not isinstance(module, containers)


def _reference_tensor(model: nn.Module, dtype: torch.dtype | None) -> torch.Tensor:
    """An empty tensor carrying the dtype and device the kernels are computed in.

    Default: the model's dtype, except that half-precision models (float16, bfloat16) get float32:
    the kernels are sums over many products, which 8- and 11-bit mantissas would round away, and the
    composition op computes in float32 or float64 only.
    """
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"dtype must be torch.float32 or torch.float64 (or None: the model's, float32 for a half-precision "
            f"model), got {dtype}"
        )
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is None:
        return torch.empty(0, dtype=dtype or torch.float32)
    default = parameter.dtype if parameter.dtype in (torch.float32, torch.float64) else torch.float32
    return parameter.new_empty(0, dtype=dtype or default)


class _Walker(ChannelRules):
    """Propagates the source's kernel through the recorded graph in execution order."""

    def __init__(self, graph: Graph, like: torch.Tensor, maxpool: str, compose, source_channels=None) -> None:
        self.graph, self.like, self.maxpool, self.compose = graph, like, maxpool, compose
        self.source_channels = source_channels
        self.channels_last = channels_last_nodes(graph.nodes, _keeps_channels_last)  # [N, H, W, C] maps

    def run(self, source: Node, target: Node, source_name: str, target_name: str) -> Kernel:
        on_path = descendants(source) & ancestors(target)
        if target not in on_path:
            raise ValueError(
                f"layer '{target_name}' does not depend on layer '{source_name}' (it is computed before it or on "
                "another path), so there are no expanded weights from the source to the target; swap them?"
            )
        width = source.shape[-1] if source in self.channels_last else source.channels
        columns = None if self.source_channels is None else _source_columns(self.source_channels, width, source_name)
        values: dict[Node, Kernel] = {source: _kernel.identity(width, columns)}
        for node in self.graph.nodes:
            if node in on_path and node is not source:
                values[node] = self._step(node, values)
        return values[target]

    # -- one node ---------------------------------------------------------------------------------
    def _step(self, node: Node, values: dict[Node, Kernel]) -> Kernel:
        if node.op == "function" and node.target == "permute" and node.args and node.args[0] in values:
            return self._permute(node, values[node.args[0]])
        if any(n in self.channels_last for n in node.inputs if n in values) and not _keeps_channels_last(node):
            raise self._unsupported(
                node,
                "a layer on a channels-last (permuted) map; there only Linear, LayerNorm, "
                "activations and arithmetic are supported",
            )
        if node.op == "module":
            inputs = [values[n] for n in node.inputs if n in values]
            first = node.args[0] if node.args else None
            if len(inputs) != 1 or not isinstance(first, Node) or first not in values:
                raise self._unsupported(
                    node, "a layer whose first argument is not the only input depending on the source"
                )
            return self._module(node, node.module, inputs[0])
        if node.op == "function":
            return self._function(node, values)
        raise self._unsupported(node)

    def _module(self, node: Node, module: nn.Module, kernel: Kernel) -> Kernel:
        if isinstance(module, _IDENTITY_MODULES):
            return kernel
        if callable(getattr(module, "linear_approximation", None)):
            factor = module.linear_approximation()
            return _kernel.scale(kernel, factor if isinstance(factor, torch.Tensor) else float(factor), self.like)
        if isinstance(module, squeeze_excitation_types()):
            return _kernel.scale(kernel, squeeze_excitation_gate(module), self.like)
        if isinstance(module, nn.Conv2d):
            return self._conv(module, kernel)
        if isinstance(module, nn.BatchNorm2d):
            return _kernel.scale(kernel, _batchnorm_scale(module), self.like)
        if isinstance(module, nn.MaxPool2d):
            if module.return_indices:
                raise self._unsupported(node, "a max pool that returns indices")
            return self._pool(kernel, module.kernel_size, module.stride, module.padding, module.dilation, "max")
        if isinstance(module, nn.AvgPool2d):
            return self._pool(
                kernel, module.kernel_size, module.stride, module.padding, 1, "avg", module.divisor_override
            )
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return self._adaptive_pool(node, kernel, node.args[0], module.output_size)
        if isinstance(module, nn.Linear):
            return self._linear(node, kernel, node.args[0], module.weight)
        if isinstance(module, nn.LayerNorm):
            return self._layer_norm(node, kernel, node.args[0], *layer_norm_arguments(node))
        if isinstance(module, nn.Flatten):
            return self._flatten(node, kernel, node.args[0], module.start_dim, module.end_dim)
        raise self._unsupported(node)

    def _function(self, node: Node, values: dict[Node, Kernel]) -> Kernel:
        name, args, kwargs = node.target, node.args, node.kwargs
        first = args[0] if args else None
        if name in _IDENTITY_FUNCTIONS and first in values:
            return values[first]
        if name == "pad" and first in values:
            return self._pad(node, values[first], args[1] if len(args) > 1 else kwargs["pad"])
        if name in _CAT:
            return self._cat(node, values)
        if name in _ADD | _SUB | _RSUB:
            return self._add(node, values)
        if name in _MUL | _DIV and first in values and len(args) == 2 and _is_number(args[1]):
            factor = float(args[1]) if name in _MUL else 1.0 / float(args[1])
            return _kernel.scale(values[first], factor, self.like)
        if name in _MUL | _DIV and len(args) == 2:
            x, constant = (args[1], args[0]) if name in _MUL and args[1] in values else (args[0], args[1])
            if x in values and isinstance(constant, torch.Tensor):  # a parameter or buffer (layer scale)
                factor = self._constant_factor(node, x, constant)
                return _kernel.scale(values[x], factor if name in _MUL else 1.0 / factor, self.like)
        if name == "linear" and first in values:
            return self._linear(node, values[first], first, linear_weight(node))
        if name == "layer_norm" and first in values:
            return self._layer_norm(node, values[first], first, *layer_norm_arguments(node))
        if name == "adaptive_avg_pool2d" and first in values:
            return self._adaptive_pool(node, values[first], first, args[1] if len(args) > 1 else kwargs["output_size"])
        if name == "mean" and first in values and not kwargs.get("dtype"):
            return self._mean(node, values)
        if name == "flatten" and first in values:
            bound = dict(zip(["input", "start_dim", "end_dim"], args)) | dict(kwargs)
            return self._flatten(node, values[first], first, bound.get("start_dim", 0), bound.get("end_dim", -1))
        if name in _NEG and first in values:
            return _kernel.scale(values[first], -1.0, self.like)
        if name in ("max_pool2d", "avg_pool2d") and first in values:
            return self._functional_pool(node, values)
        raise self._unsupported(node)

    # -- rules ------------------------------------------------------------------------------------
    def _conv(self, conv: nn.Conv2d, kernel: Kernel) -> Kernel:
        weight = conv.weight.to(self.like)
        if conv.groups > 1:  # block-diagonal dense weight [O, C_in, kh, kw]
            out_channels, per_group, kh, kw = weight.shape
            dense = weight.new_zeros((out_channels, per_group * conv.groups, kh, kw))
            rows_per_group = out_channels // conv.groups
            for g in range(conv.groups):
                rows = slice(g * rows_per_group, (g + 1) * rows_per_group)
                dense[rows, g * per_group : (g + 1) * per_group] = weight[rows]
            weight = dense
        padding = conv.padding
        if isinstance(padding, str):  # 'valid': none; 'same': PyTorch puts the odd pixel after
            padding = tuple(
                0 if padding == "valid" else d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size)
            )
        pair = _kernel.pair
        return _kernel.convolve(kernel, weight, pair(conv.stride), pair(padding), pair(conv.dilation), self.compose)

    def _pool(self, kernel: Kernel, size, stride, padding, dilation, kind: str, divisor: int | None = None) -> Kernel:
        size = _kernel.pair(size)
        stride = _kernel.pair(stride if stride not in (None, (), []) else size)
        taps = self.like.new_zeros(size)
        if kind == "max" and self.maxpool == "center":
            taps[(size[0] - 1) // 2, (size[1] - 1) // 2] = 1.0
        else:
            taps.fill_(1.0 / (divisor or size[0] * size[1]))
        return _kernel.depthwise(kernel, taps, stride, _kernel.pair(padding), _kernel.pair(dilation), self.compose)

    def _functional_pool(self, node: Node, values: dict[Node, Kernel]) -> Kernel:
        kind = "max" if node.target == "max_pool2d" else "avg"
        names = ["input", "kernel_size", "stride", "padding"] + (["dilation"] if kind == "max" else [])
        bound = dict(zip(names, node.args)) | dict(node.kwargs)
        if bound.get("return_indices") or bound.get("divisor_override"):
            raise self._unsupported(node, "pooling with return_indices or divisor_override")
        kernel = values[bound["input"]]
        stride, padding, dilation = bound.get("stride"), bound.get("padding", 0), bound.get("dilation", 1)
        return self._pool(kernel, bound["kernel_size"], stride, padding, dilation, kind)

    def _mean(self, node: Node, values: dict[Node, Kernel]) -> Kernel:
        bound = dict(zip(["input", "dim", "keepdim"], node.args)) | dict(node.kwargs)
        x = bound["input"]
        return self._spatial_mean(node, values[x], x, bound.get("dim"))

    def _pad(self, node: Node, kernel: Kernel, pad) -> Kernel:
        pad = tuple(pad)
        if len(pad) not in (2, 4) or not all(isinstance(p, int) for p in pad):
            raise self._unsupported(
                node, f"padding {pad}: only spatial pads (left, right[, top, bottom]) are supported"
            )
        return _kernel.shift(kernel, (pad[2] if len(pad) == 4 else 0, pad[0]))

    def _cat(self, node: Node, values: dict[Node, Kernel]) -> Kernel:
        tensors = node.args[0] if node.args else node.kwargs["tensors"]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3):
            raise self._unsupported(node, f"concatenation along dim {dim} (only channels, dim=1, is supported)")
        parts: list[Kernel | int] = []
        for t in tensors:
            if isinstance(t, Node) and t in values:
                parts.append(_kernel.settle(values[t], self.compose))
            else:  # a branch that does not depend on the source: zero rows
                parts.append(t.channels if isinstance(t, Node) else int(t.shape[1]))
        return _kernel.concatenate(parts, self.like)

    def _add(self, node: Node, values: dict[Node, Kernel]) -> Kernel:
        name, args = node.target, node.args
        a, b = (args[1], args[0]) if name in _RSUB else (args[0], args[1])  # rsub(x, y) = y - x
        alpha = node.kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        sign_b = (-1.0 if name in _SUB | _RSUB else 1.0) * float(alpha)
        terms = [(x, sign) for x, sign in ((a, 1.0), (b, sign_b)) if isinstance(x, Node) and x in values]
        if len(terms) == 1:  # adding a constant; subtracting from a constant negates
            ((x, sign),) = terms
            return values[x] if sign == 1.0 else _kernel.scale(values[x], sign, self.like)
        summands = [_kernel.settle(values[x], self.compose) for x in (a, b)]
        return _kernel.add(summands, [1.0, sign_b], self.like)

    def _unsupported(self, node: Node, why: str = "") -> ValueError:
        reason = f" ({why})" if why else ""
        return ValueError(
            f"expanded weights cannot pass {node.describe()} on the path from source to target{reason}. Supported: "
            f"Conv2d, ReLU/Hardswish/GELU/SiLU (-> identity), MaxPool2d (-> {self.maxpool}), AvgPool2d, adaptive "
            "average pooling, BatchNorm2d, LayerNorm over channels, Linear on channels, flatten of 1x1 maps, "
            "NCHW<->NHWC permutes, concatenation along channels, addition, multiplication by a number or a "
            "per-channel parameter, squeeze-and-excitation, F.pad, Identity/Dropout and modules with a "
            "linear_approximation() method; "
            "give this layer such a method, or choose layers on either side of it."
        )


def _source_columns(channels, width: int, layer: str) -> torch.Tensor:
    """``source_channels`` as a long tensor: a non-empty list of ints in ``[0, width)``."""
    if isinstance(channels, (str, bytes)) or not hasattr(channels, "__iter__"):
        raise TypeError(
            f"source_channels must be a list of channel indices of layer '{layer}', got {type(channels).__name__}"
        )
    listed = channels.tolist() if isinstance(channels, torch.Tensor) else list(channels)
    if not listed:
        raise ValueError(
            f"source_channels is empty: pass at least one channel of layer '{layer}' (0..{width - 1}), "
            f"or source_channels=None for all {width}"
        )
    not_ints = [
        c for c in listed if isinstance(c, bool) or not hasattr(c, "__index__")
    ]  # ints, numpy and 0-d tensor ints
    if not_ints:
        raise TypeError(f"source_channels must be integer channel indices, got {not_ints[:5]}")
    listed = [int(c) for c in listed]
    bad = [c for c in listed if not 0 <= c < width]
    if bad:
        raise IndexError(f"source_channels {bad} out of range: layer '{layer}' has {width} channels (0..{width - 1})")
    return torch.tensor(listed, dtype=torch.long)


def _keeps_channels_last(node: Node) -> bool:
    """Layers that act on the last axis or elementwise, so a channels-last map stays one."""
    if node.op == "module":
        return isinstance(node.module, _CHANNELS_LAST_MODULES)
    return node.op == "function" and node.target in _CHANNELS_LAST_FUNCTIONS


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _batchnorm_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    if bn.running_var is None:
        raise ValueError(
            "BatchNorm2d without running statistics (track_running_stats=False) is not linear in its input"
        )
    scale = torch.rsqrt(bn.running_var + bn.eps)
    return scale * bn.weight if bn.weight is not None else scale
