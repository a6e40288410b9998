"""The linearised model: every non-linearity replaced by the linear approximation expanded weights use.

Inside ``with linearized(model):`` calling ``model(x)`` computes the linear model (plus constants)
whose exact kernels :func:`~circuits_vision.weights.expanded_weights` returns: the gradient of a
target unit with respect to a source layer in it equals the expanded weights. It is the reference
definition the tests hold the fast kernel composition to, and a way to inspect the approximation.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from circuits_vision._utils import int_pair
from circuits_vision.weights._rules import squeeze_excitation_gate, squeeze_excitation_types
from circuits_vision.weights.expanded import ACTIVATIONS_AS_IDENTITY, MAXPOOL_APPROXIMATIONS


class _LinearFunctions(TorchFunctionMode):
    """ReLU, Hardswish, GELU, SiLU -> identity, LayerNorm -> centring and affine scale, max pool -> average
    (or centre) pool, -inf padding -> zero padding."""

    def __init__(self, maxpool: str) -> None:
        super().__init__()
        self.maxpool = maxpool

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ACTIVATIONS_AS_IDENTITY and args and isinstance(args[0], torch.Tensor):
            return args[0]  # hardtanh too: nn.ReLU6 calls it
        if name == "layer_norm":
            return _centred_layer_norm(*args, **kwargs)
        if name == "max_pool2d":
            return _linear_max_pool(self.maxpool, *args, **kwargs)
        if name == "pad":
            value = kwargs.get("value", args[3] if len(args) > 3 else None)
            if value is not None and math.isinf(value):  # max-pool padding: the average pool pads with 0
                kwargs = {k: v for k, v in kwargs.items() if k != "value"}
                return F.pad(*args[:3], **kwargs)
        return func(*args, **kwargs)


def _centred_layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``weight * (x - mean(x)) + bias`` over the normalised dims: a LayerNorm without its division by the
    per-position standard deviation, which depends on the input (expanded weights drop it the same way)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dims = tuple(range(-len(shape), 0))
    out = input - input.mean(dim=dims, keepdim=True)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _linear_max_pool(
    maxpool: str, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    if return_indices:
        raise ValueError("linearized(): a max pool that returns indices has no linear replacement")
    if maxpool == "avg":
        if dilation not in (1, (1, 1)):
            raise ValueError("linearized(): a dilated max pool has no average-pool replacement")
        return F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad=True)
    size = int_pair(kernel_size)
    channels = input.shape[1]
    taps = input.new_zeros((channels, 1, *size))
    taps[:, :, (size[0] - 1) // 2, (size[1] - 1) // 2] = 1.0
    return F.conv2d(input, taps, None, stride if stride not in (None, ()) else size, padding, dilation, groups=channels)


@contextlib.contextmanager
def linearized(model: nn.Module, *, maxpool: str = "avg") -> Iterator[nn.Module]:
    """Within the block, ``model``'s forward computes its linear approximation (in place, restored after).

    - ReLU / ReLU6 / Hardswish / GELU / SiLU (modules, ``F.relu``, ``torch.relu``, ``x.relu()``, ...) -> identity;
    - LayerNorm (``nn.LayerNorm``, ``F.layer_norm``) -> ``weight * (x - mean(x)) + bias``: its division by
      the input's standard deviation, which is not a constant, is left out;
    - max pooling -> average pooling of the same kernel, stride and padding (``maxpool="center"``: the
      centre tap of each window); ``F.pad(..., value=-inf)`` (TensorFlow-style max-pool padding) pads with 0;
    - modules defining ``linear_approximation()`` (the TF local response norm) -> multiplication by it;
    - squeeze-and-excitation blocks (torchvision's) -> multiplication by their gate at a zero input;
    - everything else unchanged: call ``model.eval()`` first so BatchNorm and Dropout are linear too.

    The rewrite applies to torch calls made while the model runs forward, not to other code in the block.
    """
    if maxpool not in MAXPOOL_APPROXIMATIONS:
        raise ValueError(f"maxpool must be one of {MAXPOOL_APPROXIMATIONS}, got {maxpool!r}")
    approximated = [m for m in model.modules() if callable(getattr(m, "linear_approximation", None))]
    gated = [m for m in model.modules() if isinstance(m, squeeze_excitation_types())]
    mode = _LinearFunctions(maxpool)
    depth = [0]

    def enter(module, args):
        if depth[0] == 0:
            mode.__enter__()
        depth[0] += 1

    def leave(module, args, output):
        depth[0] -= 1
        if depth[0] == 0:
            mode.__exit__(None, None, None)

    handles = [model.register_forward_pre_hook(enter), model.register_forward_hook(leave, always_call=True)]
    try:
        for module in approximated:
            module.forward = _scaled_by(module.linear_approximation())
        for module in gated:  # the gate at a zero input, computed before the forward's ReLU -> identity
            module.forward = _scaled_by(squeeze_excitation_gate(module))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for module in approximated + gated:
            module.__dict__.pop("forward", None)  # the instance attribute; the class's forward shows through again


def _scaled_by(factor):
    if isinstance(factor, torch.Tensor) and factor.dim() == 1:
        return lambda x: x * factor.to(x)[None, :, None, None]
    return lambda x: x * float(factor)
