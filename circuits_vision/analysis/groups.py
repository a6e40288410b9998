"""Neuron groups ("Building Blocks"): a layer's activations on an image, factored into k groups of units.

The activations ``[N, C, H, W]`` are read as ``N*H*W`` non-negative vectors over channels and factored
with non-negative matrix factorisation, ``positions x channels ~ spatial @ directions``: each group is a
direction over the layer's units (``directions [k, C]``) with a map of where the image uses it
(``spatial [N, k, H, W]``). ``groups.render(model)`` draws every group with a ``direction`` objective in
one batched feature-visualization call.

    found = neuron_groups(model, image, "mixed4d", k=6)
    pictures = found.render(model, steps=256).images     # [6, 3, 128, 128]
    found.spatial[0]                                     # [6, H, W] where each group is present

scikit-learn's ``NMF`` does the factorisation (``init="nndsvda"``: deterministic, no random draws).
Layers with negative values (pre-ReLU) are rejected: NMF needs non-negative data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from circuits_vision.analysis.attribution import attribute
from circuits_vision.hooks import eval_mode, model_device, resolve_layer, run_with_cache
from circuits_vision.optvis import objectives as obj
from circuits_vision.optvis import render
from circuits_vision.results import Result

__all__ = ["NeuronGroups", "neuron_groups"]


@dataclass
class NeuronGroups(Result):
    """``k`` groups of ``layer``'s units found on ``N`` images.

    Attributes:
        directions: ``[k, C]`` each group's (non-negative) weight on every unit.
        spatial: ``[N, k, H, W]`` how strongly each position uses each group.
        relative_error: Frobenius error of ``spatial @ directions`` relative to the activations' norm.
        attribution: ``[N, k]`` each group's attribution to ``target`` (when one was given), else ``None``.
    """

    layer: str
    directions: torch.Tensor
    spatial: torch.Tensor
    relative_error: float
    attribution: torch.Tensor | None = None
    target: str | None = None

    @property
    def k(self) -> int:
        return self.directions.shape[0]

    def top_units(self, group: int, k: int = 5) -> list[tuple[int, float]]:
        """The units group ``group`` weighs most: ``[(unit, weight)]``."""
        weights = self.directions[group]
        order = weights.argsort(descending=True)[: int(k)]
        return [(int(u), float(weights[u])) for u in order]

    def objectives(self) -> list[obj.Objective]:
        """One ``direction`` objective per group."""
        return [obj.direction(self.layer, self.directions[g]) for g in range(self.k)]

    def render(self, model: nn.Module, **render_kwargs):
        """Feature visualization of every group in one :func:`circuits_vision.optvis.render` call."""
        return render(model, self.objectives(), **render_kwargs)

    def table(self) -> list[dict]:
        """Per group: its share of the activation mass, its top units and (if known) its attribution."""
        mass = self.spatial.sum((0, 2, 3)) * self.directions.sum(1)
        share = mass / mass.sum().clamp_min(1e-12)
        return [
            {
                "group": g,
                "share": float(share[g]),
                "top_units": [u for u, _ in self.top_units(g)],
                "attribution": None if self.attribution is None else float(self.attribution[:, g].sum()),
            }
            for g in range(self.k)
        ]

    def __str__(self) -> str:
        lines = [f"{self.k} neuron groups of {self.layer} (relative error {self.relative_error:.3f})"]
        for row in self.table():
            extra = "" if row["attribution"] is None else f", attribution to {self.target} {row['attribution']:+.3g}"
            lines.append(
                f"  group {row['group']}: {row['share']:.0%} of activation, top units {row['top_units']}{extra}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"NeuronGroups(layer={self.layer!r}, k={self.k}, spatial={tuple(self.spatial.shape)})"


def neuron_groups(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    k: int = 6,
    *,
    target=None,
    max_iter: int = 500,
) -> NeuronGroups:
    """Factor ``layer``'s activations on ``images`` (``[3, H, W]`` or ``[N, 3, H, W]``) into ``k`` groups.

    With ``target`` (a logit, ``"layer:channel"`` or an attribution ``Target``), each group's attribution
    is its gradient x activation share: the per-position attribution ``[N, C, H, W]`` projected on the
    groups through their spatial maps.
    """
    from sklearn.decomposition import NMF

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor [3, H, W] or [N, 3, H, W], got {type(images).__name__}")
    images = images.unsqueeze(0) if images.dim() == 3 else images
    if images.dim() != 4:
        raise ValueError(f"images must be [3, H, W] or [N, 3, H, W], got shape {tuple(images.shape)}")
    k = int(k)
    canonical = resolve_layer(model, layer)[0]
    with torch.no_grad(), eval_mode(model):
        acts = run_with_cache(model, images.to(model_device(model)), [canonical])[canonical].float().cpu()
    if acts.dim() != 4:
        raise ValueError(f"layer {canonical!r} gives a {acts.dim()}-d output; neuron groups need [N, C, H, W] maps")
    n, c, h, w = acts.shape
    if not 1 <= k <= c:
        raise ValueError(f"k must be between 1 and the layer's {c} channels, got {k}")
    if float(acts.min()) < 0:
        raise ValueError(
            f"layer {canonical!r} has negative activations (min {float(acts.min()):.3g}); NMF needs a non-negative "
            "layer: use the post-ReLU layer (e.g. 'mixed4a', not 'mixed4a_pre_relu')"
        )
    data = acts.permute(0, 2, 3, 1).reshape(-1, c).double().numpy()
    if not data.any():
        raise ValueError(f"layer {canonical!r} is zero everywhere on these images: nothing to factor")
    nmf = NMF(n_components=k, init="nndsvda", max_iter=int(max_iter), tol=1e-5)
    maps = nmf.fit_transform(data)  # [N*H*W, k]
    directions = nmf.components_  # [k, C]
    error = float(np.linalg.norm(data - maps @ directions) / np.linalg.norm(data))
    spatial = torch.from_numpy(maps).float().reshape(n, h, w, k).permute(0, 3, 1, 2).contiguous()
    found = NeuronGroups(canonical, torch.from_numpy(directions).float(), spatial, error)
    if target is not None:
        attr = attribute(model, images, canonical, target)
        # Split each position's attribution between the groups in proportion to their reconstruction there.
        share = _group_shares(spatial, found.directions, attr.values)
        found.attribution, found.target = share, attr.target
    return found


def _group_shares(spatial: torch.Tensor, directions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``[N, k]``: attribution ``values [N, C, H, W]`` split per unit and position between the groups
    by each group's part of the reconstruction ``spatial[n, g, y, x] * directions[g, c]``."""
    parts = spatial.unsqueeze(2) * directions.view(1, *directions.shape, 1, 1)  # [N, k, C, H, W]
    fraction = parts / parts.sum(1, keepdim=True).clamp_min(1e-12)
    return (fraction * values.unsqueeze(1)).sum((2, 3, 4))
