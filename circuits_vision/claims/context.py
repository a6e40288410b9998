"""What every claim check gets: the model, the input size, and measurements shared between claims."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class Context:
    """``model`` measured at ``size`` px; ``shared(key, compute)`` runs ``compute()`` once per run, so two
    claims reading the same measurement (e.g. the curve detectors of mixed3b) pay for it once."""

    model: nn.Module
    size: int
    _cache: dict[Any, Any] = field(default_factory=dict)

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def curve_detectors(self, layer: str, units: list[int] | None = None):
        """:func:`~circuits_vision.analysis.tuning.find_curve_detectors` of ``layer`` at this size."""
        from circuits_vision.analysis.tuning import find_curve_detectors

        key = ("curve_detectors", layer, tuple(units) if units is not None else None)
        return self.shared(key, lambda: find_curve_detectors(self.model, layer, units=units, size=self.size))
