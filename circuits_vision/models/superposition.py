"""A planted superposition model: more sparse features than neurons, each stored as a random direction.

The toy model of Elhage et al. 2022 ("Toy Models of Superposition") as a conv layer: the input is the
features themselves, ``codes [N, F, H, W]`` (non-negative and sparse: at a position each feature is
off with probability ``1 - p``), and layer ``neurons`` is a 1x1 conv that writes feature ``i`` as the
unit vector ``directions[i]`` over its ``n_neurons < F`` channels. No neuron reads one feature (each
direction is spread over all neurons), but the directions are there for a sparse dictionary to find.

Unlike :mod:`.planted`, the input is not an RGB image: use it with activation-level analyses
(:func:`circuits_vision.analysis.dictionary.train`).
"""

from __future__ import annotations

import torch
from torch import nn

from circuits_vision.models.truth import SuperpositionTruth

__all__ = ["SuperpositionModel", "sparse_codes", "superposition"]


class SuperpositionModel(nn.Module):
    """``codes [N, F, H, W]`` -> layer ``neurons`` ``[N, n_neurons, H, W]`` = ``directions.T @ codes`` per position."""

    def __init__(self, directions: torch.Tensor, input_size: int = 8):
        super().__init__()
        n_features, n_neurons = directions.shape
        self.input_size = input_size
        self.input_channels = n_features  # the input is the features' codes, not an image
        self.neurons = nn.Conv2d(n_features, n_neurons, 1, bias=False)
        with torch.no_grad():
            self.neurons.weight.copy_(directions.T[:, :, None, None])
        self.neurons.requires_grad_(False)
        self.truth = SuperpositionTruth(directions.clone(), "neurons")

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.neurons(codes)


def superposition(n_features: int = 32, n_neurons: int = 12, seed: int = 0) -> SuperpositionModel:
    """``n_features`` random unit directions (``torch.Generator(seed)``) in ``n_neurons`` dimensions."""
    if not 1 <= n_neurons < n_features:
        raise ValueError(f"superposition needs 1 <= n_neurons < n_features, got {n_neurons} and {n_features}")
    g = torch.Generator().manual_seed(int(seed))
    directions = torch.nn.functional.normalize(torch.randn(n_features, n_neurons, generator=g), dim=1)
    return SuperpositionModel(directions)


def sparse_codes(
    n: int,
    n_features: int,
    generator: torch.Generator,
    *,
    size: int = 8,
    p: float = 0.03,
    low: float = 0.5,
    high: float = 1.5,
) -> torch.Tensor:
    """``[n, n_features, size, size]``: each feature on with probability ``p`` at each position, with a
    value uniform in [low, high]."""
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    on = torch.rand(n, n_features, size, size, generator=generator) < p
    return on * (low + (high - low) * torch.rand(n, n_features, size, size, generator=generator))
