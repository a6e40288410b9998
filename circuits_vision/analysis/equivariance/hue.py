"""Hue families: units whose preferred colours are turned copies of each other around the grey axis."""

from __future__ import annotations

from torch import nn

from circuits_vision.analysis.equivariance._detect import families_from_kernels
from circuits_vision.analysis.equivariance._model import report
from circuits_vision.analysis.equivariance._result import EquivarianceResult
from circuits_vision.analysis.equivariance.transforms import hue_matrix, hue_rotate

__all__ = ["families", "from_kernels", "hue_matrix", "hue_rotate"]


def families(model: nn.Module, layer: str, **kwargs) -> EquivarianceResult:
    """Hue families of ``layer`` from its kernels on the RGB input (see :func:`~circuits_vision.analysis.equivariance.report`)."""
    return report(model, layer, source=None, kind="hue", **kwargs)


def from_kernels(kernels, **kwargs) -> EquivarianceResult:
    """Hue families among RGB kernels ``[N, 3, S, S]``."""
    return families_from_kernels(kernels, "hue", **kwargs)
