"""lucent's ``param.spatial``: :func:`pixel_image`, :func:`fft_image`, :func:`rfft2d_freqs`.

The start values come from torch's global generator with lucent's shapes and order of draws, so
after ``torch.manual_seed(s)`` they equal lucent's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from circuits_vision.compat.lucent.optvis.param._device import default_device
from circuits_vision.optvis import param as engine_param

__all__ = ["pixel_image", "fft_image", "rfft2d_freqs"]


def pixel_image(shape: Sequence[int], sd: float | None = None) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """One free value per entry of ``shape`` (``[N, C, H, W]``), initialised ``N(0, sd)`` (sd 0.01)."""
    return engine_param.pixel_image(shape, sd, device=default_device())


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """``[h, w // 2 + 1 (+1 for odd w)]`` frequency magnitudes of the real 2-D FFT, float64."""
    return engine_param.rfft2d_freqs(h, w).numpy()


def fft_image(
    shape: Sequence[int], sd: float | None = None, decay_power: float = 1
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """A Fourier-parameterized image ``[N, C, H, W]`` with ``1/f**decay_power`` amplitude scaling."""
    return engine_param.fft_image(shape, sd, decay_power, device=default_device())
