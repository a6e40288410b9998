"""Checks that run before the first optimisation step, so mistakes fail fast and say how to fix them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from circuits_vision import hooks
from circuits_vision.optvis.objectives import INPUT, Objective

__all__ = ["objective_layers", "check_channels_and_size", "RenderInputError"]


class RenderInputError(ValueError):
    """``render`` was asked for something the model cannot do (image too small, ...)."""


def _dry_run_layers(objective: Objective, model: nn.Module, input_size: int, group: int) -> tuple[str, ...] | None:
    """Which layers a plain-function objective reads: call it on zero activations of the right
    shapes and record the names it asks for. ``None`` if the dry run fails."""
    requested: list[str] = []

    def T(name: str) -> torch.Tensor:
        if name == INPUT:
            return torch.zeros(group, 3, input_size, input_size)
        shape = hooks.layer_shape(model, name, input_size)
        requested.append(hooks.resolve_layer(model, name)[0])
        return torch.zeros(group, *shape)

    try:
        with torch.no_grad():
            objective(T)
    except hooks.UnknownLayerError:
        raise
    except Exception:  # the function needs real activations; the caller falls back to all layers
        return None
    return tuple(dict.fromkeys(requested))


def objective_layers(objectives: Sequence[Objective], model: nn.Module, input_size: int, group: int) -> list[str] | None:
    """The model layers the objectives read (unknown names raise ``UnknownLayerError`` listing close
    names); ``None`` when some objective's layers cannot be found out, so all layers must be kept."""
    names: list[str] = []
    for objective in objectives:
        layers = objective.layers
        if layers is None:
            layers = _dry_run_layers(objective, model, input_size, group)
            if layers is None:
                return None
        for layer in layers:
            if layer == INPUT:
                continue
            hooks.resolve_layer(model, layer)
            names.append(layer)
    return list(dict.fromkeys(names))


def _probe(model: nn.Module, layers: Sequence[str], size: int) -> dict[str, torch.Size] | None:
    """Output shapes ``(C, H, W)`` of the layers for one ``size``-px image, or None if the forward
    fails or a layer's output is empty."""
    if size < 1:
        return None
    x = hooks.probe_input(model, size)
    try:
        with torch.no_grad():
            outputs = hooks.run_with_cache(model, x, list(layers))
    except (RuntimeError, ValueError):
        return None
    if any(isinstance(o, torch.Tensor) and o.numel() == 0 for o in outputs.values()):
        return None
    return {name: o.shape[1:] for name, o in outputs.items() if isinstance(o, torch.Tensor)}


def _runs_at(model: nn.Module, layers: Sequence[str], size: int) -> bool:
    return _probe(model, layers, size) is not None


def _minimum_size(model: nn.Module, layers: Sequence[str], upper: int) -> int | None:
    """The smallest square input size at which the layers compute (binary search), or None."""
    if not _runs_at(model, layers, upper):
        return None
    low, high = 1, upper  # invariant: high works
    while low < high:
        middle = (low + high) // 2
        if _runs_at(model, layers, middle):
            high = middle
        else:
            low = middle + 1
    return high


def check_channels_and_size(
    objectives: Sequence[Objective], model: nn.Module, layers: Sequence[str] | None, input_size: int, size: int, margin: int | None
) -> None:
    """One probe forward at the model input size: every channel index must exist (``IndexError``
    naming the layer width) and the model must compute every layer (:class:`RenderInputError`
    saying the smallest input, and render size when the model input is ``size + margin``)."""
    needed = list(layers or []) + [layer for o in objectives for layer, _ in o.channels if layer != INPUT]
    needed += [layer for o in objectives for layer, _, _ in o.widths]
    needed = list(dict.fromkeys(needed))
    if not needed:
        return
    shapes = _probe(model, needed, input_size)
    if shapes is None:
        _raise_too_small(model, needed, input_size, size, margin)
    for objective in objectives:
        for layer, channel in objective.channels:
            if layer == INPUT:
                continue
            if isinstance(channel, bool) or not isinstance(channel, int):
                raise TypeError(f"channel of layer {layer!r} must be an int, got {type(channel).__name__}: {channel!r}")
            width = shapes[layer][0]
            if not 0 <= channel < width:
                raise IndexError(f"layer {layer!r} has {width} channels (0..{width - 1}), got {channel}")
        for layer, length, what in objective.widths:
            width = shapes[layer][0]
            if length != width:
                raise ValueError(f"{objective.name}: `{what}` has {length} entries but layer {layer!r} has "
                                 f"{width} channels; pass one value per channel")


def _raise_too_small(model: nn.Module, layers: Sequence[str], input_size: int, size: int, margin: int | None) -> None:
    upper = max(input_size, getattr(model, "input_size", 224), 8) * 4
    minimum = _minimum_size(model, layers, upper)
    deepest = layers[-1] if len(layers) == 1 else f"layers {list(layers)}"
    what = f"layer {deepest!r}" if len(layers) == 1 else deepest
    if minimum is None:
        raise RenderInputError(f"{type(model).__name__} could not compute {what} from {upper}-px images")
    fix = f"use size >= {minimum - margin}" if margin is not None else "use transforms that give larger images"
    raise RenderInputError(
        f"size={size} is too small for {what} of {type(model).__name__}: the model sees "
        f"{input_size}x{input_size}-px images after the transforms, and needs at least "
        f"{minimum}x{minimum}; {fix}"
    )
