"""The one result type of the equivariance detectors, and its parts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from circuits_vision.results import Result


@dataclass
class Family:
    """Units that are transformed copies of each other.

    Attributes:
        kind: "rotation", "hue" or "scale".
        members: unit indices, ordered by ``values``.
        values: per member, its transformation relative to ``reference`` (degrees for rotation and
            hue, in ``[0, period)``; log2 scale for "scale", the smallest member at 0).
        reference: the member the values are relative to (the most typical member).
        period: 360, or 180 / 120 / 90 when every member equals its own rotation by that much
            (lines and edges are 180-periodic); None for scale.
        score: mean over member pairs of their similarity at the best transformation.
        confidence: per member, mean similarity to the others at the transformation the synchronised
            values predict (low = the member fits the family's geometry badly).
        residual: median over pairs of |best pairwise parameter - difference of synchronised values|.
        p_value: shuffled-angle test: how often members given random angles (uniform over the period;
            for tuning curves: each curve circularly shifted) fit each other as well as at their found
            angles. Small = the angles carry the structure; look-alike units fail it.
        q_value: Benjamini-Hochberg q of ``p_value`` over the candidate families of the report.
        null_score: mean of that statistic under the shuffled angles (compare with ``fit``).
        fit: mean over member pairs of the similarity at the angles the family assigns.
        effect_size: mean over member pairs of ``(similarity - null mean) / null std`` against the
            structure null (kernels scrambled, see :mod:`~circuits_vision.analysis.equivariance.null`).
        pair_q_max: the largest pair q-value among members (pairs are tested against the structure null).
        source: the layer the members' kernels came from ("input" for the RGB input), when from weights.
    """

    kind: str
    members: list[int]
    values: dict[int, float]
    reference: int
    period: float | None
    score: float
    confidence: dict[int, float] = field(default_factory=dict)
    residual: float = 0.0
    p_value: float = math.nan
    q_value: float = math.nan
    null_score: float = math.nan
    fit: float = math.nan
    effect_size: float = math.nan
    pair_q_max: float = math.nan
    source: str | None = None

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return (
            f"Family({self.kind}, {len(self.members)} units, period={self.period}, score={self.score:.3f}, "
            f"q={self.q_value:.3g})"
        )


@dataclass
class ReflectionPair:
    """Unit ``b`` is unit ``a`` mirrored left/right, with cosine ``similarity`` (and its test against the null)."""

    a: int
    b: int
    similarity: float
    p_value: float = math.nan
    q_value: float = math.nan
    effect_size: float = math.nan


@dataclass
class Settings:
    """The decision rules a result was produced with.

    Attributes:
        alpha: false-discovery rate: pairs, families and invariant units are reported when their
            Benjamini-Hochberg q-value is below it.
        threshold: when set, pairs join families by this cosine similarity instead of by their q-value
            (the family-level shuffled-angle test still applies).
        invariant_threshold: a unit is invariant when its similarity to its own transformation stays
            above this at every parameter (and, with ``alpha``, significantly above the null's).
        min_members: smallest family reported.
        min_span: a family's values must spread over at least this much (deg, or log2 scale); a group
            confined to a narrower arc is a set of look-alikes.
        null: how the structure null was drawn ("scramble", "shuffle"; for tuning curves "network": units of
            weight-shuffled copies of the model, or "phase").
        null_units: how many null kernels (or curves) were drawn.
        angle_draws: random angle assignments per family in the shuffled-angle test.
        seed: the ``torch.Generator`` seed of every random draw.
        steps: parameters searched.
    """

    alpha: float = 0.05
    threshold: float | None = None
    invariant_threshold: float = 0.9
    min_members: int = 3
    min_span: float | None = None
    null: str = "scramble"
    null_units: int = 0
    angle_draws: int = 999
    seed: int = 0
    steps: int | None = None


@dataclass
class NullSummary:
    """The structure null of the pair statistic: its size, mean, spread and the similarity a pair needed."""

    method: str
    pairs: int
    mean: float
    std: float
    critical: float | None = None  # smallest similarity of a significant pair (None when none was)


@dataclass
class EquivarianceResult(Result):
    """What one detector found in one layer.

    Attributes:
        kind: "rotation", "hue", "scale" or "reflection".
        layer, source, method: where the kernels came from ("weights", "tuning", "visualization", "kernels").
        families: the families, largest first (empty for "reflection").
        pairs: mirror pairs (only for "reflection").
        invariant: units equal to their own transformation at every parameter (rotation-invariant
            centre-surround units, grey units for hue, self-symmetric units for reflection).
        explanation: why the result is empty, or notes on what was rejected or left out.
        similarity: ``[P, N, N]`` similarity after transformation (``[1, N, N]`` mirror similarity for
            reflection; ``None`` when nothing was compared). Units whose kernels come from different
            sources are not compared: those entries are 0.
        parameters: ``[P]`` the angles / hues / log2 scales searched.
        units: the unit indices the rows of ``similarity`` refer to.
        p_values, q_values, effect_sizes: ``[N, N]`` per pair, against the structure null (1, 1, 0 on
            the diagonal and between units that were not compared).
        settings: the decision rules (:class:`Settings`).
        null: the structure null's summary (None when no null was drawn).
        rejected: candidate groups that were not reported, with why (look-alikes, shuffled-angle test).
        excluded: units left out of the search, with why (dead, no spatial structure).
        sources: per unit, the layer its kernel came from (weights only; "input" for the RGB input).
    """

    kind: str
    layer: str | None
    source: str | None
    method: str
    families: list[Family] = field(default_factory=list)
    pairs: list[ReflectionPair] = field(default_factory=list)
    invariant: list[int] = field(default_factory=list)
    explanation: str = ""
    similarity: torch.Tensor | None = None
    parameters: torch.Tensor | None = None
    units: list[int] = field(default_factory=list)
    p_values: torch.Tensor | None = None
    q_values: torch.Tensor | None = None
    effect_sizes: torch.Tensor | None = None
    settings: Settings = field(default_factory=Settings)
    null: NullSummary | None = None
    rejected: list[tuple[list[int], str]] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.families or self.pairs or self.invariant)

    def family_of(self, unit: int) -> Family | None:
        return next((f for f in self.families if unit in f.members), None)

    def table(self) -> list[dict]:
        """One row per family member (or per mirror pair): family, unit, kind, value, period, score,
        confidence, p, q, effect size, source."""
        rows = []
        for number, fam in enumerate(self.families):
            for unit in fam.members:
                rows.append(
                    {
                        "family": number,
                        "unit": unit,
                        "kind": fam.kind,
                        "value": fam.values[unit],
                        "period": fam.period,
                        "score": round(fam.score, 4),
                        "confidence": fam.confidence.get(unit),
                        "p": fam.p_value,
                        "q": fam.q_value,
                        "effect_size": round(fam.effect_size, 3),
                        "source": fam.source,
                    }
                )
        for number, pair in enumerate(self.pairs):
            for unit, value in ((pair.a, 0.0), (pair.b, 180.0)):
                rows.append(
                    {
                        "family": number,
                        "unit": unit,
                        "kind": "reflection",
                        "value": value,
                        "period": None,
                        "score": round(pair.similarity, 4),
                        "confidence": None,
                        "p": pair.p_value,
                        "q": pair.q_value,
                        "effect_size": round(pair.effect_size, 3),
                        "source": self.sources.get(unit, self.source),
                    }
                )
        return rows

    def __str__(self) -> str:
        where = f"{self.layer or 'units'}" + (f" (kernels from {self.source})" if self.source else "")
        rule = (
            f"pairs by cosine >= {self.settings.threshold}"
            if self.settings.threshold is not None
            else f"FDR q < {self.settings.alpha}"
        )
        lines = [f"{self.kind} equivariance in {where}, method={self.method}, {rule}:"]
        for number, fam in enumerate(self.families):
            unit = "log2 scale" if fam.kind == "scale" else "deg"
            values = ", ".join(f"{u}@{fam.values[u]:.1f}" for u in fam.members)
            origin = f", kernels from {fam.source}" if fam.source and fam.source != self.source else ""
            lines.append(
                f"  family {number}: {len(fam)} units, score {fam.score:.3f}, period {fam.period}, "
                f"fit {fam.fit:.3f} vs shuffled angles {fam.null_score:.3f} (q={fam.q_value:.2g}), "
                f"effect size {fam.effect_size:.1f}{origin}; {unit}: {values}"
            )
        for pair in self.pairs:
            lines.append(
                f"  mirror pair {pair.a} <-> {pair.b} (similarity {pair.similarity:.3f}, q={pair.q_value:.2g})"
            )
        if self.invariant:
            lines.append(f"  invariant units: {self.invariant}")
        if self.null is not None:
            critical = "" if self.null.critical is None else f"; significant pairs reach >= {self.null.critical:.3f}"
            lines.append(
                f"  null ({self.null.method}): {self.null.pairs} pairs, similarity {self.null.mean:.3f} "
                f"+- {self.null.std:.3f}{critical}"
            )
        if self.explanation:
            lines.append(f"  note: {self.explanation}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"EquivarianceResult(kind={self.kind!r}, layer={self.layer!r}, source={self.source!r}, "
            f"method={self.method!r}, families={len(self.families)}, pairs={len(self.pairs)}, "
            f"invariant={len(self.invariant)}, units={len(self.units)})"
        )


EquivarianceReport = EquivarianceResult
"""The former name of :class:`EquivarianceResult`."""
