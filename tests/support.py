"""Helpers shared by the tests (importable as `support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import contextlib
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
