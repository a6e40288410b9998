"""Rotation families: units that are rotated copies of each other (curve detectors, edges, ...).

``families(model, layer)`` searches the expanded weights (or tuning curves, or feature visualizations)
of every unit at 72 angles and reports families at a false-discovery rate of 5 % (see
:mod:`circuits_vision.analysis.equivariance`).
"""

from __future__ import annotations

from torch import nn

from circuits_vision.analysis.equivariance._detect import families_from_kernels, families_from_tuning
from circuits_vision.analysis.equivariance._model import orientation_tuning, report
from circuits_vision.analysis.equivariance._result import EquivarianceResult

__all__ = ["families", "from_kernels", "from_tuning", "orientation_tuning"]


def families(
    model: nn.Module, layer: str, *, source: str | None = None, method: str = "weights", **kwargs
) -> EquivarianceResult:
    """Rotation families of ``layer`` (keyword arguments: see :func:`~circuits_vision.analysis.equivariance.report`)."""
    return report(model, layer, source=source, kind="rotation", method=method, **kwargs)


def from_kernels(kernels, **kwargs) -> EquivarianceResult:
    """Rotation families among kernels ``[N, C, S, S]`` (see :func:`~circuits_vision.analysis.equivariance.families_from_kernels`)."""
    return families_from_kernels(kernels, "rotation", **kwargs)


from_tuning = families_from_tuning
