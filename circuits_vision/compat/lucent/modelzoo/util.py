"""lucent's ``modelzoo.util``: :func:`get_model_layers`."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

__all__ = ["get_model_layers", "lucent_layer_paths"]


def lucent_layer_paths(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every sub-module, depth first, named by joining the attribute path
    with underscores (``"layer1_0_conv1"``); a module reachable by two paths appears under both,
    ``None`` children are skipped. These are the names lucent's ``T(name)`` takes."""
    found: list[tuple[str, nn.Module]] = []

    def walk(net: nn.Module, prefix: list[str]) -> None:
        for name, child in net.named_children():
            if child is None:
                continue
            path = prefix + [name]
            found.append(("_".join(path), child))
            walk(child, path)

    walk(model, [])
    return found


def get_model_layers(model: nn.Module, getLayerRepr: bool = False):  # noqa: N803
    """The names of every layer ``T(name)`` can read: a list, or with ``getLayerRepr`` an
    ``OrderedDict`` of name -> the layer's ``repr``."""
    paths = lucent_layer_paths(model)
    if getLayerRepr:
        return OrderedDict((name, repr(module)) for name, module in paths)
    return [name for name, _ in paths]
