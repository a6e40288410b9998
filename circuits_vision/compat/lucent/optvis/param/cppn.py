"""lucent's ``param.cppn``: the image is a network of 1x1 convolutions applied to (x, y) coordinates."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
from torch import nn

from circuits_vision.compat.lucent.optvis.param._device import default_device
from circuits_vision.optvis import param as engine_param

__all__ = ["CompositeActivation", "cppn"]


class CompositeActivation(nn.Module):
    """``[N, C, H, W] -> [N, 2C, H, W]``: ``atan`` and its square, scaled to unit RMS (lucid's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        return engine_param.composite_activation(x.reshape(n, c, -1)).reshape(n, 2 * c, *x.shape[2:])


def _coordinates(size: int) -> torch.Tensor:
    """``[1, 2, size, size]``: channel 0 varies down the rows, channel 1 across the columns
    (lucent's layout), each spanning ``±sqrt(3)`` so it has unit variance."""
    r = 3.0**0.5
    line = torch.linspace(-r, r, size)
    rows, columns = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([rows, columns]).unsqueeze(0)


def cppn(
    size: int,
    num_output_channels: int = 3,
    num_hidden_channels: int = 24,
    num_layers: int = 8,
    activation_fn: Callable[[], nn.Module] = CompositeActivation,
    normalize: bool = False,
) -> tuple[Iterator[nn.Parameter], Callable[[], torch.Tensor]]:
    """A CPPN image ``[1, num_output_channels, size, size]`` in [0, 1] (lucent's layout).

    ``num_layers`` 1x1 convolutions (``conv0`` ...), each followed by ``InstanceNorm2d`` when
    ``normalize`` and by ``activation_fn()`` except the last, which a sigmoid (``output``) follows.
    Weights start ``N(0, 1/in_channels)``, biases at zero, the last weights at zero (a grey first
    image). Drawn from torch's global generator in lucent's order, so a seed gives lucent's network.
    lucent's notebook trains it with ``torch.optim.Adam(params, 5e-3)``.
    """
    if num_layers < 1:
        raise ValueError(f"cppn needs num_layers >= 1, got {num_layers}")
    # how many channels the activation makes of num_hidden_channels (CompositeActivation doubles them)
    widened = activation_fn()(torch.zeros(1, num_hidden_channels, 1, 1)).shape[1]
    layers = []
    in_channels = 2
    for i in range(num_layers):
        last = i == num_layers - 1
        out_channels = num_output_channels if last else num_hidden_channels
        layers.append((f"conv{i}", nn.Conv2d(in_channels, out_channels, 1)))
        if normalize:
            layers.append((f"norm{i}", nn.InstanceNorm2d(out_channels)))
        layers.append(("output", nn.Sigmoid()) if last else (f"actv{i}", activation_fn()))
        in_channels = widened
    device = default_device()
    net = nn.Sequential(OrderedDict(layers)).to(device)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv in convs:
            conv.weight.normal_(0.0, math.sqrt(1.0 / conv.in_channels))
            conv.bias.zero_()
        convs[-1].weight.zero_()
    coordinates = _coordinates(size).to(device)
    return net.parameters(), lambda: net(coordinates)
