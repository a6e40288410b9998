"""Equivariant circuits between two layers, each score against shuffled angles ("Curve Circuits").

:func:`circuit` takes the rotation family of a downstream layer and either a family of the upstream
layer or, when the upstream layer has none, the upstream units' preferred orientations from tuning
curves, and reports:

- the circuit's equivariance score (the fraction of weight energy explained by one kernel per relative
  angle, :func:`circuits_vision.analysis.motifs.equivariant_circuit`) against the same score with both
  families' angles shuffled: permutation p-value and effect size;
- the parameter reduction the symmetry buys;
- the weight-vs-orientation-difference curve: mean net expanded weight from an upstream unit at angle
  ``a`` to a downstream unit at ``b``, binned by ``b - a``, with the 2.5-97.5 % band of the same curve
  under shuffled angles (similar orientations excite, opposite ones inhibit, in Curve Circuits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits_vision.analysis.equivariance._grouping import circular_difference
from circuits_vision.analysis.equivariance._result import Family
from circuits_vision.results import Result

__all__ = ["CircuitResult", "circuit", "tuned_family"]


@dataclass
class CircuitResult(Result):
    """An equivariant circuit between ``source_layer`` and ``target_layer``, with its nulls.

    Attributes:
        score: equivariance score of the weights between the families (1 = one kernel per relative angle).
        null_scores: ``[shuffles]`` the score with both families' angles shuffled.
        p_value: ``(1 + #{null >= score}) / (1 + shuffles)``.
        effect_size: ``(score - mean(null)) / std(null)``.
        n_weights, n_parameters, reduction: numbers in the block without / with the symmetry, and their ratio.
        delta_deg: centres of the orientation-difference bins (``b - a`` in [-180, 180)).
        mean_weight: per bin, mean net expanded weight (summed over kernel taps); NaN for empty bins.
        null_low, null_high: per bin, the 2.5 and 97.5 percentiles of ``mean_weight`` under shuffled angles.
        upstream: "family" (a rotation family of the source layer) or "tuning" (preferred orientations).
        source_family, target_family: the families used.
    """

    source_layer: str
    target_layer: str
    score: float
    null_scores: torch.Tensor
    p_value: float
    effect_size: float
    n_weights: int
    n_parameters: int
    reduction: float
    delta_deg: list[float]
    mean_weight: list[float]
    null_low: list[float]
    null_high: list[float]
    upstream: str
    source_family: Family = field(repr=False)
    target_family: Family = field(repr=False)

    def table(self) -> list[dict]:
        """One row per orientation-difference bin: delta, mean weight, null band, outside the band."""
        return [
            {
                "delta_deg": d,
                "mean_weight": w,
                "null_low": lo,
                "null_high": hi,
                "outside_null": bool(not math.isnan(w) and (w < lo or w > hi)),
            }
            for d, w, lo, hi in zip(self.delta_deg, self.mean_weight, self.null_low, self.null_high)
        ]

    def __str__(self) -> str:
        lines = [
            f"equivariant circuit {self.source_layer} -> {self.target_layer} "
            f"({len(self.source_family)} upstream units from {self.upstream}, {len(self.target_family)} downstream):",
            f"  score {self.score:.3f} vs shuffled angles {float(self.null_scores.mean()):.3f} "
            f"+- {float(self.null_scores.std()):.3f} (p={self.p_value:.3g}, effect size {self.effect_size:.1f})",
            f"  parameters {self.n_weights} -> {self.n_parameters} ({self.reduction:.1f}x fewer)",
            "  weight by orientation difference (null band):",
        ]
        for row in self.table():
            mark = " *" if row["outside_null"] else ""
            lines.append(
                f"    {row['delta_deg']:+7.1f} deg: {row['mean_weight']:+.4f} "
                f"[{row['null_low']:+.4f}, {row['null_high']:+.4f}]{mark}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"CircuitResult({self.source_layer!r} -> {self.target_layer!r}, score={self.score:.3f}, "
            f"p={self.p_value:.3g}, reduction={self.reduction:.1f})"
        )


def tuned_family(
    model: nn.Module, layer: str, units: list[int], *, steps: int = 72, min_modulation: float = 0.2
) -> Family:
    """A stand-in family of ``units`` of ``layer`` with their preferred orientations from tuning curves.

    Units whose curve never responds or is flat (max - min below ``min_modulation`` of the max) are left out.
    The preferred orientation is the circular mean of the curve (its first Fourier component).
    """
    from circuits_vision.analysis.equivariance._model import orientation_tuning

    curves = orientation_tuning(model, layer, list(units), steps=steps).double()
    peak = curves.max(1).values
    depth = (peak - curves.min(1).values) / peak.abs().clamp_min(1e-12)
    keep = (peak > 1e-9) & (depth >= min_modulation)
    angles = torch.arange(steps, dtype=torch.float64) * (2 * math.pi / steps)
    first = (curves.clamp_min(0) * torch.polar(torch.ones_like(angles), angles)).sum(1)
    preferred = torch.remainder(torch.rad2deg(torch.angle(first)), 360.0)
    members = [u for u, k in zip(units, keep.tolist()) if k]
    values = {u: round(float(p), 3) for u, p, k in zip(units, preferred.tolist(), keep.tolist()) if k}
    members.sort(key=values.get)
    return Family("rotation", members, values, members[0] if members else -1, 360.0, math.nan)


def circuit(
    model: nn.Module,
    source_layer: str,
    target_layer: str,
    target_family: Family,
    *,
    source_family: Family | None = None,
    weights: torch.Tensor | None = None,
    upstream_units: int = 16,
    shuffles: int = 199,
    bins: int = 8,
    seed: int = 0,
) -> CircuitResult:
    """The equivariant circuit from ``source_layer`` into ``target_family`` of ``target_layer``.

    Args:
        target_family: a rotation family of ``target_layer`` (from :func:`~circuits_vision.analysis.equivariance.report`).
        source_family: a rotation family of ``source_layer``; None: the ``upstream_units`` source units with
            the largest expanded-weight norm into the target family, given their tuning orientations
            (:func:`tuned_family`), for when only the downstream layer has a family.
        weights: the expanded weights ``[C_target, C_source, kh, kw]`` (computed when None).
        shuffles: angle shuffles of the null (both families' angles permuted, ``torch.Generator(seed)``).
        bins: orientation-difference bins of the weight curve.
    """
    from circuits_vision.analysis import motifs
    from circuits_vision.weights import expanded_weights

    if shuffles < 1 or bins < 2:
        raise ValueError(f"shuffles must be >= 1 and bins >= 2, got shuffles={shuffles}, bins={bins}")
    if target_family.kind != "rotation" or len(target_family) < 2:
        raise ValueError(f"target_family must be a rotation family of >= 2 units, got {target_family!r}")
    E = expanded_weights(model, source_layer, target_layer) if weights is None else weights
    upstream = "family"
    if source_family is None:
        upstream = "tuning"
        norms = E[target_family.members].flatten(2).norm(dim=2).sum(0)  # [C_source]
        picked = torch.argsort(norms, descending=True)[:upstream_units].tolist()
        source_family = tuned_family(model, source_layer, sorted(picked))
        if len(source_family) < 2:
            raise ValueError(
                f"fewer than 2 of the {upstream_units} strongest upstream units of {source_layer!r} are tuned to "
                f"orientation; pass source_family or more upstream_units"
            )
    observed = motifs.equivariant_circuit(E, source_family, target_family, shuffles=1)
    generator = torch.Generator().manual_seed(seed)
    a = torch.tensor([source_family.values[u] for u in source_family.members], dtype=torch.float64)
    b = torch.tensor([target_family.values[u] for u in target_family.members], dtype=torch.float64)
    net = E[target_family.members][:, source_family.members].double().sum((2, 3))  # [m_t, m_s]
    nulls, curves = [], []
    for _ in range(shuffles):
        pa, pb = a[torch.randperm(len(a), generator=generator)], b[torch.randperm(len(b), generator=generator)]
        nulls.append(
            motifs.equivariant_circuit(
                E, _with_values(source_family, pa), _with_values(target_family, pb), shuffles=1
            ).score
        )
        curves.append(_weight_curve(net, pa, pb, bins))
    null = torch.tensor(nulls, dtype=torch.float64)
    null_curves = torch.stack(curves)  # [shuffles, bins]
    centres, mean = _bin_centres(bins), _weight_curve(net, a, b, bins)
    low = torch.nanquantile(null_curves, 0.025, dim=0)
    high = torch.nanquantile(null_curves, 0.975, dim=0)
    return CircuitResult(
        source_layer=source_layer,
        target_layer=target_layer,
        score=observed.score,
        null_scores=null,
        p_value=float((1 + (null >= observed.score - 1e-12).sum()) / (1 + shuffles)),
        effect_size=float((observed.score - null.mean()) / null.std().clamp_min(1e-12)),
        n_weights=observed.n_weights,
        n_parameters=observed.n_parameters,
        reduction=observed.reduction,
        delta_deg=centres,
        mean_weight=mean.tolist(),
        null_low=low.tolist(),
        null_high=high.tolist(),
        upstream=upstream,
        source_family=source_family,
        target_family=target_family,
    )


def _with_values(fam: Family, values: torch.Tensor) -> Family:
    return Family(
        fam.kind,
        list(fam.members),
        {u: float(v) for u, v in zip(fam.members, values.tolist())},
        fam.reference,
        fam.period,
        fam.score,
    )


def _bin_centres(bins: int) -> list[float]:
    width = 360.0 / bins
    return [-180.0 + width * (k + 0.5) for k in range(bins)]


def _weight_curve(net: torch.Tensor, a: torch.Tensor, b: torch.Tensor, bins: int) -> torch.Tensor:
    """``[bins]`` mean of ``net [m_t, m_s]`` by orientation difference ``b - a`` (NaN where a bin is empty)."""
    delta = circular_difference(b[:, None] - a[None, :], 360.0)  # [-180, 180)
    index = ((delta + 180.0) / (360.0 / bins)).floor().long().clamp(0, bins - 1).flatten()
    total = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, net.flatten())
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(net.flatten()))
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))
