"""lucent's ``util``: :func:`set_seed`."""

from __future__ import annotations

import random

import torch

__all__ = ["set_seed"]


def set_seed(seed: int) -> None:
    """Seed torch (CPU and CUDA) and Python's ``random``, and make cuDNN deterministic (lucent's)."""
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    random.seed(seed)
