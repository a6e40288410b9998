"""Cartesian parameter grids for batched stimuli."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def parameter_grid(**axes: Sequence[float] | torch.Tensor) -> tuple[dict[str, torch.Tensor], tuple[int, ...]]:
    """All combinations of the given 1-D parameter axes, flattened for one batched stimulus call.

    >>> params, shape = parameter_grid(orientation=[0, 90, 180], radius=[4, 8])
    >>> params["orientation"].tolist(), shape
    ([0.0, 0.0, 90.0, 90.0, 180.0, 180.0], (3, 2))

    Returns ``({name: tensor [prod(shape)]}, shape)``; the first axis varies slowest, so responses
    ``[prod(shape), ...]`` reshape to ``[*shape, ...]``.
    """
    if not axes:
        raise ValueError("parameter_grid needs at least one axis, e.g. orientation=range(0, 360, 5)")
    values = []
    for name, axis in axes.items():
        t = torch.as_tensor(axis, dtype=torch.float64).reshape(-1).to(torch.float32)
        if t.numel() == 0:
            raise ValueError(f"axis '{name}' is empty")
        values.append(t)
    mesh = torch.meshgrid(*values, indexing="ij")
    shape = tuple(v.numel() for v in values)
    return {name: m.reshape(-1) for name, m in zip(axes, mesh)}, shape
