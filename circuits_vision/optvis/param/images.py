"""``image(...)``: lucid's default image parameterization, and factories that ``render`` calls.

``image_f`` objects here are :class:`ImageFunction` s: callables returning ``[N, C, H, W]`` in
[0, 1] that also expose the image *before* colour and sigmoid, so ``render`` can hand colour,
sigmoid and the geometric transforms to one fused resampling op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from circuits_vision.optvis.param.color import decorrelate_color, imagenet_color_matrix
from circuits_vision.optvis.param.cppn import cppn
from circuits_vision.optvis.param.spatial import Generators, fft_image, pixel_image

__all__ = ["ImageFunction", "to_valid_rgb", "image", "FFT", "Pixel", "CPPN", "ParamFactory"]

ParamResult = tuple[list[torch.Tensor], Callable[[], torch.Tensor]]


class ImageFunction:
    """``image_f()``: ``sigmoid(color_matrix @ raw())`` per pixel, ``[N, 3, H, W]`` in [0, 1].

    ``raw`` returns the decorrelated image ``[N, 3, H, W]`` (or ``[N, 4, H, W]`` with an alpha
    channel, whose 4th channel is squashed by a plain sigmoid and appended: output ``[N, 4, H, W]``).
    ``color_matrix`` is ``None`` for no decorrelation (the identity).
    """

    def __init__(self, raw: Callable[[], torch.Tensor], color_matrix: torch.Tensor | None = None, alpha: bool = False):
        self.raw = raw
        self.color_matrix = color_matrix
        self.alpha = alpha

    @property
    def fusable(self) -> bool:
        """Whether ``render`` may apply colour + sigmoid itself (inside the fused image op)."""
        return not self.alpha

    def matrix(self, like: torch.Tensor) -> torch.Tensor:
        """The ``[3, 3]`` colour matrix (identity when not decorrelated) on ``like``'s device/dtype."""
        if self.color_matrix is None:
            return torch.eye(3, dtype=like.dtype, device=like.device)
        return self.color_matrix.to(like)

    def __call__(self) -> torch.Tensor:
        raw = self.raw()
        rgb = raw[:, :3]
        if self.color_matrix is not None:
            rgb = decorrelate_color(rgb, self.color_matrix)
        rgb = torch.sigmoid(rgb)
        if self.alpha:
            return torch.cat([rgb, torch.sigmoid(raw[:, 3:4])], dim=1)
        return rgb


def to_valid_rgb(
    image_f: Callable[[], torch.Tensor],
    decorrelate: bool = False,
    color_matrix: torch.Tensor | None = None,
    alpha: bool = False,
) -> ImageFunction:
    """lucid/lucent ``to_valid_rgb``: optional colour decorrelation, then a sigmoid squash.

    ``decorrelate=True`` uses the ImageNet matrix unless ``color_matrix`` (``[3, 3]``, e.g. from
    :func:`~circuits_vision.optvis.param.color_matrix_from_images`) is given.
    """
    if color_matrix is not None:
        color_matrix = torch.as_tensor(color_matrix, dtype=torch.float32)
        if color_matrix.shape != (3, 3):
            raise ValueError(f"color_matrix must be [3, 3], got {tuple(color_matrix.shape)}")
    elif decorrelate:
        color_matrix = imagenet_color_matrix()
    return ImageFunction(image_f, color_matrix, alpha=alpha)


def image(
    w: int,
    h: int | None = None,
    sd: float | None = None,
    batch: int | None = None,
    decorrelate: bool = True,
    fft: bool = True,
    channels: int | None = None,
    *,
    alpha: bool = False,
    decay_power: float = 1.0,
    color_matrix: torch.Tensor | None = None,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> tuple[list[torch.Tensor], ImageFunction]:
    """lucid/lucent ``param.image``: ``(params, image_f)`` with ``image_f() -> [batch, 3, h, w]`` in [0, 1].

    Defaults are lucid's: Fourier parameterization with 1/f scaling, ImageNet colour
    decorrelation, sigmoid, initial sd 0.01. ``channels`` other than 3 disables decorrelation
    (as in lucent); ``alpha=True`` adds a 4th, transparency channel (output ``[batch, 4, h, w]``).
    """
    h = h or w
    batch = batch or 1
    ch = channels or 3
    if alpha and ch != 3:
        raise ValueError("alpha=True needs 3 colour channels")
    shape = (batch, ch + (1 if alpha else 0), h, w)
    if fft:
        params, raw = fft_image(shape, sd=sd, decay_power=decay_power, generator=generator, device=device)
    else:
        params, raw = pixel_image(shape, sd=sd, generator=generator, device=device)
    use_color = decorrelate and ch == 3
    return params, to_valid_rgb(
        raw, decorrelate=use_color, color_matrix=color_matrix if use_color else None, alpha=alpha
    )


class ParamFactory:
    """What ``render(param=...)`` calls: ``factory(batch=, height=, width=, generator=, device=)``.

    ``generator`` is a list with one ``torch.Generator`` per batch element.
    """

    def __call__(
        self, *, batch: int, height: int, width: int, generator: Generators, device: torch.device | None
    ) -> ParamResult:
        raise NotImplementedError


@dataclass(frozen=True)
class FFT(ParamFactory):
    """Fourier image with 1/f**decay_power scaling (the default)."""

    sd: float | None = None
    decay_power: float = 1.0
    decorrelate: bool = True
    color_matrix: torch.Tensor | None = None
    alpha: bool = False

    def __call__(self, *, batch, height, width, generator, device):
        return image(
            width,
            height,
            self.sd,
            batch,
            self.decorrelate,
            True,
            alpha=self.alpha,
            decay_power=self.decay_power,
            color_matrix=self.color_matrix,
            generator=generator,
            device=device,
        )


@dataclass(frozen=True)
class Pixel(ParamFactory):
    """One free value per pixel."""

    sd: float | None = None
    decorrelate: bool = True
    color_matrix: torch.Tensor | None = None
    alpha: bool = False

    def __call__(self, *, batch, height, width, generator, device):
        return image(
            width,
            height,
            self.sd,
            batch,
            self.decorrelate,
            False,
            alpha=self.alpha,
            color_matrix=self.color_matrix,
            generator=generator,
            device=device,
        )


@dataclass(frozen=True)
class CPPN(ParamFactory):
    """Compositional pattern-producing network, with the defaults of lucid's CPPN notebook (xy2rgb).

    ``render(param="cppn")`` (or ``param=CPPN()``) without ``optimizer`` / ``transforms`` uses
    Adam at ``learning_rate`` (0.005) and no transforms, as that notebook does: the network's
    smoothness already regularises the image, and at the pixel images' 0.05 the output layer
    saturates to a flat colour within a few steps.

    Unlike that notebook, ``normalize`` defaults to True (each hidden layer normalised per
    image, as lucid's ``cppn(normalize=True)``): without it, on the shipped ``shapes`` model,
    several live mixed3b units (e.g. curve detectors 18 and 37) never turned on in 128 steps and
    others rendered flat (spatial std 1e-4), while with it all of them rendered with structure
    (std 0.06-0.37) and objectives of -8 to -118 in 32 steps.
    """

    num_hidden_channels: int = 24
    num_layers: int = 8
    normalize: bool = True
    learning_rate: float = 0.005

    def __call__(self, *, batch, height, width, generator, device):
        return cppn(
            width,
            height,
            batch=batch,
            num_hidden_channels=self.num_hidden_channels,
            num_layers=self.num_layers,
            normalize=self.normalize,
            generator=generator,
            device=device,
        )
