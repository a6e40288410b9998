"""Semantic dictionary ("Building Blocks"): at every position of a layer, the units that fire most there.

words = semantic_dictionary(model, image, "mixed4d", k=4)
words.units[0, y, x]          # [k] the strongest units at (y, x), strongest first
pictures = words.render(model, steps=256)   # one thumbnail per distinct unit, one batched render
pictures.images[words.thumbnail_index(words.units[0, y, x, 0])]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision.hooks import eval_mode, model_device, resolve_layer, run_with_cache
from circuits_vision.optvis import objectives as obj
from circuits_vision.optvis import render
from circuits_vision.results import Result

__all__ = ["SemanticDictionary", "semantic_dictionary"]


@dataclass
class SemanticDictionary(Result):
    """Per position, the ``k`` strongest units of ``layer`` on ``N`` images.

    Attributes:
        units: ``[N, H, W, k]`` int64 unit indices, strongest first.
        values: ``[N, H, W, k]`` their activations.
        magnitude: ``[N, H, W]`` the norm of each position's activation vector (how much is going on there).
    """

    layer: str
    units: torch.Tensor
    values: torch.Tensor
    magnitude: torch.Tensor

    def used_units(self) -> list[int]:
        """Every unit that is among the top ``k`` somewhere, ascending (the thumbnails to render)."""
        return [int(u) for u in torch.unique(self.units)]

    def thumbnail_index(self, unit: int) -> int:
        """Row of ``unit`` in :meth:`render`'s images."""
        used = self.used_units()
        unit = int(unit)
        if unit not in used:
            raise ValueError(f"unit {unit} is not in the dictionary of {self.layer!r} (used units: {used[:20]}...)")
        return used.index(unit)

    def render(self, model: nn.Module, **render_kwargs):
        """One ``channel`` feature visualization per :meth:`used_units` unit, in one batched render."""
        return render(model, [obj.channel(self.layer, u) for u in self.used_units()], **render_kwargs)

    def table(self, image: int = 0) -> list[dict]:
        """One row per position of image ``image``: its top units and their activations."""
        n, h, w, k = self.units.shape
        return [
            {
                "y": y,
                "x": x,
                "units": self.units[image, y, x].tolist(),
                "values": self.values[image, y, x].tolist(),
                "magnitude": float(self.magnitude[image, y, x]),
            }
            for y in range(h)
            for x in range(w)
        ]

    def __str__(self) -> str:
        n, h, w, k = self.units.shape
        counts = torch.bincount(self.units[..., 0].flatten())
        common = counts.argsort(descending=True)[:5]
        top = ", ".join(f"{int(u)} ({int(counts[u])} positions)" for u in common if counts[u] > 0)
        return (
            f"semantic dictionary of {self.layer}: top {k} units at {h}x{w} positions of {n} images, "
            f"{len(self.used_units())} distinct units; most often strongest: {top}"
        )

    def __repr__(self) -> str:
        return f"SemanticDictionary(layer={self.layer!r}, units={tuple(self.units.shape)})"


def semantic_dictionary(model: nn.Module, images: torch.Tensor, layer: str, k: int = 4) -> SemanticDictionary:
    """The ``k`` strongest units of ``layer`` at every position of ``images`` ``[3, H, W]`` or ``[N, 3, H, W]``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor [3, H, W] or [N, 3, H, W], got {type(images).__name__}")
    images = images.unsqueeze(0) if images.dim() == 3 else images
    canonical = resolve_layer(model, layer)[0]
    with torch.no_grad(), eval_mode(model):
        acts = run_with_cache(model, images.to(model_device(model)), [canonical])[canonical].float().cpu()
    if acts.dim() != 4:
        raise ValueError(
            f"layer {canonical!r} gives a {acts.dim()}-d output; a semantic dictionary needs [N, C, H, W] maps"
        )
    k = int(k)
    if not 1 <= k <= acts.shape[1]:
        raise ValueError(f"k must be between 1 and the layer's {acts.shape[1]} channels, got {k}")
    by_position = acts.permute(0, 2, 3, 1)  # [N, H, W, C]
    values, units = by_position.topk(k, dim=-1)
    return SemanticDictionary(canonical, units, values, by_position.norm(dim=-1))
