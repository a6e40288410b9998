"""Helpers shared by the tests (importable as `support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pytest
import torch


def devices() -> list:
    """Devices to parametrise op tests over: cpu always, cuda marked needs_cuda."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with one torch thread (restored afterwards): tiny tensors gain nothing from more,
    and one thread keeps a test immune to a busy machine's other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates ``(x, y)`` of a ``[size, size]`` kernel about its centre, x right, y up (float64)."""
    c = (size - 1) / 2
    idx = torch.arange(size, dtype=torch.float64) - c
    return idx.view(1, -1).expand(size, size), (-idx).view(-1, 1).expand(size, size)


def hook_kernel(size: int, angle_deg: float, scale: float = 1.0) -> torch.Tensor:
    """An asymmetric analytic pattern (a bright arc plus a dark blob off-axis) turned by ``angle_deg``: [size, size]."""
    x, y = grid(size)
    a = math.radians(angle_deg)
    u, v = (x * math.cos(a) + y * math.sin(a)) / scale, (-x * math.sin(a) + y * math.cos(a)) / scale
    arc = torch.exp(-((torch.hypot(u + 3, v) - 3) ** 2) / 2.0) * torch.exp(-(v**2) / 8)
    blob = torch.exp(-((u + 1) ** 2 + (v - 2.5) ** 2) / 2.0)
    return (arc - 0.8 * blob) * torch.exp(-(u**2 + v**2) / 40)
