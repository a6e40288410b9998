"""Where lucent puts parameters: the first GPU when there is one, else the CPU."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """Looked up at each call (not at import), so a process that sets up CUDA later still sees it."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
