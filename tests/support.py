"""Helpers shared by the tests (importable as `support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import pytest


def devices() -> list:
    """Devices to parametrise op tests over: cpu always, cuda marked needs_cuda."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]
