"""Forward hooks by layer name, activation capture and the truncated forward.

``run_with_cache(model, x, ["mixed3a", "mixed4a"])`` runs one forward pass and returns the outputs
of the named layers, stopping as soon as the last of them has been computed: a private exception is
raised from that layer's forward hook and caught here, so later layers never run. The captured
tensors keep their autograd graph, so a loss on them back-propagates to ``x``.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from circuits_vision._utils import int_pair
from circuits_vision.hooks.names import resolve_layer, resolve_layers

__all__ = [
    "as_images",
    "as_input",
    "check_channel",
    "eval_mode",
    "hooked",
    "layer_shape",
    "model_device",
    "model_dtype",
    "model_input_channels",
    "model_input_size",
    "probe_input",
    "run_with_cache",
]

ForwardHook = Callable[[nn.Module, tuple, object], object]


class _StopForward(Exception):
    """Raised from the last needed forward hook to end a truncated forward pass early."""


@contextlib.contextmanager
def hooked(model: nn.Module, hooks: Mapping[str, ForwardHook]) -> Iterator[nn.Module]:
    """Add forward hooks to named layers for the duration of a ``with`` block.

    Each ``fn(module, inputs, output)`` runs after the layer's forward; returning a value replaces
    the layer's output (``None`` keeps it). Hooks are removed when the block ends, also on errors.

    >>> with hooked(model, {"mixed3a": lambda m, i, o: o * 0}):
    ...     logits = model(x)          # mixed3a zero-ablated
    """
    modules = resolve_layers(model, hooks)
    resolved = [(modules[name][1], fn) for name, fn in hooks.items()]
    handles = []
    try:
        for module, fn in resolved:
            handles.append(module.register_forward_hook(fn))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def run_with_cache(
    model: nn.Module,
    x: torch.Tensor,
    names: str | Sequence[str],
    *,
    truncate: bool = True,
    allow_missing: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once and return the outputs of the named layers.

    Args:
        model: any ``nn.Module``.
        x: the model input, e.g. ``[N, 3, H, W]`` in [0, 1] for our models: a tensor, or a NumPy
            array / nested list (moved to the model's device and floating dtype, see :func:`as_input`).
        names: layer names or aliases (a single string is accepted).
        truncate: stop the forward pass as soon as every requested layer has produced its output.
        allow_missing: leave out layers that did not run (e.g. when capturing every layer of a
            torchvision GoogLeNet, whose aux heads only run in training) instead of raising.

    Returns:
        ``{name: output}`` in the requested order, keyed by the names as given; a conv layer's
        output is ``[N, C, H', W']``. The autograd graph is kept (under ``torch.no_grad`` there is none).

    A module called several times in one forward (torchvision ResNet's shared ``relu``) is captured
    at its first call. If the model later changes a captured tensor in place (a ``ReLU(inplace=True)``
    after a captured ``BatchNorm``), the forward is run once more storing copies, so the values
    returned are the layer's real outputs. Raises ``RuntimeError`` if a requested layer never ran
    (unless ``allow_missing``); with truncation that layer would also have made the whole model run.
    """
    requested = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    if not requested:
        raise ValueError("run_with_cache needs at least one layer name")
    x = as_input(model, x)
    modules = {name: module for name, (_, module) in resolve_layers(model, requested).items()}
    # Inference tensors have no version counter, so in-place changes can't be seen: copy at once.
    copy = torch.is_inference_mode_enabled()
    captured = _forward_capturing(model, x, modules, truncate=truncate, copy=copy)
    if not copy and any(_changed_in_place(output, version) for output, version in captured.values()):
        captured = _forward_capturing(model, x, modules, truncate=truncate, copy=True)
    missing = [name for name in requested if id(modules[name]) not in captured]
    if missing and not allow_missing:
        raise RuntimeError(
            f"layers {missing} of {type(model).__name__} did not run in the forward pass, so they have "
            "no output to capture (is the layer used only in training mode, like GoogLeNet's aux heads?)"
        )
    return {name: captured[id(modules[name])][0] for name in requested if id(modules[name]) in captured}


def as_input(model: nn.Module, x, what: str = "x") -> torch.Tensor:
    """A model input as a tensor: array-likes (NumPy arrays, nested lists) become tensors on the
    model's device in its floating dtype; tensors pass unchanged. 8-bit images (0-255) are refused,
    since the models take floats in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(_numpy().asarray(x))
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{what} must be a tensor or an array-like of numbers, got {type(x).__name__}") from error
        if x.dtype == torch.uint8:
            _refuse_uint8(what)
        x = x.to(device=model_device(model), dtype=model_dtype(model))
    elif x.dtype == torch.uint8:
        _refuse_uint8(what)
    return x


def as_images(model: nn.Module, images, what: str = "images") -> torch.Tensor:
    """:func:`as_input` for ``[N, C, H, W]`` images in [0, 1]: also checks the shape and the range."""
    images = as_input(model, images, what)
    if images.dim() != 4:
        raise ValueError(f"{what} must be [N, C, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{what} must be floating point in [0, 1], got dtype {images.dtype}")
    if images.numel():
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            hint = " (0-255 images: divide by 255)" if high > 1.0 and high <= 255.0 and low >= 0.0 else ""
            raise ValueError(f"{what} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]{hint}")
    return images


def _refuse_uint8(what: str) -> None:
    raise TypeError(f"{what} is uint8 (0-255); the models take floats in [0, 1]: pass x.float() / 255")


def _numpy():
    import numpy

    return numpy


def _forward_capturing(
    model: nn.Module,
    x: torch.Tensor,
    modules: Mapping[str, nn.Module],
    *,
    truncate: bool,
    copy: bool,
) -> dict[int, tuple[object, int]]:
    """One forward; ``{id(module): (output, output_version)}`` for the first call of each module."""
    targets = {id(module): module for module in modules.values()}
    pending = set(targets)
    captured: dict[int, tuple[object, int]] = {}

    def make_hook(key: int) -> ForwardHook:
        def hook(module, inputs, output):
            if key in captured:
                if not truncate:
                    name = next(n for n, m in modules.items() if id(m) == key)
                    warnings.warn(
                        f"layer {name!r} ran more than once in one forward; its first output is returned",
                        stacklevel=2,
                    )
                return None
            stored = output.clone() if copy and isinstance(output, torch.Tensor) else output
            captured[key] = (stored, _version(stored))
            pending.discard(key)
            if truncate and not pending:
                raise _StopForward
            return None

        return hook

    handles = []
    try:
        for key, module in targets.items():
            handles.append(module.register_forward_hook(make_hook(key)))
        model(x)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _version(output: object) -> int:
    """The tensor's in-place write counter (0 for non-tensors and inference tensors, which have none)."""
    if isinstance(output, torch.Tensor) and not output.is_inference():
        return output._version
    return 0


