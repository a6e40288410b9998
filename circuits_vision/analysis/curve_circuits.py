"""The curve circuit between two layers ("Curve Circuits", Cammarata et al., Distill 2021, Fig. "weights").

A downstream curve detector is built from upstream curve units of similar orientation (excitation)
and pushed down by upstream curves facing the opposite way (inhibition). Here every pair
(downstream curve detector ``t``, upstream curve detector ``s``) gets

- ``delta``: the difference of the two units' preferred orientations (degrees in [-180, 180), both
  from :func:`circuits_vision.analysis.tuning.find_curve_detectors`, so they share one convention);
- ``net``: the net expanded weight ``sum_{u,v} E[t, s, u, v]`` from ``s`` to ``t`` (summed over the
  receptive field, the linearised model's response of ``t`` to a uniform unit of ``s``).

The statistic is the Pearson correlation of ``net`` with ``cos(delta)`` over all pairs, against a
permutation null that shuffles which upstream unit carries which orientation (so the layer's weights
stay as they are and only the orientation structure is broken). The profile (mean ``net`` per 45-degree
bin of ``delta``) is the Curve Circuits weight-vs-orientation figure.

    circuit = curve_circuit(model, "mixed3a", "mixed3b")
    circuit.correlation, circuit.p_value, circuit.aligned_mean, circuit.opposite_mean
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision.analysis.equivariance import Family
from circuits_vision.analysis.tuning import CurveDetector, find_curve_detectors
from circuits_vision.results import Result

__all__ = ["CurveCircuit", "curve_circuit", "detector_family", "orientation_difference"]

ALIGNED = 45.0
"""Pairs with ``|delta| < ALIGNED`` are "aligned"; with ``|delta| > 180 - ALIGNED`` "opposite"."""


def orientation_difference(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``target - source`` wrapped into [-180, 180) degrees (any broadcastable shapes)."""
    return torch.remainder(target - source + 180.0, 360.0) - 180.0


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last dim of ``x [..., n]`` with ``y [n]``."""
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean()
    return (x * y).sum(-1) / (x.norm(dim=-1) * y.norm()).clamp_min(1e-300)


@dataclass
class CurveCircuit(Result):
    """Net expanded weights between curve detectors of two layers versus their orientation difference.

    Attributes:
        source, target: the layer names.
        source_units, target_units: curve detectors used (channel ids), with their preferred
            orientations ``source_orientations`` / ``target_orientations`` (degrees).
        delta: ``[T, S]`` target minus source orientation in [-180, 180).
        net: ``[T, S]`` net expanded weight from each source unit to each target unit.
        correlation: Pearson correlation of ``net`` with ``cos(delta)`` over all pairs.
        p_value: one-sided permutation p-value ``(1 + #{null >= correlation}) / (1 + permutations)``.
        null_mean, null_std: the permutation null's mean and standard deviation.
        aligned_mean, opposite_mean: mean ``net`` over pairs with ``|delta| < 45`` / ``|delta| > 135``
            (nan when there are none).
        bins: centres of the 45-degree ``delta`` bins; ``profile``: mean ``net`` per bin (nan when empty).
        null_low, null_high: the 5th and 95th percentiles of each bin's mean under the permutation null
            (the band a profile without orientation structure stays in).
        permutations: how many shuffles the null used.
    """

    source: str
    target: str
    source_units: list[int]
    target_units: list[int]
    source_orientations: list[float]
    target_orientations: list[float]
    delta: torch.Tensor
    net: torch.Tensor
    correlation: float
    p_value: float
    null_mean: float
    null_std: float
    aligned_mean: float
    opposite_mean: float
    bins: list[float]
    profile: list[float]
    null_low: list[float]
    null_high: list[float]
    permutations: int

    @property
    def n_pairs(self) -> int:
        return int(self.net.numel())

    @property
    def excites_aligned(self) -> bool:
        return self.aligned_mean > 0

    @property
    def inhibits_opposite(self) -> bool:
        return self.opposite_mean < 0

    def table(self) -> list[dict]:
        """One row per (target, source) pair: units, orientations, delta and net weight."""
        rows = []
        for j, t in enumerate(self.target_units):
            for i, s in enumerate(self.source_units):
                rows.append(
                    {
                        "target": t,
                        "source": s,
                        "target_orientation": self.target_orientations[j],
                        "source_orientation": self.source_orientations[i],
                        "delta": float(self.delta[j, i]),
                        "net_weight": float(self.net[j, i]),
                    }
                )
        return rows

    def summary(self) -> dict:
        """The figures as plain values (for JSON)."""
        return {
            "source": self.source,
            "target": self.target,
            "source_units": self.source_units,
            "target_units": self.target_units,
            "pairs": self.n_pairs,
            "correlation_net_vs_cos_delta": round(self.correlation, 4),
            "permutation_p": self.p_value,
            "permutations": self.permutations,
            "null_mean": round(self.null_mean, 4),
            "null_std": round(self.null_std, 4),
            "aligned_mean_net": self.aligned_mean,
            "opposite_mean_net": self.opposite_mean,
            "profile": {f"{b:g}": v for b, v in zip(self.bins, self.profile)},
            "null_band_5_95": {f"{b:g}": [lo, hi] for b, lo, hi in zip(self.bins, self.null_low, self.null_high)},
        }

    def __str__(self) -> str:
        lines = [
            f"curve circuit {self.source} -> {self.target}: {len(self.target_units)} x "
            f"{len(self.source_units)} curve detectors = {self.n_pairs} pairs",
            f"  corr(net expanded weight, cos delta) = {self.correlation:.3f} (shuffled-orientation null "
            f"{self.null_mean:.3f} +- {self.null_std:.3f}, p = {self.p_value:.2g}, {self.permutations} shuffles)",
            f"  aligned pairs (|delta| < {ALIGNED:g}): mean net {self.aligned_mean:+.4g} "
            f"({'excitatory' if self.excites_aligned else 'not excitatory'}); opposite pairs "
            f"(|delta| > {180 - ALIGNED:g}): mean net {self.opposite_mean:+.4g} "
            f"({'inhibitory' if self.inhibits_opposite else 'not inhibitory'})",
            "  mean net weight by delta: " + ", ".join(f"{b:+.0f}: {v:+.3g}" for b, v in zip(self.bins, self.profile)),
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"CurveCircuit({self.source!r} -> {self.target!r}, pairs={self.n_pairs}, "
            f"correlation={self.correlation:.3f}, p={self.p_value:.2g})"
        )


def detector_family(detectors: Sequence[CurveDetector], score: float = float("nan")) -> Family:
    """The curve detectors of a layer as a rotation :class:`Family` (angles = preferred orientations).

    A family by tuning rather than by weights, for :func:`circuits_vision.analysis.motifs.equivariant_circuit`
    and :func:`~circuits_vision.analysis.motifs.curve_pattern` (``score`` is not a similarity here).
    """
    ordered = sorted(detectors, key=lambda d: d.preferred_orientation)
    if not ordered:
        raise ValueError("no curve detectors: a family needs at least one member")
    values = {d.unit: float(d.preferred_orientation) for d in ordered}
    return Family("rotation", [d.unit for d in ordered], values, ordered[0].unit, 360.0, score)


def _detectors(model, layer, given) -> list[CurveDetector]:
    if given is None:
        return find_curve_detectors(model, layer).detectors
    given = list(given)
    if not all(isinstance(d, CurveDetector) for d in given):
        raise TypeError("detectors must be CurveDetector objects (from find_curve_detectors(...).detectors)")
    return given


def curve_circuit(
    model: nn.Module,
    source: str = "mixed3a",
    target: str = "mixed3b",
    *,
    source_detectors: Sequence[CurveDetector] | None = None,
    target_detectors: Sequence[CurveDetector] | None = None,
    weights: torch.Tensor | None = None,
    permutations: int = 10000,
    generator: torch.Generator | None = None,
) -> CurveCircuit:
    """Net expanded weight vs orientation difference between the curve detectors of ``source`` and ``target``.

    Detectors default to :func:`find_curve_detectors` with its defaults in each layer; ``weights``
    (``[C_target, C_source, kh, kw]`` expanded weights) to
    :func:`circuits_vision.weights.expanded_weights` ``(model, source, target)``. The permutation null
    shuffles the source detectors' orientations (``generator``, seed 0 by default).

    Raises:
        ValueError: a layer has fewer than 2 curve detectors (nothing to correlate), or ``weights`` does
            not match the units.
    """
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    src, tgt = _detectors(model, source, source_detectors), _detectors(model, target, target_detectors)
    for layer, found in ((source, src), (target, tgt)):
        if len(found) < 2:
            raise ValueError(
                f"layer {layer!r} has {len(found)} curve detector(s) (find_curve_detectors); a curve "
                "circuit needs at least 2 in each layer"
            )
    if weights is None:
        from circuits_vision.weights import expanded_weights

        weights = expanded_weights(model, source, target, source_channels=[d.unit for d in src])
        weights = weights[[d.unit for d in tgt]]
    else:
        if weights.dim() != 4:
            raise ValueError(
                f"weights must be expanded weights [C_target, C_source, kh, kw], got {tuple(weights.shape)}"
            )
        bad = [d.unit for d in src if d.unit >= weights.shape[1]] + [d.unit for d in tgt if d.unit >= weights.shape[0]]
        if bad:
            raise ValueError(f"units {bad} are outside the weights' channels {tuple(weights.shape[:2])}")
        weights = weights[[d.unit for d in tgt]][:, [d.unit for d in src]]
    net = weights.double().sum(dim=(-2, -1)).cpu()  # [T, S]
    a = torch.tensor([d.preferred_orientation for d in src], dtype=torch.float64)
    b = torch.tensor([d.preferred_orientation for d in tgt], dtype=torch.float64)
    delta = orientation_difference(b[:, None], a[None, :])
    flat = net.flatten()
    observed = float(_correlation(flat[None], torch.cos(torch.deg2rad(delta)).flatten())[0])
    generator = generator or torch.Generator().manual_seed(0)
    perms = torch.argsort(torch.rand(permutations, len(src), generator=generator), dim=1)  # [P, S]
    shuffled = orientation_difference(b[None, :, None], a[perms][:, None, :])  # [P, T, S]
    null = _correlation(torch.cos(torch.deg2rad(shuffled)).reshape(permutations, -1), flat)
    p_value = (1 + int((null >= observed - 1e-12).sum())) / (1 + permutations)

    def mean_where(mask: torch.Tensor) -> float:
        return float(net[mask].mean()) if bool(mask.any()) else math.nan

    centres = [-180.0 + 45.0 * k for k in range(8)]  # bins [c - 22.5, c + 22.5), -180 wraps with +180

    def bin_of(d: torch.Tensor) -> torch.Tensor:
        return torch.remainder(torch.floor((d + 180.0 + 22.5) / 45.0), 8).long()

    index = bin_of(delta)
    # The null band of the profile: per shuffle, the mean net weight of each bin.
    null_bins = bin_of(shuffled).reshape(permutations, -1)  # [P, T*S]
    sums = torch.zeros(permutations, 8, dtype=torch.float64).scatter_add_(1, null_bins, flat.expand(permutations, -1))
    counts = torch.zeros(permutations, 8, dtype=torch.float64).scatter_add_(
        1, null_bins, torch.ones_like(sums[:, :1]).expand(-1, flat.numel())
    )
    null_means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.nan)
    low = torch.nanquantile(null_means, 0.05, dim=0)
    high = torch.nanquantile(null_means, 0.95, dim=0)
    return CurveCircuit(
        source=source,
        target=target,
        source_units=[d.unit for d in src],
        target_units=[d.unit for d in tgt],
        source_orientations=[d.preferred_orientation for d in src],
        target_orientations=[d.preferred_orientation for d in tgt],
        delta=delta.float(),
        net=net.float(),
        correlation=observed,
        p_value=p_value,
        null_mean=float(null.mean()),
        null_std=float(null.std()),
        aligned_mean=mean_where(delta.abs() < ALIGNED),
        opposite_mean=mean_where(delta.abs() > 180.0 - ALIGNED),
        bins=centres,
        profile=[mean_where(index == k) for k in range(8)],
        null_low=low.tolist(),
        null_high=high.tolist(),
        permutations=permutations,
    )
