"""Tensor-level detectors: families among kernels or tuning curves, mirror pairs, each calibrated against a null.

The pipeline, for ``S [P, N, N]`` (similarity of unit ``j`` to unit ``i`` transformed by parameter ``p``):

1. pair statistic: ``best[i, j] = max_p S[p, i, j]`` (symmetrised);
2. structure null: the same statistic among surrogates of the kernels (:mod:`.null`), compared with
   pairs of the same kernel footprint; permutation p-values (the far tail a fitted
   generalized Pareto distribution, :func:`.null.tail_p_values`), Benjamini-Hochberg q-values over all pairs;
3. candidate groups: average-linkage clusters of the graph of significant pairs (or of ``1 - best``
   cut at ``1 - threshold`` when a cosine threshold is given);
4. each group's members get angles by angular synchronisation; the group is a family when its values
   spread over ``min_span`` and hold >= 3 values pairwise a twelfth of the period apart (otherwise:
   look-alike units) and the shuffled-angle test (members given random angles fit each other worse
   than at their own) has q < ``alpha`` over the candidates.
"""

from __future__ import annotations

import math

import torch

from circuits_vision.analysis.equivariance import null as N
from circuits_vision.analysis.equivariance import transforms as T
from circuits_vision.analysis.equivariance._grouping import best_parameters, distinct_values, group_families, span
from circuits_vision.analysis.equivariance._result import (
    EquivarianceResult,
    Family,
    NullSummary,
    Settings,
)

ALPHA = 0.05
INVARIANT_THRESHOLD = 0.9
REFLECTION_THRESHOLD = 0.8
MIN_MEMBERS = 3
MIN_NULL_UNITS = 64
FINE_SHIFTS = 144  # tuning curves are compared at shifts of at most 360 / 144 = 2.5 deg
KINDS = ("rotation", "hue", "scale", "reflection")


def default_parameters(kind: str, steps: int | None, like: torch.Tensor) -> torch.Tensor:
    """Angles ``[0, 360)`` in ``steps`` (default 72: 5 degrees), or log2 scales in ``[-1, 1]`` (default 9)."""
    if kind == "scale":
        steps = steps or 9
        return torch.linspace(-1.0, 1.0, steps, dtype=like.dtype, device=like.device)
    steps = steps or 72
    return torch.arange(steps, dtype=like.dtype, device=like.device) * (360.0 / steps)


def default_span(kind: str, parameters: torch.Tensor) -> float:
    """Smallest spread of a family's values: a quarter turn for angles, 1.5 steps for scales."""
    if kind == "scale":
        return 1.5 * float(parameters[1] - parameters[0]) if len(parameters) > 1 else 0.0
    return 90.0


def _settings(
    alpha, threshold, invariant_threshold, min_members, min_span, null, null_units, angle_draws, seed, steps
) -> Settings:
    if threshold is None and not 0 < alpha < 1:
        raise ValueError(f"alpha is a false-discovery rate in (0, 1), got {alpha!r}")
    if threshold is not None and not -1 <= threshold <= 1:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold!r}")
    if int(min_members) < 2:
        raise ValueError(f"min_members must be >= 2, got {min_members!r}")
    if null not in ("scramble", "shuffle", None):
        raise ValueError(
            f"null must be 'scramble' (phase-randomised kernels), 'shuffle' (kernel-to-unit per channel) "
            f"or None (no null: thresholds only), got {null!r}"
        )
    if null is None and threshold is None:
        raise ValueError(
            "null=None (no calibration) needs a cosine threshold=; the default rule is a false-discovery rate"
        )
    return Settings(
        alpha=alpha,
        threshold=threshold,
        invariant_threshold=invariant_threshold,
        min_members=int(min_members),
        min_span=min_span,
        null=null,
        null_units=int(null_units or 0),
        angle_draws=int(angle_draws),
        seed=int(seed),
        steps=steps,
    )


# --------------------------------------------------------------------------------------------------
# Kernels


