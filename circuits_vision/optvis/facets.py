"""Diversity facets: ``k`` feature visualizations of one unit optimised together, pushed apart.

lucid's recipe ("Feature Visualization", diversity section): render ``k`` images of one objective in
one batch with the loss ``channel(layer, unit) - weight * diversity(layer)``, where ``diversity`` is
minus the mean pairwise cosine similarity of the images' Gram matrices at ``layer`` (so the loss
rewards images that drive the unit by different means). A unit that responds to several things
tends to show them as different facets; a unit with one feature shows variations of it.

    found = facets(model, "mixed3b", 37, k=4, steps=256)
    found.images         # [4, 3, S, S]
    found.similarity     # mean pairwise Gram cosine at the layer of the final images (1 = identical style)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from circuits_vision.hooks import eval_mode, run_with_cache
from circuits_vision.optvis import objectives as obj
from circuits_vision.optvis.render import render

__all__ = ["Facets", "facets", "gram_similarity"]


@dataclass
class Facets:
    """``k`` images of ``layer:unit`` (``images [k, 3, S, S]``), their final activations of the unit
    (``activation [k]``, spatial mean) and ``similarity``: mean pairwise Gram cosine at ``layer``."""

    layer: str
    unit: int
    weight: float
    images: torch.Tensor
    activation: torch.Tensor
    similarity: float

    def __repr__(self) -> str:
        return (
            f"Facets({self.layer}:{self.unit}, k={len(self.images)}, weight={self.weight:g}, "
            f"similarity={self.similarity:.3f})"
        )


def gram_similarity(acts: torch.Tensor) -> float:
    """Mean pairwise cosine similarity of the Gram matrices of ``acts [k, C, h, w]`` (lucid's diversity
    measure without its sign); 1.0 for one image."""
    k = acts.shape[0]
    if k < 2:
        return 1.0
    flat = acts.flatten(2).double()
    grams = F.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
    sim = grams @ grams.T
    return float((sim.sum() - sim.diagonal().sum()) / (k * (k - 1)))


def facets(
    model: nn.Module,
    layer: str,
    unit: int,
    *,
    k: int = 4,
    weight: float = 1.0,
    diversity_layer: str | None = None,
    **render_kwargs,
) -> Facets:
    """Render ``k`` facets of ``layer:unit`` with lucid's diversity term (weight ``weight``, at
    ``diversity_layer``, default ``layer``). The right weight follows the layer's activation scale
    (lucid used 1e2 on InceptionV1); 1.0 suits the shipped model, whose channel means are ~1. ``render_kwargs`` go to :func:`render` (steps, size, seed, ...).
    ``weight=0`` gives ``k`` independent renders from the same starts, the baseline to compare with."""
    if int(k) < 2:
        raise ValueError(f"k must be >= 2 facets to diversify, got {k}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0 (0 = no diversity term), got {weight}")
    where = diversity_layer or layer
    objective = obj.channel(layer, int(unit))
    if weight > 0:
        objective = objective - float(weight) * obj.diversity(where)
    render_kwargs.setdefault("progress", False)
    result = render(model, [objective], images_per_objective=int(k), **render_kwargs)
    images = result.images[:, :3]
    with torch.no_grad(), eval_mode(model):
        device = next(model.parameters()).device
        cache = run_with_cache(model, images.to(device), [layer, where])
    activation = cache[layer][:, int(unit)].flatten(1).mean(1).float().cpu()
    return Facets(layer, int(unit), float(weight), images, activation, gram_similarity(cache[where].float().cpu()))
