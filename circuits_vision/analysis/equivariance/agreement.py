"""Three views, one answer: families of a layer from weights, tuning curves and feature visualizations.

:func:`views` runs the detectors per view and puts them side by side (:class:`AgreementResult`: which
units each view finds, their angles, and per pair of views the Jaccard of the memberships and the
median orientation error against a shuffled baseline). :func:`compare_families` compares two families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision.analysis.equivariance._detect import ALPHA
from circuits_vision.analysis.equivariance._grouping import best_parameters, circular_difference
from circuits_vision.analysis.equivariance._model import report
from circuits_vision.analysis.equivariance._result import EquivarianceResult, Family
from circuits_vision.results import Result


def compare_families(a: Family, b: Family) -> dict:
    """Jaccard of the memberships and the orientation agreement on the shared members.

    The two detections measure angles from different reference members (and, for weights vs. tuning,
    different conventions up to a constant), so the best common offset is removed first (circular
    mean of the differences); ``median_offset_deg`` is the median remaining |difference| and
    ``max_offset_deg`` the largest. Returns ``{"jaccard", "shared", "median_offset_deg", "max_offset_deg",
    "common_offset_deg"}`` (offsets NaN without shared members).
    """
    shared = sorted(set(a.members) & set(b.members))
    union = set(a.members) | set(b.members)
    result = {
        "jaccard": len(shared) / max(len(union), 1),
        "shared": shared,
        "median_offset_deg": math.nan,
        "max_offset_deg": math.nan,
        "common_offset_deg": math.nan,
    }
    if not shared:
        return result
    period = float(min(a.period or 360.0, b.period or 360.0))
    diff = torch.tensor([a.values[u] - b.values[u] for u in shared], dtype=torch.float64)
    k = 2 * math.pi / period
    common = float(torch.angle(torch.polar(torch.ones_like(diff), k * diff).mean()) / k)
    residual = circular_difference(diff - common, period).abs()
    result.update(
        median_offset_deg=float(residual.median()),
        max_offset_deg=float(residual.max()),
        common_offset_deg=common % period,
    )
    return result


def best_match(family: Family, candidates: list[Family]) -> Family | None:
    """The candidate sharing the most members with ``family`` (None when none shares any)."""
    scored = [(len(set(family.members) & set(c.members)), c) for c in candidates]
    scored = [s for s in scored if s[0] > 0]
    return max(scored, key=lambda s: s[0])[1] if scored else None


def weights_vs_tuning(
    model: nn.Module,
    layer: str,
    *,
    source: str | None = None,
    threshold: float | None = None,
    pair_threshold: float | None = None,
    steps: int = 72,
    detectors=None,
    alpha: float = ALPHA,
    **kwargs,
) -> dict:
    """Do the weights and the tuning curves agree about a layer's curve detectors?

    Tuning side: :func:`circuits_vision.analysis.tuning.find_curve_detectors` (or ``detectors``, its
    result), units with a preferred orientation. Weights side: the kernels of the whole layer (from
    ``source``; the input by default) searched for rotation families with :func:`report` at its default
    rule (pairs and families at false-discovery rate ``alpha``); ``threshold``: a fixed cosine instead.
    ``kwargs`` go to :func:`report` (``null_units``, ``seed``, ...).

    Returns a dict:
        ``jaccard``: Jaccard of the curve detectors and the weight family sharing most of them;
        ``pair_median_error_deg``: over all detector pairs, median |best rotation angle between their
        kernels - difference of their preferred orientations| (both counter-clockwise, so no convention
        flip is needed; only differences are compared, so no offset either);
        ``pair_null_median_deg``: the same with the preferred orientations shuffled (mean of 50 shuffles,
        seed 0): what no agreement looks like (about 90);
        ``strong_pairs``, ``strong_pair_median_error_deg``: detector pairs whose kernels match significantly
        (pair q < ``alpha`` against the weights' structure null), or at >= ``pair_threshold`` when given;
        plus ``detectors`` (unit -> preferred orientation), ``family`` (the weight family or None), ``report``.
    """
    from circuits_vision.analysis.tuning import find_curve_detectors

    search = detectors or find_curve_detectors(model, layer)
    units = search.units
    pref = torch.tensor([d.preferred_orientation for d in search.detectors], dtype=torch.float64)
    whole = report(model, layer, source=source, threshold=threshold, alpha=alpha, steps=steps, **kwargs)
    out = {
        "detectors": dict(zip(units, pref.tolist())),
        "report": whole,
        "family": None,
        "jaccard": 0.0,
        "pair_median_error_deg": math.nan,
        "pair_null_median_deg": math.nan,
        "strong_pairs": 0,
        "strong_pair_median_error_deg": math.nan,
    }
    if len(units) < 2 or whole.similarity is None:
        return out
    family = best_match(Family("rotation", units, {}, units[0], 360.0, 0.0), whole.families)
    if family is not None:
        out["family"] = family
        out["jaccard"] = len(set(units) & set(family.members)) / len(set(units) | set(family.members))
    rows = torch.tensor([whole.units.index(u) for u in units])
    sub = whole.similarity[:, rows][:, :, rows].double()
    best, angle = best_parameters(sub, whole.parameters.double(), 360.0)
    off = ~torch.eye(len(units), dtype=torch.bool)

    def median_error(p: torch.Tensor, mask: torch.Tensor) -> float:
        return float(circular_difference(angle - (p[None, :] - p[:, None]), 360.0).abs()[mask].median())

    generator = torch.Generator().manual_seed(0)
    nulls = [median_error(pref[torch.randperm(len(pref), generator=generator)], off) for _ in range(50)]
    if pair_threshold is not None:
        strong = off & (best >= pair_threshold)
    elif whole.q_values is not None:
        strong = off & (whole.q_values[rows][:, rows] < alpha)
    else:  # no null was drawn (null=None needs a threshold): the report's own cosine
        strong = off & (best >= whole.settings.threshold)
    out.update(
        pair_median_error_deg=median_error(pref, off),
        pair_null_median_deg=sum(nulls) / len(nulls),
        strong_pairs=int(strong.sum()) // 2,
        strong_pair_median_error_deg=median_error(pref, strong) if bool(strong.any()) else math.nan,
    )
    return out


@dataclass
class ViewAgreement:
    """How two views of one layer agree: membership Jaccard and orientation error against shuffled angles.

    Attributes:
        a, b: the two views ("weights", "tuning", "visualization").
        jaccard: |units in a family in both| / |units in a family in either|.
        shared: units in a family in both views.
        median_error_deg: over pairs of shared units that share a family in both views, the median
            |(angle difference in a) - (angle difference in b)| (circular; no common offset needed).
        shuffled_median_deg: the same with b's angles permuted among the shared units (mean over shuffles).
        p_value: fraction of shuffles (with the observation) whose median error is <= the observed one.
    """

    a: str
    b: str
    jaccard: float
    shared: list[int]
    median_error_deg: float
    shuffled_median_deg: float
    p_value: float


@dataclass
class AgreementResult(Result):
    """Families of one layer from several views side by side, and their pairwise agreement."""

    layer: str
    views: dict[str, EquivarianceResult]
    agreements: list[ViewAgreement]

    def membership(self, unit: int) -> dict[str, tuple[int, float] | None]:
        """Per view, ``(family number, angle)`` of ``unit`` or None."""
        out = {}
        for name, result in self.views.items():
            fam = result.family_of(unit)
            out[name] = None if fam is None else (result.families.index(fam), fam.values[unit])
        return out

    def table(self) -> list[dict]:
        """One row per unit that some view puts in a family: per view its family and angle."""
        units = sorted({u for r in self.views.values() for f in r.families for u in f.members})
        rows = []
        for unit in units:
            row = {"unit": unit}
            for name, found in self.membership(unit).items():
                row[f"{name}_family"] = None if found is None else found[0]
                row[f"{name}_angle"] = None if found is None else found[1]
            rows.append(row)
        return rows

    def __str__(self) -> str:
        lines = [f"families of {self.layer} from {', '.join(self.views)}:"]
        for name, result in self.views.items():
            sizes = [len(f) for f in result.families]
            lines.append(f"  {name}: {len(sizes)} families {sizes}" + ("" if sizes else f" ({result.explanation})"))
        for ag in self.agreements:
            lines.append(
                f"  {ag.a} vs {ag.b}: Jaccard {ag.jaccard:.2f} ({len(ag.shared)} shared), median orientation "
                f"error {ag.median_error_deg:.1f} deg vs {ag.shuffled_median_deg:.1f} shuffled (p={ag.p_value:.3g})"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"AgreementResult(layer={self.layer!r}, views={list(self.views)})"


def views(
    model: nn.Module,
    layer: str,
    *,
    source: str | None = None,
    which: tuple[str, ...] = ("weights", "tuning"),
    results: dict[str, EquivarianceResult] | None = None,
    shuffles: int = 200,
    seed: int = 0,
    **kwargs,
) -> AgreementResult:
    """Rotation families of ``layer`` from each view in ``which`` ("weights", "tuning", "visualization"),
    side by side with their pairwise agreement.

    ``results``: views already computed (by name); the others run :func:`report` with ``kwargs``
    (``source`` for the weights view; ``images`` / ``render_kwargs`` for the visualization view).
    """
    known = ("weights", "tuning", "visualization")
    bad = [w for w in which if w not in known]
    if bad or len(which) < 2:
        raise ValueError(f"which must name >= 2 of {known}, got {which!r}")
    found = dict(results or {})
    for name in which:
        if name not in found:
            options = dict(kwargs)
            if name != "visualization":
                options.pop("images", None)
                options.pop("render_kwargs", None)
            found[name] = report(model, layer, source=source if name == "weights" else None, method=name, **options)
    generator = torch.Generator().manual_seed(seed)
    names = list(which)
    agreements = [
        agree(found[a], found[b], a, b, shuffles=shuffles, generator=generator)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    return AgreementResult(layer, {n: found[n] for n in names}, agreements)


def agree(
    first: EquivarianceResult,
    second: EquivarianceResult,
    a: str = "a",
    b: str = "b",
    *,
    shuffles: int = 200,
    generator: torch.Generator | None = None,
) -> ViewAgreement:
    """Agreement of two detections of one layer (see :class:`ViewAgreement`)."""
    generator = generator or torch.Generator().manual_seed(0)
    in_a = {u: f for f in first.families for u in f.members}
    in_b = {u: f for f in second.families for u in f.members}
    shared = sorted(set(in_a) & set(in_b))
    union = set(in_a) | set(in_b)
    jaccard = len(shared) / len(union) if union else 0.0
    pairs = [(u, v) for i, u in enumerate(shared) for v in shared[i + 1 :] if in_a[u] is in_a[v] and in_b[u] is in_b[v]]
    if not pairs:
        return ViewAgreement(a, b, jaccard, shared, math.nan, math.nan, math.nan)
    ua = torch.tensor([in_a[u].values[u] - in_a[v].values[v] for u, v in pairs], dtype=torch.float64)
    angle_b = {u: in_b[u].values[u] for u in shared}

    def median_error(lookup: dict[int, float]) -> float:
        ub = torch.tensor([lookup[u] - lookup[v] for u, v in pairs], dtype=torch.float64)
        return float(circular_difference(ua - ub, 360.0).abs().median())

    observed = median_error(angle_b)
    nulls = []
    for _ in range(shuffles):
        order = torch.randperm(len(shared), generator=generator).tolist()
        nulls.append(median_error({u: angle_b[shared[k]] for u, k in zip(shared, order)}))
    null = torch.tensor(nulls)
    p = float((1 + (null <= observed + 1e-12).sum()) / (1 + shuffles))
    return ViewAgreement(a, b, jaccard, shared, observed, float(null.mean()), p)