def families_from_kernels(
    kernels: torch.Tensor,
    kind: str = "rotation",
    *,
    steps: int | None = None,
    alpha: float = ALPHA,
    threshold: float | None = None,
    invariant_threshold: float = INVARIANT_THRESHOLD,
    min_members: int = MIN_MEMBERS,
    min_span: float | None = None,
    units: list[int] | None = None,
    gather=None,
    null_gather=None,
    center: bool = False,
    null: str = "scramble",
    null_units: int | None = None,
    angle_draws: int = 999,
    seed: int = 0,
) -> EquivarianceResult:
    """Families among units given their kernels (or feature visualizations) ``[N, C, S, S]``.

    Args:
        kind: "rotation", "hue" (needs ``C == 3``) or "scale".
        steps: number of angles in [0, 360) (default 72) or of log2 scales in [-1, 1] (default 9).
        alpha: false-discovery rate of pairs, families and invariant units (the default rule).
        threshold: instead of the pair test, join pairs whose best similarity reaches this cosine.
        invariant_threshold: units whose similarity to their own transformation stays above this at
            every parameter (and significantly above the null's) are invariant, kept out of families.
        min_span: smallest spread of a family's values (default 90 deg; 1.5 steps for scale).
        units: the unit index of each row (default ``0..N-1``).
        gather: ``parameter -> [C] long`` input-channel permutation applied with each transformation
            (see :func:`circuits_vision.analysis.equivariance.family_gather`).
        null_gather: the map the null pairs are compared under (default ``gather``). With ``gather``, the scrambled
            surrogates keep each kernel's weights per input channel at zero frequency, so two units that read the
            source family's channels in a rotated way stay rotated copies after scrambling: a map from shuffled
            source angles breaks that correspondence as well.
        center: subtract each image's mean colour first (for feature visualizations).
        null: "scramble" (default) or "shuffle", see :mod:`circuits_vision.analysis.equivariance.null`;
            None: no null at all (needs ``threshold``; no p-values; families by span only), for timing.
        null_units: surrogate kernels drawn (default ``max(N, 96)``).
        angle_draws: random angle assignments per family in the shuffled-angle test.
        seed: seed of the ``torch.Generator`` behind every random draw.
    """
    if kind not in ("rotation", "hue", "scale"):
        raise ValueError(
            f"kind must be 'rotation', 'hue' or 'scale' here (reflection: reflection_pairs_from_kernels), got {kind!r}"
        )
    kernels = kernels.detach()  # a kernel read straight off a parameter would drag an autograd graph through every step
    units = list(range(kernels.shape[0])) if units is None else list(units)
    settings = _settings(
        alpha, threshold, invariant_threshold, min_members, min_span, null, null_units, angle_draws, seed, steps
    )
    result = EquivarianceResult(kind, None, None, "kernels", units=units, settings=settings)
    problem = kernel_problem(kernels, kind, settings.min_members)
    if problem:
        result.explanation = problem
        return result
    if center:
        kernels = kernels - kernels.mean(dim=(-2, -1), keepdim=True)
    params = default_parameters(kind, steps, kernels)
    settings.steps = len(params)
    if settings.min_span is None:
        settings.min_span = default_span(kind, params)
    transform = {"rotation": T.rotate, "hue": T.hue_rotate, "scale": T.zoom}[kind]
    mask = T.disk_mask(kernels.shape[-1], kernels) if kind in ("rotation", "scale") else None
    period = None if kind == "scale" else 360.0

    def similarity(k: torch.Tensor, channel_map=gather) -> torch.Tensor:
        return T.transform_similarity(k, params, transform, mask=mask, gather=channel_map, period=period)

    sim = similarity(kernels)
    dead = dead_kernels(kernels)
    excluded = {units[i]: "no weights (dead unit)" for i in dead.nonzero().flatten().tolist()}
    skip = dead.clone()
    if kind in ("rotation", "scale"):
        trivial = spatially_trivial(kernels) & ~dead
        if gather is not None and bool(trivial.any()):
            trivial &= ~moved_by_channel_map(kernels, params, transform, mask, gather)
        skip |= trivial
        excluded.update(
            {
                units[i]: "no spatial structure at this source (1x1 or pooled kernel)"
                for i in trivial.nonzero().flatten().tolist()
            }
        )
    result.excluded = excluded
    eligible = (~skip).nonzero().flatten()
    if len(eligible) == 0:
        result.similarity, result.parameters = sim, params
        result.explanation = "no unit has a kernel with spatial structure to compare"
        return result
    generator = torch.Generator().manual_seed(settings.seed)
    strata = footprint(kernels)
    if null is None:
        _calibrate(
            result,
            sim,
            params,
            None,
            strata,
            None,
            eligible,
            None,
            circular=kind != "scale",
            kind=kind,
            generator=generator,
        )
        return result
    count = settings.null_units or max(len(eligible), MIN_NULL_UNITS)
    settings.null_units = count
    sources = N._sources(len(eligible), count, generator)
    draw = N.scramble_kernels if null == "scramble" else N.shuffle_kernels
    surrogates = draw(kernels[eligible], generator, count, sources=sources)
    groups = channel_orbits(gather, params, kernels.shape[1]) if gather is not None else []
    if groups:
        surrogates = N.shuffle_family_channels(surrogates, groups, generator)
    null_sim = similarity(surrogates, null_gather if null_gather is not None else gather)
    # Per-unit invariance is tested against a larger pool (one null value per surrogate, BH over units
    # needs resolution), at every 9th angle at most: a minimum over fewer angles is larger, so conservative.
    coarse = params[:: max(1, len(params) // 8)]
    candidates = int((sim.diagonal(dim1=1, dim2=2).min(0).values[eligible] >= settings.invariant_threshold).sum())
    null_self = None
    if candidates:  # the pool is only needed when some unit could be invariant
        pool = draw(kernels[eligible], generator, self_null_units(len(eligible), settings.alpha, count, candidates))
        if groups:
            pool = N.shuffle_family_channels(pool, groups, generator)
        null_self = T.self_similarity(pool, coarse, transform, mask=mask, gather=gather).min(0).values
    _calibrate(
        result,
        sim,
        params,
        null_sim,
        strata,
        strata[eligible][sources],
        eligible,
        sources,
        circular=kind != "scale",
        kind=kind,
        generator=generator,
        null_self=null_self,
    )
    return result


def self_null_units(n: int, alpha: float, at_least: int, candidates: int = 1) -> int:
    """Surrogates for per-unit tests: enough that ``candidates`` significant units among ``n`` can pass BH at
    ``alpha`` (the smallest p-value, ``1 / (M + 1)``, must be below ``alpha * candidates / n``, with room)."""
    return max(at_least, min(4000, math.ceil(2 * n / (alpha * max(candidates, 1)))))


def kernel_problem(kernels: torch.Tensor, kind: str, min_members: int) -> str:
    """Why these kernels cannot hold a ``kind`` family, or "" when they can."""
    if kernels.ndim != 4 or kernels.shape[-1] != kernels.shape[-2]:
        raise ValueError(f"kernels must be [N, C, S, S] (square), got {tuple(kernels.shape)}")
    n, c, s, _ = kernels.shape
    if kind in ("rotation", "scale", "reflection") and s < 3:
        return (
            f"the kernels are {s}x{s}: a layer with no spatial extent has no {kind} structure; "
            "use an earlier source layer (or source=None for the input) so the kernels span space"
        )
    if kind == "hue" and c != 3:
        return f"hue families need kernels on the RGB input (3 channels), these have {c}"
    if n < min_members:
        return f"only {n} units; a family needs at least {min_members}"
    return ""


def dead_kernels(kernels: torch.Tensor) -> torch.Tensor:
    """[N] bool: kernels with (almost) no weight."""
    norms = kernels.flatten(1).norm(dim=1)
    return norms <= 1e-6 * norms.max().clamp_min(1e-30)


def footprint(kernels: torch.Tensor) -> torch.Tensor:
    """[N] long: radius (rounded, pixels) of the disk around the centre holding each kernel's non-negligible energy.

    Kernels of different branches have different footprints (3x3 vs 5x5 inside one frame), and the
    similarity of two small kernels spreads wider; pairs are compared with null pairs of the same footprints.
    """
    s = kernels.shape[-1]
    energy = kernels.pow(2).sum(1)  # [N, S, S]
    idx = torch.arange(s, dtype=torch.float64, device=kernels.device) - (s - 1) / 2
    radius = torch.hypot(idx[:, None], idx[None, :])
    live = energy > 1e-6 * energy.flatten(1).max(1).values.clamp_min(1e-30)[:, None, None]
    return (live * radius).flatten(1).max(1).values.round().long().cpu()


def spatially_trivial(kernels: torch.Tensor, tolerance: float = 0.01) -> torch.Tensor:
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
    support = (energy > 1e-6 * energy.flatten(1).max(1).values[:, None, None]).to(kernels.dtype)[
        :, None
    ]  # [N, 1, S, S]
    count = support.sum((2, 3), keepdim=True).clamp_min(1)
    mean = (kernels * support).sum((2, 3), keepdim=True) / count
    spread = ((kernels - mean) * support).pow(2).sum((1, 2, 3))
    uniform = spread < tolerance**2 * total
    return point | uniform


def channel_orbits(gather, params: torch.Tensor, channels: int) -> list[torch.Tensor]:
    """The groups of input channels a channel map moves among each other (each source family's members):
    ``[k]`` long indices per group of two or more, from ``gather(p)`` at every parameter ``p``."""
    parent = list(range(channels))

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for p in params.tolist():
        moved = gather(p).cpu().tolist()
        for c, d in enumerate(moved):
            a, b = root(c), root(int(d))
            if a != b:
                parent[a] = b
    groups: dict[int, list[int]] = {}
    for c in range(channels):
        groups.setdefault(root(c), []).append(c)
    return [torch.tensor(g, dtype=torch.long) for g in groups.values() if len(g) > 1]


def moved_by_channel_map(
    kernels: torch.Tensor,
    params: torch.Tensor,
    transform,
    mask: torch.Tensor | None,
    gather,
    tolerance: float = 0.01,
) -> torch.Tensor:
    """[N] bool: kernels that some transformation changes once the source's channels move with it.

    A 1x1 kernel is its own spatial rotation, but not its own rotation in a circuit: with ``gather`` (the
    source family's channel map) its weights on rotated source units move to other source units, so its
    similarity to the other units says which of them it is a rotated copy of (a 1x1 curve detector reading
    mixed3a's curves of its orientation). Unmoved: similarity to itself >= 1 - ``tolerance`` at every
    parameter (its weights sit on channels the map leaves in place).
    """
    coarse = params[:: max(1, len(params) // 8)]
    own = T.self_similarity(kernels, coarse, transform, mask=mask, gather=gather)
    return own.min(0).values < 1 - tolerance


def pooled_profile(kernels: torch.Tensor, tolerance: float = 0.01) -> torch.Tensor:
    """[N] bool: kernels that are one channel vector times one square-symmetric spatial profile.

    That is what pooling alone gives a 1x1 unit seen from an earlier layer (an average or linearised max
    pool, or two of them: a box or a pyramid): extent, but no spatial pattern of the unit's own.
    """
    n, c, s, _ = kernels.shape
    flat = kernels.double().reshape(n, c, s * s)
    u, sv, vh = torch.linalg.svd(flat, full_matrices=False)
    rank_one = sv[:, 0].pow(2) >= (1 - tolerance) * sv.pow(2).sum(1).clamp_min(1e-300)
    profile = vh[:, 0].reshape(n, s, s)
    variants = [profile.rot90(1, (1, 2)), profile.flip(2), profile.transpose(1, 2)]
    symmetric = torch.stack([(profile * v).sum((1, 2)).abs() for v in variants]).min(0).values >= 1 - tolerance
    return rank_one & symmetric


# --------------------------------------------------------------------------------------------------
# Tuning curves


def families_from_tuning(
    curves: torch.Tensor,
    *,
    alpha: float = ALPHA,
    threshold: float | None = None,
    min_modulation: float = 0.2,
    min_members: int = MIN_MEMBERS,
    min_span: float | None = None,
    units: list[int] | None = None,
    null_units: int | None = None,
    angle_draws: int = 999,
    seed: int = 0,
    null_curves: torch.Tensor | None = None,
    null_name: str = "network",
) -> EquivarianceResult:
    """Rotation families from orientation tuning curves ``[N, A]`` (responses at ``k * 360 / A`` degrees), or
    response surfaces ``[N, A, R]`` (every orientation under ``R`` conditions, e.g. curve radii, sharing the shift).

    ``S[s, i, j]`` is the Pearson correlation of unit ``i``'s curve shifted by ``s`` with unit ``j``'s: all
    shifts of all pairs come from one FFT (circular cross-correlation, interpolated to steps of at most
    ``360 / FINE_SHIFTS`` degrees), so the best shift is ``j``'s preferred orientation minus ``i``'s.
    Pairs are tested against ``null_curves`` when given (curves of units that share no structure with these,
    e.g. of copies of the model with shuffled weights, :func:`~circuits_vision.analysis.equivariance.null.
    shuffle_weights`: null pairs are pairs of those), else against phase-randomised curves
    (:func:`~circuits_vision.analysis.equivariance.null.scramble_curves`); families against circularly
    shifted curves (``null_name`` names how ``null_curves`` were drawn in ``settings.null``). Units whose curve is
    flat (max - min below ``min_modulation`` of the max) respond at every orientation: they are reported as
    invariant; units that never respond are left out.
    """
    if curves.ndim not in (2, 3) or curves.shape[1] < 4:
        raise ValueError(
            f"tuning curves must be [units, orientations] or [units, orientations, conditions] with >= 4 "
            f"orientations, got {tuple(curves.shape)}"
        )
    units = list(range(curves.shape[0])) if units is None else list(units)
    settings = _settings(
        alpha,
        threshold,
        INVARIANT_THRESHOLD,
        min_members,
        min_span,
        "scramble",
        null_units,
        angle_draws,
        seed,
        curves.shape[1],
    )
    settings.null = "phase"
    result = EquivarianceResult("rotation", None, None, "tuning", units=units, settings=settings)
    if curves.shape[0] < settings.min_members:
        result.explanation = f"only {curves.shape[0]} units; a family needs at least {settings.min_members}"
        return result
    curves = curves.double()
    mean_curve = curves if curves.ndim == 2 else curves.mean(2)
    peak = mean_curve.max(1).values
    depth = (peak - mean_curve.min(1).values) / peak.abs().clamp_min(1e-12)
    silent = peak <= 1e-9
    flat = ~silent & (depth < min_modulation)
    result.excluded = {units[i]: "never responds" for i in silent.nonzero().flatten().tolist()}
    result.excluded.update({units[i]: "flat tuning (invariant)" for i in flat.nonzero().flatten().tolist()})
    upsample = max(1, math.ceil(FINE_SHIFTS / curves.shape[1]))
    sim = circular_correlation(curves, upsample)
    params = torch.arange(sim.shape[0], dtype=torch.float64) * (360.0 / sim.shape[0])
    if settings.min_span is None:
        settings.min_span = default_span("rotation", params)
    eligible = (~(silent | flat)).nonzero().flatten()
    result.invariant = [units[i] for i in flat.nonzero().flatten().tolist()]
    if len(eligible) < settings.min_members:
        result.similarity, result.parameters = sim, params
        result.explanation = (
            f"only {len(eligible)} units are tuned to orientation; a family needs at least {settings.min_members}"
        )
        return result
    generator = torch.Generator().manual_seed(settings.seed)
    if null_curves is not None:
        if null_curves.shape[1:] != curves.shape[1:]:
            raise ValueError(
                f"null_curves must have the curves' shape per unit {tuple(curves.shape[1:])}, "
                f"got {tuple(null_curves.shape[1:])}"
            )
        null_set = null_curves.double()
        null_set = null_set[tuned(null_set, min_modulation)]
        if len(null_set) < settings.min_members:
            raise ValueError(f"only {len(null_set)} of the null curves are tuned to orientation; draw more")
        sources = torch.arange(len(null_set))  # every null curve is a unit of its own
        settings.null, settings.null_units = null_name, len(null_set)
    else:
        count = settings.null_units or max(len(eligible), MIN_NULL_UNITS)
        settings.null_units = count
        sources = N._sources(len(eligible), count, generator)
        null_set = N.scramble_curves(curves[eligible], generator, count, sources=sources)
    null_sim = circular_correlation(null_set, upsample)
    strata = torch.zeros(max(len(units), len(null_set)), dtype=torch.long)
    _calibrate(
        result,
        sim,
        params,
        null_sim,
        strata[: len(units)],
        strata[: len(null_set)],
        eligible,
        sources,
        circular=True,
        kind="rotation",
        generator=generator,
        invariance=False,
    )
    return result


def tuned(curves: torch.Tensor, min_modulation: float = 0.2) -> torch.Tensor:
    """``[N]`` bool: curves (``[N, A]`` or ``[N, A, R]``, averaged over ``R``) that respond somewhere and whose
    max - min reaches ``min_modulation`` of the max."""
    mean = curves.double() if curves.ndim == 2 else curves.double().mean(2)
    peak = mean.max(1).values
    return (peak > 1e-9) & ((peak - mean.min(1).values) / peak.abs().clamp_min(1e-12) >= min_modulation)


def circular_correlation(curves: torch.Tensor, upsample: int = 1) -> torch.Tensor:
    """``[A * upsample, N, N]``: Pearson correlation of curve ``i`` shifted by ``s / upsample`` steps with curve
    ``j`` (one FFT; fractional shifts are the band-limited interpolation of the correlation, so two copies
    of a curve half a sampling step apart still reach ~1)."""
    flat = curves.reshape(curves.shape[0], curves.shape[1], -1)  # [N, A, R]: R conditions share the shift
    z = flat - flat.mean((1, 2), keepdim=True)
    z = z / z.flatten(1).norm(dim=1)[:, None, None].clamp_min(1e-12)
    spectrum = torch.fft.rfft(z, dim=1).permute(1, 0, 2)  # [A // 2 + 1, N, R]
    # one [N, R] x [R, N] product per frequency (a batched matmul, not an [N, N, F, R] broadcast)
    product = torch.matmul(spectrum.conj(), spectrum.transpose(1, 2))  # [A // 2 + 1, N, N]
    cross = torch.fft.irfft(product, n=curves.shape[1] * upsample, dim=0)
    # [A', N, N]: sum_t z_i(t) z_j(t + s); the interpolation can overshoot 1 a little between sharp curves
    return (cross * upsample).clamp(-1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# The calibration shared by kernels and curves


def _pair_tests(
    best: torch.Tensor,
    null_best: torch.Tensor,
    strata: torch.Tensor,
    null_strata: torch.Tensor,
    tested: torch.Tensor,
    null_sources: torch.Tensor,
):
    """p-values and effect sizes ``[N, N]`` of ``best`` against null pairs of the same footprints.

    ``tested [N] bool`` marks the rows that take part; null pairs of two surrogates of one kernel are skipped.
    Returns (p, effect, pooled null values).
    """
    n, m = best.shape[0], null_best.shape[0]
    iu = torch.triu_indices(m, m, 1)
    keep = null_sources[iu[0]] != null_sources[iu[1]]
    a, b = iu[0][keep], iu[1][keep]
    values = null_best[a, b].double()
    lo = torch.minimum(null_strata[a], null_strata[b])
    hi = torch.maximum(null_strata[a], null_strata[b])
    p = torch.ones(n, n, dtype=torch.float64)
    effect = torch.zeros(n, n, dtype=torch.float64)
    ti = tested.nonzero().flatten()
    ru = torch.triu_indices(len(ti), len(ti), 1)
    i, j = ti[ru[0]], ti[ru[1]]
    s_lo, s_hi = torch.minimum(strata[i], strata[j]), torch.maximum(strata[i], strata[j])
    stat = best[i, j].double()
    pv = torch.empty_like(stat)
    ev = torch.empty_like(stat)
    for key in set(zip(s_lo.tolist(), s_hi.tolist())):
        here = (s_lo == key[0]) & (s_hi == key[1])
        ref = values[(lo == key[0]) & (hi == key[1])]
        if len(ref) < 200:  # too few null pairs with these footprints: the pooled null
            ref = values
        pv[here] = N.tail_p_values(stat[here], ref)
        ev[here] = N.effect_size(stat[here], ref)
    p[i, j] = p[j, i] = pv
    effect[i, j] = effect[j, i] = ev
    return p, effect, values


def _calibrate(
    result: EquivarianceResult,
    sim,
    params,
    null_sim,
    strata,
    null_strata,
    eligible,
    sources,
    *,
    circular: bool,
    kind: str,
    generator: torch.Generator,
    null_self: torch.Tensor | None = None,
    invariance: bool = True,
) -> None:
    """Fill ``result`` from the real and null similarities (see the module docstring)."""
    settings, units = result.settings, result.units
    n = sim.shape[1]
    result.similarity, result.parameters = sim, params
    best, _ = best_parameters(sim, params, 360.0 if circular else None)
    best = (best + best.T) / 2
    tested = torch.zeros(n, dtype=torch.bool)
    tested[eligible] = True
    if invariance:
        self_min = sim.diagonal(dim1=1, dim2=2).min(0).values  # [N]
        invariant = tested & (self_min >= settings.invariant_threshold)
        if settings.threshold is None and null_self is None:  # no unit reached the threshold
            invariant &= False
        elif settings.threshold is None:
            q_inv = torch.ones(n, dtype=torch.float64)
            q_inv[eligible] = N.benjamini_hochberg(N.permutation_p_values(self_min[eligible], null_self))
            invariant &= q_inv < settings.alpha
        result.invariant = [units[i] for i in invariant.nonzero().flatten().tolist()]
        tested &= ~invariant
    calibrated = null_sim is not None
    q = torch.ones(n, n, dtype=torch.float64)
    effect = torch.full((n, n), math.nan, dtype=torch.float64)
    if calibrated:
        null_best, _ = best_parameters(null_sim, params, 360.0 if circular else None)
        null_best = (null_best + null_best.T) / 2
        p, effect, values = _pair_tests(best, null_best, strata, null_strata, tested, sources)
        iu = torch.triu_indices(n, n, 1)
        in_test = tested[iu[0]] & tested[iu[1]]
        if bool(in_test.any()):
            qv = N.benjamini_hochberg(p[iu[0][in_test], iu[1][in_test]])
            q[iu[0][in_test], iu[1][in_test]] = qv
            q[iu[1][in_test], iu[0][in_test]] = qv
        result.p_values, result.q_values, result.effect_sizes = p, q, effect
    significant = (q < settings.alpha) if settings.threshold is None else (best >= settings.threshold)
    significant &= tested[:, None] & tested[None, :]
    significant.fill_diagonal_(False)
    critical = best[significant].min() if bool(significant.any()) else None
    if calibrated:
        result.null = NullSummary(
            settings.null,
            len(values),
            float(values.mean()),
            float(values.std()),
            None if critical is None else float(critical),
        )
    if settings.threshold is None:
        distance, cut = 1.0 - significant.double(), 0.5
    else:
        distance, cut = (1.0 - best.double()).clamp_min(0), 1.0 - settings.threshold
    distance = torch.where(tested[:, None] & tested[None, :], distance, torch.full_like(distance, 2.0))
    candidates = group_families(
        sim,
        params,
        kind=kind,
        circular=circular,
        distance=distance,
        cut=cut,
        min_members=settings.min_members,
        exclude=~tested,
        period_level=settings.threshold,
    )
    families, rejected = [], []
    for fam in candidates:
        rows = torch.tensor(fam.members)
        values_t = torch.tensor([fam.values[m] for m in fam.members], dtype=torch.float64)
        width = span(values_t, fam.period if circular else None)
        if width < settings.min_span:
            rejected.append(
                (fam.members, f"look-alike units: their values spread over {width:.3g} < {settings.min_span:.3g}")
            )
            continue
        resolution = (fam.period / 12) if circular else settings.min_span / 2
        distinct = distinct_values(values_t, fam.period if circular else None, resolution)
        if distinct < min(3, settings.min_members):
            rejected.append(
                (
                    fam.members,
                    f"look-alike units: their values sit at only {distinct} distinct "
                    f"{'angles' if circular else 'scales'} ({resolution:.3g} apart or more)",
                )
            )
            continue
        if calibrated:
            fam.fit, fam.null_score, fam.p_value = angle_test(
                sim[:, rows][:, :, rows], params, values_t, fam.period, settings.angle_draws, generator
            )
        off = ~torch.eye(len(rows), dtype=torch.bool)
        fam.effect_size = float(effect[rows][:, rows][off].mean())
        fam.pair_q_max = float(q[rows][:, rows][off].max())
        families.append(fam)
    if families and calibrated:
        qs = N.benjamini_hochberg(torch.tensor([f.p_value for f in families]))
        for fam, qv in zip(families, qs.tolist()):
            fam.q_value = qv
    kept = []
    for fam in families:
        if not calibrated or fam.q_value < settings.alpha:
            kept.append(fam)
        else:
            rejected.append(
                (
                    fam.members,
                    f"the angles do not matter: fit {fam.fit:.3f} vs {fam.null_score:.3f} "
                    f"with shuffled angles (q={fam.q_value:.2g})",
                )
            )
    for fam in kept:
        _relabel(fam, units)
    result.families = kept
    result.rejected = [([units[i] for i in members], why) for members, why in rejected]
    result.explanation = explain(result)


def angle_test(
    sub: torch.Tensor,
    params: torch.Tensor,
    values: torch.Tensor,
    period: float | None,
    draws: int,
    generator: torch.Generator,
) -> tuple[float, float, float]:
    """Shuffled-angle test of one family: ``(fit, mean fit under random angles, p)``.

    ``fit`` is the mean over member pairs of ``sub [P, n, n]`` read at the differences of ``values [n]``;
    the null redraws every member's value uniformly over the period (for scale: over [0, max parameter]).
    """
    n = len(values)
    off = ~torch.eye(n, dtype=torch.bool)

    def fit(v: torch.Tensor) -> torch.Tensor:  # v [B, n] -> [B]
        predicted = v[:, None, :] - v[:, :, None]
        read = read_at(sub, params, predicted, circular=period is not None)
        return read[:, off].double().mean(1)

    observed = float(fit(values[None])[0])
    high = float(period) if period is not None else float(params.max())
    random = torch.rand(draws, n, generator=generator, dtype=torch.float64) * high
    shuffled = fit(random)
    p = float((1 + (shuffled >= observed - 1e-12).sum()) / (1 + draws))
    return observed, float(shuffled.mean()), p


def read_at(sub: torch.Tensor, params: torch.Tensor, predicted: torch.Tensor, circular: bool) -> torch.Tensor:
    """``sub [P, n, n]`` at the parameter nearest ``predicted [B, n, n]`` (evenly spaced parameters): ``[B, n, n]``."""
    p = len(params)
    step = float(params[1] - params[0]) if p > 1 else 1.0
    offset = (predicted.double() - float(params[0])) / step
    if circular:
        index = torch.remainder(torch.round(offset), p).long()
    else:
        index = torch.round(offset).clamp(0, p - 1).long()
    n = sub.shape[1]
    i = torch.arange(n)[None, :, None]
    j = torch.arange(n)[None, None, :]
    return sub[index, i, j]


def _relabel(fam: Family, units: list[int]) -> None:
    """Row indices -> unit indices."""
    fam.members = [units[m] for m in fam.members]
    fam.values = {units[m]: v for m, v in fam.values.items()}
    fam.confidence = {units[m]: v for m, v in fam.confidence.items()}
    fam.reference = units[fam.reference]


def explain(result: EquivarianceResult) -> str:
    """Why nothing (or less than expected) was found, in unit indices."""
    s = result.settings
    parts = []
    rule = f"threshold {s.threshold}" if s.threshold is not None else f"q < {s.alpha} against the null"
    if not result.families:
        parts.append(f"no group of >= {s.min_members} units is similar after {result.kind} at {rule}")
    if result.rejected:
        shown = "; ".join(f"{members}: {why}" for members, why in result.rejected[:3])
        more = f" and {len(result.rejected) - 3} more" if len(result.rejected) > 3 else ""
        parts.append(f"{len(result.rejected)} candidate groups rejected: {shown}{more}")
    trivial = [u for u, why in result.excluded.items() if why.startswith("no spatial")]
    if trivial:
        parts.append(
            f"{len(trivial)} units have kernels confined to the centre or constant over their footprint "
            f"(1x1 or pooling branches), so {result.kind} says nothing about them; they are left out"
        )
    return "; ".join(parts)


def orientation_error(found: dict[int, float], truth: dict[int, float], period: float = 360.0) -> float:
    """Largest |found - truth| over shared units after removing the best common offset (degrees, circular)."""
    from circuits_vision.analysis.equivariance._grouping import circular_difference

    shared = sorted(set(found) & set(truth))
    if not shared:
        raise ValueError("no unit is in both orientation maps")
    diff = torch.tensor([found[u] - truth[u] for u in shared], dtype=torch.float64)
    k = 2 * math.pi / period
    offset = torch.angle(torch.polar(torch.ones_like(diff), k * diff).mean()) / k
    return float(circular_difference(diff - offset, period).abs().max())
