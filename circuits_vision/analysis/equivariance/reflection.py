"""Reflection pairs: units that are left/right mirror images of each other, and self-symmetric units."""

from __future__ import annotations

from torch import nn

from circuits_vision.analysis.equivariance._mirror import reflection_pairs_from_kernels
from circuits_vision.analysis.equivariance._model import report
from circuits_vision.analysis.equivariance._result import EquivarianceResult

__all__ = ["from_kernels", "pairs"]


def pairs(model: nn.Module, layer: str, *, source: str | None = None, **kwargs) -> EquivarianceResult:
    """Mirror pairs of ``layer`` (see :func:`~circuits_vision.analysis.equivariance.report`)."""
    return report(model, layer, source=source, kind="reflection", **kwargs)


from_kernels = reflection_pairs_from_kernels
