"""Fixtures shared by the analysis tests."""

from __future__ import annotations

import pytest
from support import one_torch_thread


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored afterwards); use with ``pytest.mark.usefixtures``."""
    with one_torch_thread():
        yield