def _changed_in_place(output: object, version: int) -> bool:
    return _version(output) != version


# --- shapes from a probe forward ---------------------------------------------------------------

# model -> {(canonical layer name, (H, W)): shape}; weak keys so the cache never keeps a model alive.
_SHAPE_CACHE: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def layer_shape(model: nn.Module, name: str, input_size: int | tuple[int, int] | None = None) -> torch.Size:
    """Output shape of a layer without the batch dimension, e.g. ``(C, H, W)`` for a conv layer.

    Found by one truncated forward of a ``[1, C_in, S, S]`` zero image with
    ``S = input_size or model_input_size(model)``, in eval mode and without gradients;
    cached per model and input size (the cache assumes the model's layers are not swapped afterwards).
    """
    canonical, _ = resolve_layer(model, name)
    size = size_pair(input_size if input_size is not None else model_input_size(model))
    per_model = _SHAPE_CACHE.setdefault(model, {})
    key = (canonical, size)
    if key not in per_model:
        x = probe_input(model, size)
        with torch.no_grad(), eval_mode(model):
            output = run_with_cache(model, x, [canonical])[canonical]
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {canonical!r} outputs {type(output).__name__}, not a tensor")
        per_model[key] = output.shape[1:]
    return per_model[key]


def check_channel(model: nn.Module, name: str, channel: int) -> None:
    """Raise ``IndexError`` unless ``channel`` is a valid channel index of layer ``name``.

    The message names the layer width: "layer 'mixed3b' has 480 channels (0..479), got 480".
    """
    require_channel(name, channel_index(name, channel), layer_shape(model, name)[0])


def require_channel(layer: str, channel: int, width: int) -> None:
    """``IndexError`` naming the width unless ``0 <= channel < width``."""
    if not 0 <= channel < width:
        raise IndexError(f"layer {layer!r} has {width} channels (0..{width - 1}), got {channel}")


def channel_index(layer: str, channel: object) -> int:
    """``channel`` as a Python int (numpy and 0-d tensor integers too); ``TypeError`` for anything else."""
    if isinstance(channel, bool):
        raise TypeError(f"channel of layer {layer!r} must be an int, got bool: {channel!r}")
    try:
        return operator.index(channel)
    except TypeError:
        raise TypeError(
            f"channel of layer {layer!r} must be an int, got {type(channel).__name__}: {channel!r}"
        ) from None


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    reference = _first_tensor(model)
    return reference.device if reference is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float32 without one)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _first_tensor(model: nn.Module) -> torch.Tensor | None:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor
    return None


def probe_input(
    model: nn.Module,
    input_size: int | tuple[int, int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A ``[1, C_in, H, W]`` probe image on the model's device and dtype.

    Zeros without a generator, uniform [0, 1) noise drawn from ``generator`` with one. ``C_in`` is
    ``model.input_channels`` if set, else the first ``nn.Conv2d``'s input channels, else 3.
    """
    height, width = size_pair(input_size)
    reference = _first_tensor(model)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    shape = (1, model_input_channels(model), height, width)
    if generator is None:
        return torch.zeros(shape, device=device, dtype=dtype)
    return torch.rand(shape, generator=generator, dtype=dtype).to(device)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode for a block, then restore each module's own mode.

    Probes use it so a batch-of-one forward neither fails in BatchNorm nor updates running stats.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def model_input_size(model: nn.Module, default: int | tuple[int, int] | None = 224) -> int | tuple[int, int] | None:
    """The side (or ``(H, W)``) of the images ``model`` was made for: its ``input_size`` attribute.

    Every model of :mod:`circuits_vision.models` declares it (the model contract,
    ``circuits_vision.models.VisionModel``); for any other ``nn.Module`` it is ``default``. A declared
    value that is no positive int or ``(H, W)`` pair of them raises ``TypeError``.
    """
    declared = getattr(model, "input_size", None)
    if declared is None:
        return default
    if _positive_int(declared):
        return int(declared)
    if isinstance(declared, (tuple, list)) and len(declared) == 2 and all(_positive_int(v) for v in declared):
        return (int(declared[0]), int(declared[1]))
    raise TypeError(
        f"{type(model).__name__}.input_size must be a positive int or an (H, W) pair of them, got {declared!r}"
    )


def model_input_channels(model: nn.Module) -> int:
    """The channels of the model's input images: ``model.input_channels`` if declared, else the first
    ``nn.Conv2d``'s input channels, else 3."""
    declared = getattr(model, "input_channels", None)
    if _positive_int(declared):
        return int(declared)
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first_conv.in_channels if first_conv is not None else 3


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


size_pair = int_pair  # ``224 -> (224, 224)``; ``(H, W)`` as a tuple of ints
