"""CPPN parameterization (lucid's ``cppn``): the image is a small 1x1-conv network of (x, y).

Every batch element has its own network; the N networks run as one batched matmul.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from circuits_vision.optvis.param.spatial import Generators, random_normal

__all__ = ["cppn", "composite_activation"]


def composite_activation(x: torch.Tensor) -> torch.Tensor:
    """lucid's CPPN activation: ``atan`` and its square, each scaled to unit RMS for N(0, 1) input.

    ``[N, C, P] -> [N, 2C, P]``.
    """
    x = torch.atan(x)
    return torch.cat([x / 0.67, (x * x) / 0.6], dim=1)


def _coordinates(height: int, width: int) -> torch.Tensor:
    """``[2, H*W]`` (x, y) grid with unit standard deviation per axis (range ``±sqrt(3)``)."""
    r = 3.0**0.5
    ys = torch.linspace(-r, r, height)
    xs = torch.linspace(-r, r, width)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y]).reshape(2, height * width)


def cppn(
    width: int,
    height: int | None = None,
    *,
    batch: int = 1,
    num_output_channels: int = 3,
    num_hidden_channels: int = 24,
    num_layers: int = 8,
    activation: Callable[[torch.Tensor], torch.Tensor] = composite_activation,
    normalize: bool = False,
    generator: Generators = None,
    device: torch.device | str | None = None,
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """A CPPN image: ``num_layers`` hidden 1x1 layers then a sigmoid RGB layer (lucid's layout).

    Weights start ``N(0, 1/fan_in)``, hidden biases ``N(0, 0.1)``, the output layer's weights at
    zero (so the first image is flat grey), as in lucid. ``activation`` maps ``[N, C, P]`` to
    ``[N, C', P]``; the default doubles the channels. ``normalize=True`` normalises each hidden
    layer's channels over the pixels before the activation (lucid's instance norm, without the
    learned scale). lucid trains CPPNs with a smaller learning rate than pixel images and without
    transforms (Adam 0.005 in its notebook).

    Returns ``(params, image_f)`` with ``image_f() -> [batch, num_output_channels, H, W]`` in [0, 1].
    """
    height = height or width
    coords = _coordinates(height, width).to(device)
    generators = generator if generator is None or isinstance(generator, torch.Generator) else list(generator)

    weights, biases = [], []
    in_channels = 2
    probe = activation(torch.zeros(1, num_hidden_channels, 1))
    for _ in range(num_layers):
        w = random_normal((batch, num_hidden_channels, in_channels), generators, device) * math.sqrt(1.0 / in_channels)
        b = random_normal((batch, num_hidden_channels, 1), generators, device) * 0.1
        weights.append(w.requires_grad_(True))
        biases.append(b.requires_grad_(True))
        in_channels = probe.shape[1]
    weights.append(torch.zeros(batch, num_output_channels, in_channels, device=device, requires_grad=True))
    biases.append(torch.zeros(batch, num_output_channels, 1, device=device, requires_grad=True))

    def inner() -> torch.Tensor:
        net = coords.expand(batch, -1, -1)
        for w, b in zip(weights[:-1], biases[:-1]):
            net = torch.baddbmm(b, w, net)
            if normalize:
                net = torch.nn.functional.instance_norm(net)
            net = activation(net)
        rgb = torch.sigmoid(torch.baddbmm(biases[-1], weights[-1], net))
        return rgb.reshape(batch, num_output_channels, height, width)

    return weights + biases, inner
