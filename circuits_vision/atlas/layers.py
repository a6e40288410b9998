"""Which layers an atlas shows by default, and file-system-safe names for layers and units."""

from __future__ import annotations

import hashlib
import inspect
import re

from torch import nn

from circuits_vision import hooks

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def slug(layer: str) -> str:
    """A file name for ``layer``: itself when it is made of ``[A-Za-z0-9_.-]``, else a cleaned name plus a hash."""
    clean = _UNSAFE.sub("_", layer).lstrip(".") or "layer"
    if clean == layer:
        return layer
    return f"{clean}-{hashlib.sha1(layer.encode()).hexdigest()[:8]}"


def _takes_several_inputs(module: nn.Module) -> bool:
    """A parameter-free leaf module whose ``forward`` takes more than one tensor, like ``torch.cat``'s
    wrappers: the only modules that can concatenate their inputs (checked without a forward)."""
    if next(module.children(), None) is not None or next(module.parameters(recurse=False), None) is not None:
        return False
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > 1 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def _branch_spans(model: nn.Module, names: list[str]) -> tuple[list[tuple[int, int]], set[str]]:
    """``[first branch module index, concat index)`` for every concatenation layer (the inside of a
    block), and the names of those concatenation layers.

    A concatenation is a layer :func:`circuits_vision.hooks.branches` splits into the outputs of
    other layers; only modules that take several inputs are asked, so most layers need no probe.
    """
    position = {name: i for i, name in enumerate(names)}
    spans: list[tuple[int, int]] = []
    concatenations: set[str] = set()
    # Last to first, so a concatenation inside a found block (the pre-ReLU one) needs no probe forward.
    for name in reversed(names):
        if not _takes_several_inputs(hooks.get_layer(model, name)):
            continue
        if any(start <= position[name] < stop for start, stop in spans):
            continue
        try:
            found = hooks.branches(model, name)
        except (ValueError, RuntimeError):
            continue
        starts = [position[b.module] for b in found if b.module in position]
        if starts:
            spans.append((min(starts), position[name]))
            concatenations.add(name)
    return spans, concatenations


def default_layers(model: nn.Module) -> list[str]:
    """The model's main layers: activations (ReLU modules) and concatenations that are not inside a block.

    For InceptionV1-style models (concatenations of branches) these are the stem's ReLU layers and the
    mixed layers (``conv2d0, conv2d1, conv2d2, mixed3a, mixed3b, ...``): a ReLU or concatenation that
    lies between a concatenation's first branch module and the concatenation itself (branch ReLUs,
    bottlenecks, the pre-ReLU concatenation) is part of that block. Models without concatenations give
    every ``nn.ReLU`` module.
    """
    names = hooks.layer_names(model)
    spans, concatenations = _branch_spans(model, names)
    chosen = []
    for i, name in enumerate(names):
        if name not in concatenations and not isinstance(hooks.get_layer(model, name), nn.ReLU):
            continue
        if any(start <= i < stop for start, stop in spans):
            continue
        chosen.append(name)
    if not chosen:
        raise ValueError(
            f"found no ReLU or concatenation layers in {type(model).__name__}; pass layers=[...] "
            f"(layer names: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})"
        )
    return chosen
