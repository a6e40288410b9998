"""Scale families: the same pattern at growing sizes (log2 scales in [-1, 1])."""

from __future__ import annotations

from torch import nn

from circuits_vision.analysis.equivariance._detect import families_from_kernels
from circuits_vision.analysis.equivariance._model import report
from circuits_vision.analysis.equivariance._result import EquivarianceResult
from circuits_vision.analysis.equivariance.transforms import zoom

__all__ = ["families", "from_kernels", "zoom"]


def families(model: nn.Module, layer: str, *, source: str | None = None, **kwargs) -> EquivarianceResult:
    """Scale families of ``layer`` (see :func:`~circuits_vision.analysis.equivariance.report`)."""
    return report(model, layer, source=source, kind="scale", **kwargs)


def from_kernels(kernels, **kwargs) -> EquivarianceResult:
    """Scale families among kernels ``[N, C, S, S]``."""
    return families_from_kernels(kernels, "scale", **kwargs)
