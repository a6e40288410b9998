"""Checks that run before the first optimisation step, so mistakes fail fast and say how to fix them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from circuits_vision import hooks
from circuits_vision.optvis.objectives import INPUT, Objective

__all__ = [
    "objective_layers",
    "check_channels_and_size",
    "RenderInputError",
    "declared_input_size",
    "fixed_input_size",
    "needed_layers",
    "runs_at",
    "Size",
]

Size = tuple[int, int]


class RenderInputError(ValueError):
    """``render`` was asked for something the model cannot do (image too small, ...)."""


def _dry_run_layers(objective: Objective, model: nn.Module, input_size: Size, group: int) -> tuple[str, ...] | None:
    """Which layers a plain-function objective reads: call it on zero activations of the right
    shapes and record the names it asks for. ``None`` if the dry run fails."""
    requested: list[str] = []

    def T(name: str) -> torch.Tensor:
        if name == INPUT:
            return torch.zeros(group, 3, *input_size)
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


def objective_layers(
    objectives: Sequence[Objective], model: nn.Module, input_size: Size, group: int
) -> list[str] | None:
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


def declared_input_size(model: nn.Module) -> Size | None:
    """The model's ``input_size`` attribute as ``(H, W)``, if it declares one."""
    declared = hooks.model_input_size(model, default=None)
    if declared is None:
        return None
    return (declared, declared) if isinstance(declared, int) else declared


def fixed_input_size(model: nn.Module, layers: Sequence[str]) -> Size | None:
    """The declared ``input_size`` if the model has a head of fixed input size for ``layers``: it
    computes them at that size but not 32 px larger (one more step of a stride-32 net; a model that
    is merely too small for some size works there)."""
    declared = declared_input_size(model)
    if declared is None or not runs_at(model, layers, declared):
        return None
    return None if runs_at(model, layers, (declared[0] + 32, declared[1] + 32)) else declared


def _probe(model: nn.Module, layers: Sequence[str], size: Size) -> dict[str, torch.Size] | None:
    """Output shapes ``(C, H, W)`` of the layers for one ``size`` ``(H, W)`` image, or None if the
    forward fails or a layer's output is empty."""
    if min(size) < 1:
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


def runs_at(model: nn.Module, layers: Sequence[str], size: Size) -> bool:
    """Whether the model computes every layer from one ``size`` ``(H, W)`` image."""
    return _probe(model, layers, size) is not None


def _minimum_size(model: nn.Module, layers: Sequence[str], upper: int) -> int | None:
    """The smallest square input size at which the layers compute (binary search), or None."""
    if not runs_at(model, layers, (upper, upper)):
        return None
    low, high = 1, upper  # invariant: high works
    while low < high:
        middle = (low + high) // 2
        if runs_at(model, layers, (middle, middle)):
            high = middle
        else:
            low = middle + 1
    return high


def needed_layers(objectives: Sequence[Objective], layers: Sequence[str] | None) -> list[str]:
    """Every layer the objectives read or index, in order, without ``"input"``."""
    needed = list(layers or []) + [layer for o in objectives for layer, _ in o.channels]
    needed += [layer for o in objectives for layer, _, _ in o.widths]
    needed += [p[0] for o in objectives for p in o.positions]
    return [layer for layer in dict.fromkeys(needed) if layer != INPUT]


def check_channels_and_size(
    objectives: Sequence[Objective],
    model: nn.Module,
    layers: Sequence[str] | None,
    input_size: Size,
    size: Size,
    margin: int | None,
    group: int = 1,
) -> None:
    """One probe forward at the model input size ``(H, W)``: every channel index, position and
    batch index must exist (``IndexError`` naming the valid range) and the model must compute
    every layer (:class:`RenderInputError` saying the smallest input, and render size when the
    model input is ``size + margin``)."""
    for objective in objectives:
        for batch, what in objective.batches:
            if not 0 <= batch < group:
                raise IndexError(
                    f"{what}: each objective gets images_per_objective={group} image(s), so batch must be "
                    f"in 0..{group - 1}; pass images_per_objective={batch + 1} or more for batch={batch}"
                )
    needed = needed_layers(objectives, layers)
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
                raise ValueError(
                    f"{objective.name}: `{what}` has {length} entries but layer {layer!r} has "
                    f"{width} channels; pass one value per channel"
                )
        for layer, x, y, wx, wy, what in objective.positions:
            _check_position(layer, shapes[layer], x, y, wx, wy, what, input_size)


def _check_position(layer: str, shape: torch.Size, x, y, wx: int, wy: int, what: str, input_size: Size) -> None:
    if len(shape) != 3:
        raise ValueError(
            f"{what}: layer {layer!r} gives a {len(shape) + 1}-d output, not an [N, C, H, W] map; "
            "positions need a spatial map (use channel() or class_logit())"
        )
    height, width = shape[1], shape[2]
    for axis, value, extent, window in (("x", x, width, wx), ("y", y, height, wy)):
        if value is None:
            continue
        if not 0 <= value <= extent - window:
            last = extent - window
            valid = f"0..{last}" if last >= 0 else "none"
            raise IndexError(
                f"{what}: {axis}={value} is outside layer {layer!r}, whose map is {height}x{width} (rows x "
                f"columns) for {input_size[0]}x{input_size[1]}-px model input; valid {axis}: {valid}"
                + (f" for a window of {window}" if window > 1 else "")
            )


def _raise_too_small(model: nn.Module, layers: Sequence[str], input_size: Size, size: Size, margin: int | None) -> None:
    name = type(model).__name__
    what = f"layer {layers[0]!r}" if len(layers) == 1 else f"layers {list(layers)}"
    seen = f"{input_size[0]}x{input_size[1]}"
    declared = declared_input_size(model)
    fixed = fixed_input_size(model, layers) if declared is not None and declared != tuple(input_size) else None
    if fixed is not None:
        raise RenderInputError(
            f"{name} computes {what} only from {declared[0]}x{declared[1]}-px images (a head of fixed size), "
            f"but the transforms give it {seen}-px images; end the transforms with "
            f"transforms.crop_or_pad_to({declared[0]}, {declared[1]}), or leave transforms=None so render does"
        )
    upper = max(max(input_size), declared[0] if declared else 224, 8) * 4
    minimum = _minimum_size(model, layers, upper)
    if minimum is None:
        raise RenderInputError(
            f"{name} could not compute {what} from {seen}-px images nor from any square size up to {upper} px"
            + (f" nor at its input_size {declared[0]}x{declared[1]}" if declared else "")
            + "; check that the model runs on [N, 3, H, W] images and that the layer is reached in eval mode"
        )
    fix = f"use size >= {minimum - margin}" if margin is not None else "use transforms that give larger images"
    raise RenderInputError(
        f"size={_size_text(size)} is too small for {what} of {name}: the model sees "
        f"{seen}-px images after the transforms, and needs at least {minimum}x{minimum}; {fix}"
    )


def _size_text(size: Size) -> str:
    return str(size[0]) if size[0] == size[1] else f"({size[0]}, {size[1]})"
