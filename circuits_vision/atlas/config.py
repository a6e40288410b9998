"""``AtlasConfig``: how an atlas job runs, apart from what the atlas holds.

The arguments of :func:`~circuits_vision.atlas.build` say *what* goes into the atlas (layers, units,
render steps and size, seed, parts, report); an ``AtlasConfig`` holds how the job is cut and run
(chunking, batching, the render engine's knobs) and where it reports. Frozen, so one config serves
many builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from circuits_vision.optvis import RenderConfig

__all__ = ["AtlasConfig"]


@dataclass(frozen=True)
class AtlasConfig:
    """The job knobs of :func:`~circuits_vision.atlas.build`.

    Attributes:
        chunk_size: units per render call and per checkpoint (default ``batch_size`` or 32). A unit's
            image depends on ``(seed, layer, unit)`` alone, never on the chunking.
        batch_size: images per optimisation batch (default: chosen by ``render`` from the device memory).
        render: the render engine's knobs (:class:`~circuits_vision.optvis.RenderConfig`).
        render_options: more keyword arguments for ``render``, e.g. ``{"preset": "lucent"}`` (part of the
            atlas's settings: a rerun with other options is refused).
        on_progress: called as ``on_progress(units_done, units_total)`` after every chunk is stored.
        log: where messages go (default: ``tqdm.write``).
        report_whole_layers: the circuit report covers the whole source and target layers even when
            ``units_per_layer`` limits the atlas (its cost is per layer: right for small models such as
            the shipped ``shapes``, whose curve detectors are not among the first units); default False,
            the report follows ``units_per_layer``.
        dictionary_layers: the layers whose sparse-autoencoder features the ``dictionary`` part makes into
            units (:mod:`~circuits_vision.atlas.dictionary_units`); default the report pair's target.
        dictionary_features: features per dictionary (default 4 per neuron of the layer).
        dictionary_options: more keyword arguments of :func:`circuits_vision.analysis.dictionary.train`
            (``l1``, ``steps``, ``batch_size``, ``lr``, ``resample``). A dictionary already in the atlas is
            reused only when all of these match.
    """

    chunk_size: int | None = None
    batch_size: int | None = None
    render: RenderConfig = field(default_factory=RenderConfig)
    render_options: Mapping = field(default_factory=dict)
    on_progress: Callable[[int, int], None] | None = None
    log: Callable[[str], None] | None = None
    report_whole_layers: bool = False
    dictionary_layers: tuple[str, ...] | None = None
    dictionary_features: int | None = None
    dictionary_options: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("chunk_size", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"AtlasConfig.{name} must be None or an int >= 1, got {value!r}")
        if not isinstance(self.render, RenderConfig):
            raise TypeError(f"AtlasConfig.render must be a RenderConfig, got {type(self.render).__name__}")
        if "config" in self.render_options:
            raise ValueError(
                "AtlasConfig.render_options cannot hold 'config': pass AtlasConfig(render=RenderConfig(...))"
            )
        object.__setattr__(self, "render_options", MappingProxyType(dict(self.render_options)))
        if isinstance(self.dictionary_layers, str):
            object.__setattr__(self, "dictionary_layers", (self.dictionary_layers,))
        elif self.dictionary_layers is not None:
            object.__setattr__(self, "dictionary_layers", tuple(self.dictionary_layers))
        value = self.dictionary_features
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"AtlasConfig.dictionary_features must be None or an int >= 1, got {value!r}")
        unknown = sorted(set(self.dictionary_options) - {"l1", "steps", "batch_size", "lr", "resample"})
        if unknown:
            raise ValueError(
                f"AtlasConfig.dictionary_options: unknown {unknown}; choose from l1, steps, batch_size, lr, resample"
            )
        object.__setattr__(self, "dictionary_options", MappingProxyType(dict(self.dictionary_options)))
