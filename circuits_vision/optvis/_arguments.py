"""``render``'s arguments checked and normalised before anything runs, each mistake named with its fix."""

from __future__ import annotations

import operator

import torch
from torch import nn

from circuits_vision import hooks
from circuits_vision.optvis.objectives import INPUT, Objective, as_objective, channel

__all__ = ["check_model", "count", "optional_count", "size_pair", "objective_list", "model_dtype", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"render needs an nn.Module as model, got {type(model).__name__}: {model!r}")


def count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools, floats with a fraction and strings refused)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def optional_count(name: str, value, minimum: int = 1) -> int | None:
    return None if value is None else count(name, value, minimum)


def size_pair(size) -> tuple[int, int]:
    """``S`` or ``(H, W)`` -> ``(H, W)``, each >= 1."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        return (count("size height", size[0]), count("size width", size[1]))
    side = count("size", size)
    return (side, side)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The model's floating dtype (:func:`hooks.model_dtype`), refused unless render supports it."""
    dtype = hooks.model_dtype(model)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"render supports models in float32, float64, bfloat16 or float16; this one is {dtype}: "
            "convert it with model.float()"
        )
    return dtype


def objective_list(objectives, model: nn.Module, size: tuple[int, int]) -> list[Objective]:
    """One objective or a list -> objectives; a bare layer name (``"mixed3b"``) -> one ``channel``
    objective per channel of that layer, in channel order."""
    single = isinstance(objectives, (str, Objective)) or callable(objectives)
    if objectives is None:
        raise TypeError("render needs objectives: 'layer:channel' strings, a layer name, Objectives or functions")
    items = [objectives] if single else list(objectives)
    result: list[Objective] = []
    for item in items:
        if isinstance(item, str) and ":" not in item and item.strip() != INPUT:
            result.extend(_whole_layer(model, item.strip(), size))
        else:
            result.append(as_objective(item))
    if not result:
        raise ValueError("render needs at least one objective")
    return result


def _whole_layer(model: nn.Module, layer: str, size: tuple[int, int]) -> list[Objective]:
    hooks.resolve_layer(model, layer)  # unknown names raise, listing close ones
    try:
        shape = hooks.layer_shape(model, layer)
    except (RuntimeError, ValueError):
        shape = hooks.layer_shape(model, layer, size)
    if len(shape) < 1:
        raise ValueError(f"layer {layer!r} has no channels to render")
    return [channel(layer, c) for c in range(int(shape[0]))]
