"""Shared test configuration: markers that skip what this machine cannot run."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from support import devices  # noqa: F401  (re-exported for tests that import it from here)


def cuda_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    from circuits_vision.ops import extension_available

    return extension_available() and torch.ops.circuits_vision.compose_kernels.default.has_kernel_for_dispatch_key(
        "CUDA"
    )


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU and the CUDA kernels")
    skip_weights = pytest.mark.skip(reason="set CIRCUITS_VISION_INCEPTIONV1 to inception5h.pth to run")
    skip_lucent = pytest.mark.skip(reason="needs the lucent extra (pip install torch-lucent==0.1.8)")
    have_cuda = cuda_ready()
    have_weights = bool(os.environ.get("CIRCUITS_VISION_INCEPTIONV1"))
    have_lucent = importlib.util.find_spec("lucent") is not None
    for item in items:
        if "needs_cuda" in item.keywords and not have_cuda:
            item.add_marker(skip_cuda)
        if "needs_weights" in item.keywords and not have_weights:
            item.add_marker(skip_weights)
        if "needs_lucent" in item.keywords and not have_lucent:
            item.add_marker(skip_lucent)


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)
    yield
