"""Feature families: units that are rotated, hue-shifted, mirrored or rescaled copies of each other.

"Naturally Occurring Equivariance in Neural Networks" (Olah et al., Distill 2020) finds curve
detectors at many orientations, colour detectors at many hues and left/right mirror pairs by eye.
This module finds them automatically, for every pair of units of a layer at once:

- **rotation** (:func:`rotation_families`): rotate every unit's kernel by every angle (one batched
  bilinear resampling) and compare all pairs (one matrix product per angle). Kernels come from the
  expanded weights to an earlier layer (``source``; the RGB input when ``source=None``), from feature
  visualizations (``method="visualization"``, images rotated and compared) or from orientation
  tuning curves (:func:`families_from_tuning`: circular cross-correlation of the curves).
- **hue** (:func:`hue_families`): the input colour space rotated around the grey axis.
- **reflection** (:func:`reflection_pairs`): kernels flipped left/right.
- **scale** (:func:`scale_families`): the same pattern resampled at growing size.

:func:`report` runs one of them and returns an :class:`EquivarianceReport` (a table of families,
members, their angle / hue / scale, scores; the units equal to all their own rotations; an
explanation when nothing is found). Angles are degrees counter-clockwise with y up, as in
:mod:`circuits_vision.stimuli`; a member's angle is relative to its family's reference member.

Which evidence to trust: the weights give exact, cheap answers (one matrix product per angle); tuning
curves need only forward passes; feature visualizations are the noisiest: on the planted curve family,
64-step renders of the centre neurons reach only ~0.6 similarity after rotation while renders of the
random control reach ~0.7, so that method needs long renders and a threshold chosen per model.

Default thresholds (cosine similarities) and why: ``ROTATION_THRESHOLD = 0.8``: the planted rotated
copies score >= 0.99 after bilinear rotation, while the most similar pair of random He-initialised
kernels, at its best angle, measured 0.41 (planted random control, 3 seeds; 0.40 for scale, 0.30 for
hue) and 0.23 (random InceptionV1 mixed3b from mixed3a); ``INVARIANT_THRESHOLD = 0.9`` at every angle;
``REFLECTION_THRESHOLD = 0.8``; ``MIN_MEMBERS = 3``. The tests hold both sides. Trained networks
make imperfect copies: on the shipped ``shapes`` model nothing reaches 0.8, so pass a lower
``threshold`` there (and read the scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits_vision.analysis import _equivariance_transforms as T
from circuits_vision.analysis._arguments import check_family_search
from circuits_vision.analysis._equivariance_agreement import best_match, compare_families
from circuits_vision.analysis._equivariance_grouping import Family, best_parameters, circular_difference, group_families
from circuits_vision.analysis._equivariance_kernels import (
    family_gather,
    unit_kernels,
    validate_units,
)

__all__ = [
    "EquivarianceReport",
    "Family",
    "INVARIANT_THRESHOLD",
    "MIN_MEMBERS",
    "REFLECTION_THRESHOLD",
    "ROTATION_THRESHOLD",
    "ReflectionPair",
    "compare_families",
    "families_from_kernels",
    "families_from_tuning",
    "hue_families",
    "orientation_error",
    "orientation_tuning",
    "reflection_pairs",
    "reflection_pairs_from_kernels",
    "report",
    "rotation_families",
    "scale_families",
    "unit_kernels",
    "weights_vs_tuning",
]

ROTATION_THRESHOLD = 0.8
INVARIANT_THRESHOLD = 0.9
REFLECTION_THRESHOLD = 0.8
MIN_MEMBERS = 3
KINDS = ("rotation", "hue", "scale", "reflection")


@dataclass
class ReflectionPair:
    """Unit ``b`` is unit ``a`` mirrored left/right, with cosine ``similarity``."""

    a: int
    b: int
    similarity: float


@dataclass
class EquivarianceReport:
    """What :func:`report` found in one layer.

    Attributes:
        kind: "rotation", "hue", "scale" or "reflection".
        families: the families, largest first (empty for "reflection").
        pairs: mirror pairs (only for "reflection").
        invariant: units equal to their own transformation at every parameter (rotation-invariant
            centre-surround units, grey units for hue, self-symmetric units for reflection).
        explanation: why the result is empty, or notes on groups that were rejected.
        similarity: ``[P, N, N]`` similarity after transformation (``None`` for reflection / when empty).
        parameters: ``[P]`` the angles / hues / log2 scales searched.
        units: the unit indices the rows of ``similarity`` refer to.
        thresholds: the thresholds used.
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
    thresholds: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.families or self.pairs or self.invariant)

    def family_of(self, unit: int) -> Family | None:
        return next((f for f in self.families if unit in f.members), None)

    def table(self) -> list[dict]:
        """One row per family member (or per mirror pair): family, unit, value, period, score, confidence."""
        rows = []
        for number, fam in enumerate(self.families):
            for unit in fam.members:
                rows.append({"family": number, "unit": unit, "kind": fam.kind, "value": fam.values[unit],
                             "period": fam.period, "score": round(fam.score, 4), "confidence": fam.confidence.get(unit)})
        for number, pair in enumerate(self.pairs):
            rows.append({"family": number, "unit": pair.a, "kind": "reflection", "value": 0.0, "period": None,
                         "score": round(pair.similarity, 4), "confidence": None})
            rows.append({"family": number, "unit": pair.b, "kind": "reflection", "value": 180.0, "period": None,
                         "score": round(pair.similarity, 4), "confidence": None})
        return rows

    def __str__(self) -> str:
        where = f"{self.layer or 'units'}" + (f" (kernels from {self.source})" if self.source else "")
        lines = [f"{self.kind} equivariance in {where}, method={self.method}:"]
        for number, fam in enumerate(self.families):
            unit = "log2 scale" if fam.kind == "scale" else "deg"
            values = ", ".join(f"{u}@{fam.values[u]:.1f}" for u in fam.members)
            lines.append(f"  family {number}: {len(fam)} units, score {fam.score:.3f}, period {fam.period}, "
                         f"{unit}: {values}")
        for pair in self.pairs:
            lines.append(f"  mirror pair {pair.a} <-> {pair.b} (similarity {pair.similarity:.3f})")
        if self.invariant:
            lines.append(f"  invariant units: {self.invariant}")
        if self.explanation:
            lines.append(f"  note: {self.explanation}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Tensor-level detectors


def default_parameters(kind: str, steps: int | None, like: torch.Tensor) -> torch.Tensor:
    """Angles ``[0, 360)`` in ``steps`` (default 72: 5 degrees), or log2 scales in ``[-1, 1]`` (default 9)."""
    if kind == "scale":
        steps = steps or 9
        return torch.linspace(-1.0, 1.0, steps, dtype=like.dtype, device=like.device)
    steps = steps or 72
    return torch.arange(steps, dtype=like.dtype, device=like.device) * (360.0 / steps)


def families_from_kernels(
    kernels: torch.Tensor,
    kind: str = "rotation",
    *,
    steps: int | None = None,
    threshold: float = ROTATION_THRESHOLD,
    invariant_threshold: float = INVARIANT_THRESHOLD,
    min_members: int = MIN_MEMBERS,
    units: list[int] | None = None,
    gather=None,
    center: bool = False,
) -> EquivarianceReport:
    """Families among units given their kernels (or feature visualizations) ``[N, C, S, S]``.

    Args:
        kind: "rotation", "hue" (needs ``C == 3``) or "scale".
        steps: number of angles in [0, 360) (default 72) or of log2 scales in [-1, 1] (default 9).
        threshold: average pairwise similarity at the best transformation a family needs.
        invariant_threshold: units whose similarity to their own transformation stays above this at
            every parameter are reported as invariant and kept out of families.
        units: the unit index of each row (default ``0..N-1``).
        gather: ``parameter -> [C] long`` input-channel permutation applied with each transformation
            (see :func:`circuits_vision.analysis._equivariance_kernels.family_gather`).
        center: subtract each image's mean colour first (for feature visualizations).
    """
    if kind not in ("rotation", "hue", "scale"):
        raise ValueError(f"kind must be 'rotation', 'hue' or 'scale' here (reflection: reflection_pairs_from_kernels), got {kind!r}")
    units = list(range(kernels.shape[0])) if units is None else list(units)
    result = EquivarianceReport(kind, None, None, "kernels", units=units,
                                thresholds={"threshold": threshold, "invariant_threshold": invariant_threshold,
                                            "min_members": min_members})
    problem = _kernel_problem(kernels, kind, min_members)
    if problem:
        result.explanation = problem
        return result
    if center:
        kernels = kernels - kernels.mean(dim=(-2, -1), keepdim=True)
    params = default_parameters(kind, steps, kernels)
    transform = {"rotation": T.rotate, "hue": T.hue_rotate, "scale": T.zoom}[kind]
    mask = T.disk_mask(kernels.shape[-1], kernels) if kind in ("rotation", "scale") else None
    sim = T.transform_similarity(kernels, params, transform, mask=mask, gather=gather,
                                 period=None if kind == "scale" else 360.0)
    skip = _dead(kernels)
    if kind in ("rotation", "scale"):
        trivial = _spatially_trivial(kernels) & ~skip
        skip = skip | trivial
        if bool(trivial.any()):
            result.thresholds["spatially_trivial"] = [units[i] for i in trivial.nonzero().flatten().tolist()]
    return _finish(result, sim, params, kind, threshold, invariant_threshold, min_members, zero=skip)


def families_from_tuning(
    curves: torch.Tensor,
    *,
    threshold: float = ROTATION_THRESHOLD,
    min_modulation: float = 0.2,
    min_members: int = MIN_MEMBERS,
    units: list[int] | None = None,
) -> EquivarianceReport:
    """Rotation families from orientation tuning curves ``[N, A]`` (responses at ``k * 360 / A`` degrees).

    ``S[s, i, j]`` is the Pearson correlation of unit ``i``'s curve shifted by ``s`` steps with unit
    ``j``'s: all shifts of all pairs come from one FFT (circular cross-correlation), so the best shift
    is ``j``'s preferred orientation minus ``i``'s. Units whose curve is flat (max - min below
    ``min_modulation`` of the max) respond at every orientation: they are reported as invariant; units
    that never respond are left out.
    """
    if curves.ndim != 2 or curves.shape[1] < 4:
        raise ValueError(f"tuning curves must be [units, orientations] with >= 4 orientations, got {tuple(curves.shape)}")
    units = list(range(curves.shape[0])) if units is None else list(units)
    result = EquivarianceReport("rotation", None, None, "tuning", units=units,
                                thresholds={"threshold": threshold, "min_modulation": min_modulation,
                                            "min_members": min_members})
    if curves.shape[0] < min_members:
        result.explanation = f"only {curves.shape[0]} units; a family needs at least {min_members}"
        return result
    curves = curves.double()
    peak = curves.max(1).values
    depth = (peak - curves.min(1).values) / peak.abs().clamp_min(1e-12)
    silent = peak <= 1e-9
    flat = ~silent & (depth < min_modulation)
    z = curves - curves.mean(1, keepdim=True)
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    spectrum = torch.fft.rfft(z, dim=1)
    cross = torch.fft.irfft(spectrum.conj()[:, None, :] * spectrum[None, :, :], n=curves.shape[1], dim=2)
    sim = cross.permute(2, 0, 1).contiguous()  # [A, N, N]: sum_t z_i(t) z_j(t + s)
    params = torch.arange(curves.shape[1], dtype=torch.float64) * (360.0 / curves.shape[1])
    families, look_alike = group_families(sim, params, kind="rotation", circular=True, threshold=threshold,
                                     min_members=min_members, exclude=silent | flat, min_spread=360.0 / curves.shape[1])
    result.families = _relabel(families, units)
    result.invariant = [units[i] for i in flat.nonzero().flatten().tolist()]
    result.similarity, result.parameters = sim, params
    result.explanation = _explain(result, look_alike, threshold)
    return result


def reflection_pairs_from_kernels(
    kernels: torch.Tensor,
    *,
    threshold: float = REFLECTION_THRESHOLD,
    units: list[int] | None = None,
    gather=None,
) -> EquivarianceReport:
    """Left/right mirror pairs among units with kernels ``[N, C, S, S]``.

    ``M[i, j] = cos(flip(W_i), W_j)``. A pair is reported when ``i`` and ``j`` are each other's best
    mirror match, ``M[i, j] >= threshold``, and the pair fits better than either unit fits its own mirror
    image (a symmetric unit is its own mirror; it is listed in ``invariant``). ``gather``: ``[C] long``
    input-channel map of a mirror of the source layer, when the source layer has mirror pairs itself.
    """
    units = list(range(kernels.shape[0])) if units is None else list(units)
    result = EquivarianceReport("reflection", None, None, "kernels", units=units, thresholds={"threshold": threshold})
    problem = _kernel_problem(kernels, "reflection", 2)
    if problem:
        result.explanation = problem
        return result
    flipped = kernels.flip(-1) if gather is None else kernels.flip(-1)[:, gather]
    m = T.normalised_flat(flipped, None) @ T.normalised_flat(kernels, None).T
    m = (m + m.T) / 2
    self_mirror = m.diagonal().clone()
    dead = _dead(kernels)
    other = m.clone()
    other.fill_diagonal_(-2.0)
    other[dead] = -2.0
    other[:, dead] = -2.0
    best = other.argmax(1)
    for i in range(len(units)):
        j = int(best[i])
        if i < j and int(best[j]) == i and float(m[i, j]) >= threshold and float(m[i, j]) > max(self_mirror[i], self_mirror[j]):
            result.pairs.append(ReflectionPair(units[i], units[j], round(float(m[i, j]), 4)))
    result.invariant = [units[i] for i in range(len(units)) if not dead[i] and float(self_mirror[i]) >= threshold
                        and not any(units[i] in (p.a, p.b) for p in result.pairs)]
    result.similarity = m[None]
    if not result.pairs:
        result.explanation = f"no two units are mirror images of each other with similarity >= {threshold}"
    return result


# --------------------------------------------------------------------------------------------------
# Model-level entry points


def rotation_families(model: nn.Module, layer: str, *, source: str | None = None, method: str = "weights", **kwargs) -> EquivarianceReport:
    """Rotation families of ``layer`` (see :func:`report`)."""
    return report(model, layer, source=source, kind="rotation", method=method, **kwargs)


def hue_families(model: nn.Module, layer: str, **kwargs) -> EquivarianceReport:
    """Hue families of ``layer`` from its expanded weights to the RGB input (see :func:`report`)."""
    return report(model, layer, source=None, kind="hue", **kwargs)


def scale_families(model: nn.Module, layer: str, *, source: str | None = None, **kwargs) -> EquivarianceReport:
    """Scale families of ``layer`` (see :func:`report`)."""
    return report(model, layer, source=source, kind="scale", **kwargs)


def reflection_pairs(model: nn.Module, layer: str, *, source: str | None = None, **kwargs) -> EquivarianceReport:
    """Left/right mirror pairs of ``layer`` (see :func:`report`)."""
    return report(model, layer, source=source, kind="reflection", **kwargs)


def report(
    model: nn.Module,
    layer: str,
    *,
    source: str | None = None,
    kind: str = "rotation",
    method: str = "weights",
    units: list[int] | None = None,
    steps: int | None = None,
    threshold: float | None = None,
    invariant_threshold: float = INVARIANT_THRESHOLD,
    min_members: int = MIN_MEMBERS,
    source_families: list[Family] | str | None = None,
    images: torch.Tensor | None = None,
    render_kwargs: dict | None = None,
) -> EquivarianceReport:
    """Find the ``kind`` families of ``layer``.

    Args:
        kind: "rotation", "hue", "scale" or "reflection".
        method: "tuning" (orientation tuning curves to drawn curves, :func:`orientation_tuning`, compared
            with :func:`families_from_tuning`), "weights" (expanded weights from ``source`` to ``layer``; ``source=None``: to the RGB
            input, through the linearised model) or "visualization" (feature visualizations of every
            unit, rendered with :func:`circuits_vision.optvis.render` unless ``images [N, 3, H, W]`` are
            given). Orientation tuning curves go through :func:`families_from_tuning`.
        units: restrict to these unit indices (default: all units of the layer).
        steps: angles in [0, 360) searched (default 72) / log2 scales in [-1, 1] (default 9).
        threshold: family threshold (default :data:`ROTATION_THRESHOLD`, :data:`REFLECTION_THRESHOLD`).
        source_families: rotation families of ``source`` (from a report on it): rotating a unit then
            also moves its inputs from each member of those families to the member rotated by the same
            angle. Needed when ``source`` is not the input and holds oriented units (edges -> curves).
            ``"auto"``: find them first (rotation families of ``source``, kernels from the input).
    Returns:
        An :class:`EquivarianceReport`; empty with an ``explanation`` when the layer has no spatial
        extent, too few units, or nothing above threshold.
    Raises:
        UnknownLayerError (unknown layer), IndexError (unit out of range), ValueError (bad kind/method).
    """
    check_family_search(threshold=threshold, invariant_threshold=invariant_threshold, min_members=min_members,
                        units=units, steps=steps)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if method not in ("weights", "visualization", "tuning"):
        raise ValueError(f"method must be 'weights', 'visualization' or 'tuning', got {method!r}")
    if method == "tuning" and kind != "rotation":
        raise ValueError("method='tuning' finds rotation families (orientation tuning curves); use method='weights'")
    if kind == "hue" and source is not None:
        raise ValueError("hue families rotate the RGB input's colours: use source=None (expanded weights to the input)")
    unit_list = validate_units(model, layer, units)
    if method == "tuning":
        curves = orientation_tuning(model, layer, unit_list, steps=steps or 72)
        result = families_from_tuning(curves, threshold=ROTATION_THRESHOLD if threshold is None else threshold, min_members=min_members,
                                      units=unit_list)
        result.layer, result.method = layer, "tuning"
        return result
    if method == "visualization":
        kernels = _visualizations(model, layer, unit_list, images, render_kwargs or {})
        source_name, gather = None, None
    else:
        kernels = unit_kernels(model, layer, source, units=unit_list)
        source_name = source or "input"
        if isinstance(source_families, str):
            if source_families != "auto":
                raise ValueError(f"source_families must be a list of families, 'auto' or None, got {source_families!r}")
            source_families = report(model, source, kind="rotation").families if source is not None else None
        gather = family_gather(source_families, kernels.shape[1], kernels) if source_families else None
    if kind == "reflection":
        result = reflection_pairs_from_kernels(kernels, threshold=REFLECTION_THRESHOLD if threshold is None else threshold, units=unit_list)
    else:
        result = families_from_kernels(
            kernels, kind, steps=steps, threshold=ROTATION_THRESHOLD if threshold is None else threshold, invariant_threshold=invariant_threshold,
            min_members=min_members, units=unit_list, gather=gather, center=method == "visualization",
        )
    result.layer, result.source, result.method = layer, source_name, method
    return result


def weights_vs_tuning(model: nn.Module, layer: str, *, source: str | None = None, threshold: float = 0.5,
                      pair_threshold: float = 0.5, steps: int = 72, detectors=None) -> dict:
    """Do the weights and the tuning curves agree about a layer's curve detectors?

    Tuning side: :func:`circuits_vision.analysis.tuning.find_curve_detectors` (or ``detectors``, its
    result), units with a preferred orientation. Weights side: the kernels of the whole layer (from
    ``source``; the input by default) searched for rotation families at ``threshold``.

    Returns a dict:
        ``jaccard``: Jaccard of the curve detectors and the weight family sharing most of them;
        ``pair_median_error_deg``: over all detector pairs, median |best rotation angle between their
        kernels - difference of their preferred orientations| (both counter-clockwise, so no convention
        flip is needed; only differences are compared, so no offset either);
        ``pair_null_median_deg``: the same with the preferred orientations shuffled (mean of 50 shuffles,
        seed 0): what no agreement looks like (about 90);
        ``strong_pairs``, ``strong_pair_median_error_deg``: pairs whose kernels match at >= ``pair_threshold``;
        plus ``detectors`` (unit -> preferred orientation), ``family`` (the weight family or None), ``report``.
    """
    from circuits_vision.analysis.tuning import find_curve_detectors

    search = detectors or find_curve_detectors(model, layer)
    units = search.units
    pref = torch.tensor([d.preferred_orientation for d in search.detectors], dtype=torch.float64)
    whole = report(model, layer, source=source, threshold=threshold, steps=steps)
    out = {"detectors": dict(zip(units, pref.tolist())), "report": whole, "family": None, "jaccard": 0.0,
           "pair_median_error_deg": math.nan, "pair_null_median_deg": math.nan, "strong_pairs": 0,
           "strong_pair_median_error_deg": math.nan}
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
    strong = off & (best >= pair_threshold)
    out.update(pair_median_error_deg=median_error(pref, off), pair_null_median_deg=sum(nulls) / len(nulls),
               strong_pairs=int(strong.sum()) // 2,
               strong_pair_median_error_deg=median_error(pref, strong) if bool(strong.any()) else math.nan)
    return out


def orientation_tuning(model: nn.Module, layer: str, units: list[int], *, steps: int = 72, radius: float | None = None,
                       thickness: float | None = None) -> torch.Tensor:
    """Responses ``[len(units), steps]`` of the units (centre position) to curves facing ``k * 360 / steps``.

    Stimuli: :func:`circuits_vision.stimuli.curves`, black on white, centred on the layer's receptive
    field, radius ``input_size / 6`` and thickness ``input_size / 16`` unless given.
    """
    from circuits_vision import stimuli
    from circuits_vision.analysis.tuning import tuning_curves

    size = getattr(model, "input_size", 224)
    fixed = {"radius": radius or size / 6, "thickness": thickness or max(size / 16, 1.0)}
    angles = torch.arange(steps, dtype=torch.float32) * (360.0 / steps)
    ones = torch.ones(len(units))
    curves = tuning_curves(model, layer, units, stimuli.curves, {"orientation": angles}, fixed=fixed,
                           baseline=(torch.zeros_like(ones), ones))
    return curves.orientation_curve()


# --------------------------------------------------------------------------------------------------
# Helpers


def _kernel_problem(kernels: torch.Tensor, kind: str, min_members: int) -> str:
    """Why these kernels cannot hold a ``kind`` family, or "" when they can."""
    if kernels.ndim != 4 or kernels.shape[-1] != kernels.shape[-2]:
        raise ValueError(f"kernels must be [N, C, S, S] (square), got {tuple(kernels.shape)}")
    n, c, s, _ = kernels.shape
    if kind in ("rotation", "scale", "reflection") and s < 3:
        return (f"the kernels are {s}x{s}: a layer with no spatial extent has no {kind} structure; "
                "use an earlier source layer (or source=None for the input) so the kernels span space")
    if kind == "hue" and c != 3:
        return f"hue families need kernels on the RGB input (3 channels), these have {c}"
    if n < min_members:
        return f"only {n} units; a family needs at least {min_members}"
    return ""


def _dead(kernels: torch.Tensor) -> torch.Tensor:
    norms = kernels.flatten(1).norm(dim=1)
    return norms <= 1e-6 * norms.max().clamp_min(1e-30)


def _spatially_trivial(kernels: torch.Tensor, tolerance: float = 0.01) -> torch.Tensor:
    """[N] bool: kernels without spatial structure: (almost) all energy in the centre pixel, or every channel
    constant over the kernel's footprint (a 1x1 branch, or a 1x1 conv after an average/max pool, seen from
    the layer right before it). Such a kernel is trivially its own rotation: calling it "invariant" would
    say nothing about what the unit detects.
    """
    size = kernels.shape[-1]
    energy = kernels.pow(2).sum(1)  # [N, S, S]
    total = energy.sum((1, 2)).clamp_min(1e-30)
    c0, c1 = (size - 1) // 2, size // 2
    centre = energy[:, c0 : c1 + 1, c0 : c1 + 1].sum((1, 2))
    point = (total - centre) < tolerance * total
    support = (energy > 1e-6 * energy.flatten(1).max(1).values[:, None, None]).to(kernels.dtype)[:, None]  # [N, 1, S, S]
    count = support.sum((2, 3), keepdim=True).clamp_min(1)
    mean = (kernels * support).sum((2, 3), keepdim=True) / count
    spread = ((kernels - mean) * support).pow(2).sum((1, 2, 3))
    uniform = spread < tolerance**2 * total
    return point | uniform


def _finish(result, sim, params, kind, threshold, invariant_threshold, min_members, zero) -> EquivarianceReport:
    self_sim = sim.diagonal(dim1=1, dim2=2)  # [P, N]
    invariant = ~zero & (self_sim.min(0).values >= invariant_threshold)
    circular = kind in ("rotation", "hue")
    step = float(params[1] - params[0]) if len(params) > 1 else 1.0
    families, look_alike = group_families(sim, params, kind=kind, circular=circular, threshold=threshold,
                                     min_members=min_members, exclude=invariant | zero, min_spread=1.5 * step)
    result.families = _relabel(families, result.units)
    result.invariant = [result.units[i] for i in invariant.nonzero().flatten().tolist()]
    result.similarity, result.parameters = sim, params
    result.explanation = _explain(result, look_alike, threshold)
    trivial = result.thresholds.get("spatially_trivial")
    if trivial:
        note = (f"{len(trivial)} units have kernels confined to the central 3x3 (e.g. 1x1 or pooling branches), so "
                f"rotation says nothing about them; they are left out (an earlier source layer would give them extent)")
        result.explanation = f"{result.explanation}; {note}" if result.explanation else note
    return result


def _relabel(families: list[Family], units: list[int]) -> list[Family]:
    """Row indices -> unit indices."""
    for fam in families:
        fam.members = [units[m] for m in fam.members]
        fam.values = {units[m]: v for m, v in fam.values.items()}
        fam.confidence = {units[m]: v for m, v in fam.confidence.items()}
        fam.reference = units[fam.reference]
    return families


def _explain(result: EquivarianceReport, look_alike: list[list[int]], threshold: float) -> str:
    """Why nothing (or less than expected) was found, in unit indices."""
    parts = []
    if not result.families:
        parts.append(f"no group of >= {result.thresholds.get('min_members')} units is similar after {result.kind} "
                     f"at threshold {threshold}")
    if look_alike:
        shown = ", ".join(str([result.units[i] for i in group]) for group in look_alike[:3])
        more = f" and {len(look_alike) - 3} more" if len(look_alike) > 3 else ""
        parts.append(f"{len(look_alike)} groups of look-alike units at one {result.kind} value, not families: {shown}{more}")
    return "; ".join(parts)


def _visualizations(model, layer, units, images, render_kwargs) -> torch.Tensor:
    if images is not None:
        if images.ndim != 4 or images.shape[0] != len(units):
            raise ValueError(f"images must be [len(units)={len(units)}, C, H, W], got {tuple(images.shape)}")
        return images
    from circuits_vision.optvis import objectives, render  # the optimisation is only needed for this method

    # Neuron (centre position) objectives: a channel objective paints a texture at random phases, which
    # no rotation about the centre can align; a neuron's visualization is centred on its receptive field.
    result = render(model, [objectives.neuron(layer, u) for u in units], **render_kwargs)
    return result.images


def orientation_error(found: dict[int, float], truth: dict[int, float], period: float = 360.0) -> float:
    """Largest |found - truth| over shared units after removing the best common offset (degrees, circular)."""
    shared = sorted(set(found) & set(truth))
    if not shared:
        raise ValueError("no unit is in both orientation maps")
    diff = torch.tensor([found[u] - truth[u] for u in shared], dtype=torch.float64)
    k = 2 * math.pi / period
    offset = torch.angle(torch.polar(torch.ones_like(diff), k * diff).mean()) / k
    return float(circular_difference(diff - offset, period).abs().max())
