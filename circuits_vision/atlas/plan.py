"""The job plan of an atlas: which layers and units, cut into which chunks, with which settings, parts and report.

Pure decisions from the arguments of :func:`~circuits_vision.atlas.build` and the model's shapes; nothing
here reads or writes the atlas directory. The plan is the same on every rank, so each rank can compute
it and only the work left (what the records of an earlier run lack) is decided by rank 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision import hooks
from circuits_vision._utils import derive_seed
from circuits_vision.atlas.config import AtlasConfig
from circuits_vision.atlas.layers import default_layers
from circuits_vision.optvis import RenderConfig

__all__ = [
    "DEFAULT_CHUNK",
    "AtlasPlan",
    "atlas_settings",
    "chosen_parts",
    "report_pair",
    "resolve_layers",
    "unit_seed",
    "weights_fingerprint",
]

DEFAULT_CHUNK = 32

Unit = tuple[str, int]


@dataclass(frozen=True)
class AtlasPlan:
    """What one atlas holds and how its rendering is cut.

    Attributes:
        layers: canonical layer names, in the order given.
        units: ``(layer, unit)`` of every unit shown, in layer order.
        chunks: ``units`` cut into consecutive runs of the chunk size (one render call and one checkpoint each).
        units_per_layer: the limit of a small atlas (None: whole layers).
    """

    layers: list[str]
    units: list[Unit]
    chunks: list[list[Unit]]
    units_per_layer: int | None

    @classmethod
    def of(
        cls, model: nn.Module, layers: Sequence[str] | str | None, units_per_layer: int | None, chunk_size: int
    ) -> AtlasPlan:
        layer_list = resolve_layers(model, layers)
        units = layer_units(model, layer_list, units_per_layer)
        chunks = [units[i : i + chunk_size] for i in range(0, len(units), chunk_size)]
        return cls(layer_list, units, chunks, units_per_layer)

    def left(self, done) -> list[tuple[int, list[Unit]]]:
        """``(chunk index, units of it not in done)`` for every chunk with a unit left to render."""
        todo = [(j, [u for u in chunk if u not in done]) for j, chunk in enumerate(self.chunks)]
        return [(j, left) for j, left in todo if left]

    def shown(self) -> dict[str, list[int]] | None:
        """``{layer: units}`` the analyses cover in a small atlas; None when every unit of each layer is shown."""
        if self.units_per_layer is None:
            return None
        return {layer: [u for name, u in self.units if name == layer] for layer in self.layers}


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the model's state dict (names, shapes, dtypes and values): which weights an atlas shows."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def atlas_settings(
    model: nn.Module, plan: AtlasPlan, *, model_name: str | None, steps: int, size: int, seed: int, config: AtlasConfig
) -> dict:
    """What the atlas's images depend on (stored as ``settings.json``; a rerun with others is refused)."""
    settings = {
        "model": model_name or type(model).__qualname__,
        "weights_sha256": weights_fingerprint(model),
        "steps": int(steps),
        "size": int(size),
        "seed": int(seed),
        "layers": plan.layers,
        "units_per_layer": plan.units_per_layer,
        "render_options": {key: repr(value) for key, value in sorted(config.render_options.items())},
    }
    if config.render != RenderConfig():  # only set when used, so atlases made before it still resume
        settings["render_config"] = repr(config.render)
    return settings


def resolve_layers(model: nn.Module, layers: Sequence[str] | str | None) -> list[str]:
    """Canonical names of ``layers`` (default :func:`default_layers`); unknown names list close ones."""
    if layers is None:
        return default_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    canonical = [hooks.resolve_layer(model, name)[0] for name in layers]
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"layers must be distinct, got {list(layers)}")
    return canonical


def layer_units(model: nn.Module, layers: Sequence[str], units_per_layer: int | None) -> list[Unit]:
    """Every ``(layer, unit)`` of ``layers``, the first ``units_per_layer`` of each when given."""
    units = []
    for layer in layers:
        width = int(hooks.layer_shape(model, layer)[0])
        units += [(layer, u) for u in range(width if units_per_layer is None else min(width, units_per_layer))]
    return units


def unit_seed(seed: int, layer: str, unit: int) -> int:
    """The seed of one unit's image: from ``(seed, layer, unit)`` alone, so chunking, batching and resuming
    never change it."""
    return derive_seed(int(seed), layer, int(unit))


def chosen_parts(parts: Sequence[str] | None, known: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    """The per-unit analyses to compute: ``parts`` (default ``default``), each one of ``known``."""
    chosen = tuple(default if parts is None else parts)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {list(known)}")
    return chosen


def report_pair(model: nn.Module, layers: list[str], report: bool | tuple[str, str]) -> tuple[str, str] | None:
    """The layer pair of the circuit report: ``report`` itself, the default pair for True, None for False."""
    if report is True:
        return default_pair(model, layers)
    return tuple(report) if report else None


def default_pair(model: nn.Module, layers: list[str]) -> tuple[str, str] | None:
    """The first consecutive pair of branch layers (mixed3a -> mixed3b), else the last pair."""
    if len(layers) < 2:
        return None

    def has_branches(name: str) -> bool:
        try:
            hooks.branches(model, name)
            return True
        except (ValueError, RuntimeError):
            return False

    for source, target in zip(layers, layers[1:]):
        if has_branches(source) and has_branches(target):
            return source, target
    return layers[-2], layers[-1]
