"""lucent's ``param.lowres_tensor``: a tensor made by bilinear upsampling of a smaller one."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from circuits_vision.compat.lucent.optvis.param._device import default_device

__all__ = ["lowres_tensor"]


def _resize_pair(t: torch.Tensor, d: int, target: Sequence[int]) -> torch.Tensor:
    """Bilinearly resize dimensions ``d`` and ``d + 1`` of ``t`` (``align_corners=True``)."""
    shape = list(t.shape)
    pair = (shape + [1])[d : d + 2]
    new_pair = (list(target) + [1])[d : d + 2]
    before, after = math.prod(shape[:d]), math.prod(shape[d + 2 :])
    x = t.reshape(before, *pair, after).permute(0, 3, 1, 2)  # [before, after, a, b]: resize a and b
    x = F.interpolate(x, size=new_pair, mode="bilinear", align_corners=True)
    new_shape = shape[:d] + list(target[d : d + 2]) + shape[d + 2 :]
    return x.permute(0, 2, 3, 1).reshape(new_shape)


def resize_bilinear_nd(t: torch.Tensor, target_shape: Sequence[int]) -> torch.Tensor:
    """Resize ``t`` to ``target_shape`` (same rank) by bilinear resizes of neighbouring dimension
    pairs, walking from the first dimension and skipping dimensions that already fit (lucent's order)."""
    target = [int(s) for s in target_shape]
    if t.dim() != len(target):
        raise ValueError(f"resize_bilinear_nd needs a target of rank {t.dim()}, got {target}")
    d = 0
    while d < t.dim():
        if t.shape[d] == target[d]:
            d += 1
            continue
        t = _resize_pair(t, d, target)
        d += 2
    return t


def lowres_tensor(
    shape: Sequence[int], underlying_shape: Sequence[int], offset=None, sd: float = 0.01
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """``(params, tensor_f)``: ``tensor_f()`` has ``shape`` and is the ``underlying_shape``
    parameter (``N(0, sd)``) upsampled bilinearly.

    ``offset`` shifts the upsampled tensor like a phase: ``None`` no shift; a number or bool for
    every dimension, or a list with one entry per dimension; ``True`` is half the upsampling ratio,
    ``False`` zero. The shift is a reflect pad followed by a crop back to ``shape``.
    """
    shape = [int(s) for s in shape]
    underlying = (torch.randn(*underlying_shape) * sd).to(default_device()).requires_grad_(True)
    if offset is not None:
        offsets = list(offset) if isinstance(offset, (list, tuple)) else len(shape) * [offset]
        for n, value in enumerate(offsets):
            if value is True:
                value = shape[n] / underlying_shape[n] / 2
            elif value is False:
                value = 0
            offsets[n] = int(value)
        offset = offsets

    def inner() -> torch.Tensor:
        t = resize_bilinear_nd(underlying, shape)
        if offset is not None:
            t = F.pad(t, offset, "reflect")
            t = t[tuple(slice(0, s) for s in shape)]
        return t

    return [underlying], inner
