"""Layer names: every sub-module of a model, addressed by a string.

A layer's name is its path in ``model.named_modules()``: flat lucid/lucent names for our models
(``"mixed3a"``, ``"mixed3a_3x3_pre_relu_conv"``), dotted paths elsewhere (``"layer1.0.conv1"``,
``"inception3a.branch2.1"``). lucent writes a dotted path with underscores (``"layer1_0_conv1"``);
that spelling is accepted as an alias wherever a name is taken, as long as it points at one module.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from torch import nn

from circuits_vision.errors import UnknownNameError

__all__ = ["UnknownLayerError", "layer_names", "get_layer", "resolve_layer", "resolve_layers"]

_MAX_SUGGESTIONS = 5


class UnknownLayerError(UnknownNameError):
    """A layer name that the model does not have (or an alias that fits several layers).

    Subclasses both ``KeyError`` (a failed lookup) and ``ValueError`` (a bad argument), so either
    ``except`` catches it. ``suggestions`` holds the closest valid names.
    """


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable layer of ``model``, in definition order (the model itself excluded).

    A module registered under two paths is listed once, under its first path.
    """
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (a layer name or its lucent underscore alias)."""
    return resolve_layer(model, name)[1]


def resolve_layer(model: nn.Module, name: str) -> tuple[str, nn.Module]:
    """``(canonical_name, module)`` for a layer name or alias.

    An exact path wins over an alias; an underscore alias must fit exactly one module, otherwise
    the error lists the candidates. Raises :class:`UnknownLayerError` naming the closest layers.
    """
    return resolve_layers(model, [name])[name]


def resolve_layers(model: nn.Module, names: Iterable[str]) -> dict[str, tuple[str, nn.Module]]:
    """:func:`resolve_layer` for many names with one walk over the model: ``{name: (canonical, module)}``."""
    modules = dict(model.named_modules())
    modules.pop("", None)
    aliases: dict[str, list[str]] | None = None  # built on the first name that is not an exact path
    resolved = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"layer names are strings, got {type(name).__name__}: {name!r}")
        if name in modules:
            resolved[name] = (name, modules[name])
            continue
        if name:
            try:  # a second path to an already-listed module (named_modules lists shared modules once)
                resolved[name] = (name, model.get_submodule(name))
                continue
            except AttributeError:
                pass
        if aliases is None:
            aliases = {}
            for path in modules:
                aliases.setdefault(_lucent_alias(path), []).append(path)
        matches = aliases.get(name, [])
        if len(matches) == 1:
            resolved[name] = (matches[0], modules[matches[0]])
            continue
        raise _unknown(model, name, matches, list(modules))
    return resolved


def _unknown(model: nn.Module, name: str, alias_matches: list[str], paths: list[str]) -> UnknownLayerError:
    model_name = type(model).__name__
    if alias_matches:
        return UnknownLayerError(
            f"layer alias {name!r} of {model_name} fits several layers: {', '.join(alias_matches)}; "
            "use one of these dotted names instead",
            alias_matches,
        )
    suggestions = _closest(name, paths)
    hint = f"; closest: {', '.join(suggestions)}" if suggestions else ""
    return UnknownLayerError(
        f"unknown layer {name!r} in {model_name}{hint} (layer_names(model) lists all {len(paths)})",
        suggestions,
    )


def _lucent_alias(path: str) -> str:
    """lucent's spelling of a dotted module path: ``"layer1.0.conv1"`` -> ``"layer1_0_conv1"``."""
    return path.replace(".", "_")


def _closest(name: str, names: list[str]) -> list[str]:
    """Up to five valid names closest to ``name`` (compared in both dotted and underscore spelling)."""
    by_spelling: dict[str, str] = {}
    for path in names:
        by_spelling.setdefault(path, path)
        by_spelling.setdefault(_lucent_alias(path), path)
    spellings = list(by_spelling)
    close = difflib.get_close_matches(name, spellings, n=4 * _MAX_SUGGESTIONS, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name, spellings, n=4 * _MAX_SUGGESTIONS, cutoff=0.3)
    suggestions: list[str] = []
    for spelling in close:
        path = by_spelling[spelling]
        if path not in suggestions:
            suggestions.append(path)
    return suggestions[:_MAX_SUGGESTIONS]
