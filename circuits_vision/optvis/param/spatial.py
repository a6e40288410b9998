"""Spatial parameterizations: pixels, and a Fourier basis with 1/f scaling (lucid's ``fft_image``).

Each returns ``(params, image_f)``: the leaf tensors to optimise and a function that builds the
``[N, C, H, W]`` image from them (values unconstrained; ``color.to_valid_rgb`` squashes them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["Generators", "random_normal", "pixel_image", "fft_image", "rfft2d_freqs", "DEFAULT_SD", "FFT_MAGIC"]

# lucid's initial standard deviation of every parameterization.
DEFAULT_SD = 0.01
# lucid divides the FFT image by 4: "increasing this seems to reduce saturation".
FFT_MAGIC = 4.0

Generators = torch.Generator | Sequence[torch.Generator] | None


def random_normal(
    shape: Sequence[int],
    generator: Generators,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` (batch first).

    ``generator`` is one ``torch.Generator`` for the whole tensor, or one per batch element (then
    element ``i`` depends only on ``generator[i]``, so an image's start does not depend on which
    other images share its batch). Drawn on the CPU and moved, so a seed gives the same numbers on
    every device.
    """
    shape = tuple(int(s) for s in shape)
    if generator is None or isinstance(generator, torch.Generator):
        noise = torch.randn(shape, generator=generator, dtype=dtype)
    else:
        generators = list(generator)
        if len(generators) != shape[0]:
            raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]}")
        noise = torch.stack([torch.randn(shape[1:], generator=g, dtype=dtype) for g in generators])
    return noise.to(device)


def pixel_image(
    shape: Sequence[int],
    sd: float | None = None,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """One free value per pixel, initialised ``N(0, sd)`` (lucid: ``naive``; sd defaults to 0.01)."""
    sd = sd or DEFAULT_SD
    tensor = (random_normal(shape, generator, device) * sd).requires_grad_(True)
    return [tensor], lambda: tensor


def rfft2d_freqs(height: int, width: int) -> torch.Tensor:
    """``[H, W//2 + 1 (+1 if W odd)]`` spatial frequency magnitudes of the real 2-D FFT (lucid's)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    keep = width // 2 + 2 if width % 2 == 1 else width // 2 + 1
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[:keep]
    return torch.sqrt(fx * fx + fy * fy)


def fft_spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """``[H, W']`` float32 amplitude scale ``1 / max(f, 1/max(H, W)) ** decay_power`` (1/f spectrum)."""
    freqs = rfft2d_freqs(height, width)
    return (1.0 / torch.clamp(freqs, min=1.0 / max(height, width)) ** decay_power).float()


def fft_image(
    shape: Sequence[int],
    sd: float | None = None,
    decay_power: float = 1.0,
    *,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """lucid's Fourier parameterization: a spectrum whose amplitudes are scaled by ``1/f**decay_power``.

    The parameter is ``[N, C, H, W', 2]`` (real, imaginary), initialised ``N(0, sd)``; the image is
    ``irfft2(scale * spectrum, norm="ortho")[:, :, :H, :W] / 4``. Low frequencies get large
    steps, so optimisation produces smooth images without high-frequency noise.
    """
    batch, channels, height, width = (int(s) for s in shape)
    sd = sd or DEFAULT_SD
    scale = fft_spectrum_scale(height, width, decay_power)
    spectrum = (random_normal((batch, channels, *scale.shape, 2), generator, device) * sd).requires_grad_(True)
    scale = scale.to(spectrum.device)[..., None]

    def inner() -> torch.Tensor:
        scaled = torch.view_as_complex(scale * spectrum)
        image = torch.fft.irfftn(scaled, s=(height, width), norm="ortho")
        return image[:batch, :channels, :height, :width] / FFT_MAGIC

    return [spectrum], inner
