"""Images for a model's forward: on its device and in its floating dtype.

Stimuli and noise are drawn in float32 (half precision cannot draw them: its coarse steps turn smooth
profiles into steps, and some draws overflow); they are cast to the model's dtype just before the
forward, so a ``model.double()`` or ``model.half()`` runs in its own precision, and responses come
back as float32 for the statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from circuits_vision.hooks import model_device, model_dtype


def for_model(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``images [N, C, H, W]`` on the model's device in the model's dtype."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor [N, C, H, W], got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    return images.to(device=model_device(model), dtype=model_dtype(model))
