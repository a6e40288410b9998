"""Left/right mirror pairs among kernels, against the structure null."""

from __future__ import annotations

import torch

from circuits_vision.analysis.equivariance import null as N
from circuits_vision.analysis.equivariance import transforms as T
from circuits_vision.analysis.equivariance._detect import (
    ALPHA,
    MIN_NULL_UNITS,
    REFLECTION_THRESHOLD,
    _pair_tests,
    _settings,
    dead_kernels,
    footprint,
    kernel_problem,
    self_null_units,
)
from circuits_vision.analysis.equivariance._result import EquivarianceResult, NullSummary, ReflectionPair

MIN_MIRROR_SIMILARITY = 0.5


def reflection_pairs_from_kernels(
    kernels: torch.Tensor,
    *,
    alpha: float = ALPHA,
    threshold: float | None = None,
    self_threshold: float = REFLECTION_THRESHOLD,
    min_similarity: float = MIN_MIRROR_SIMILARITY,
    units: list[int] | None = None,
    gather=None,
    null: str = "scramble",
    null_units: int | None = None,
    seed: int = 0,
) -> EquivarianceResult:
    """Left/right mirror pairs among units with kernels ``[N, C, S, S]``.

    ``M[i, j] = cos(flip(W_i), W_j)`` (symmetrised). A pair is reported when ``i`` and ``j`` are each
    other's best mirror match, ``M[i, j]`` is significant against the structure null (q < ``alpha``;
    or ``>= threshold`` when given), reaches ``min_similarity`` (an effect-size floor: a significant but
    weak resemblance, e.g. 0.11 between random kernels composed from the same few edge filters, is not a
    mirror image), and the pair fits better than either unit fits its own mirror image.
    A unit whose own mirror similarity reaches ``self_threshold`` (and, without ``threshold``, is
    significant) is self-symmetric and listed in ``invariant``. ``gather``: ``[C] long`` input-channel map
    of a mirror of the source layer, when the source layer has mirror pairs itself.
    """
    units = list(range(kernels.shape[0])) if units is None else list(units)
    settings = _settings(alpha, threshold, self_threshold, 2, 0.0, null, null_units, 0, seed, 1)
    result = EquivarianceResult("reflection", None, None, "kernels", units=units, settings=settings)
    problem = kernel_problem(kernels, "reflection", 2)
    if problem:
        result.explanation = problem
        return result

    def mirror(k: torch.Tensor) -> torch.Tensor:
        flipped = k.flip(-1) if gather is None else k.flip(-1)[:, gather]
        m = T.normalised_flat(flipped, None) @ T.normalised_flat(k, None).T
        return (m + m.T) / 2

    m = mirror(kernels)
    n = len(units)
    dead = dead_kernels(kernels)
    result.excluded = {units[i]: "no weights (dead unit)" for i in dead.nonzero().flatten().tolist()}
    eligible = (~dead).nonzero().flatten()
    result.similarity = m[None]
    generator = torch.Generator().manual_seed(settings.seed)
    count = settings.null_units or max(len(eligible), MIN_NULL_UNITS)
    settings.null_units = count
    sources = N._sources(len(eligible), count, generator)
    draw = N.scramble_kernels if null == "scramble" else N.shuffle_kernels
    null_m = mirror(draw(kernels[eligible], generator, count, sources=sources))
    pool = draw(kernels[eligible], generator, self_null_units(len(eligible), alpha, count))
    flipped = pool.flip(-1) if gather is None else pool.flip(-1)[:, gather]
    null_self = (T.normalised_flat(flipped, None) * T.normalised_flat(pool, None)).sum(1)
    strata = footprint(kernels)
    p, effect, values = _pair_tests(m, null_m, strata, strata[eligible][sources], ~dead, sources)
    iu = torch.triu_indices(n, n, 1)
    live = ~dead[iu[0]] & ~dead[iu[1]]
    q = torch.ones(n, n, dtype=torch.float64)
    if bool(live.any()):
        qv = N.benjamini_hochberg(p[iu[0][live], iu[1][live]])
        q[iu[0][live], iu[1][live]] = qv
        q[iu[1][live], iu[0][live]] = qv
    result.p_values, result.q_values, result.effect_sizes = p, q, effect
    self_mirror = m.diagonal().clone()
    self_ok = ~dead & (self_mirror >= self_threshold)
    if threshold is None:
        q_self = torch.ones(n, dtype=torch.float64)
        q_self[eligible] = N.benjamini_hochberg(N.permutation_p_values(self_mirror[eligible], null_self))
        self_ok &= q_self < alpha
    other = m.clone()
    other.fill_diagonal_(-2.0)
    other[dead] = -2.0
    other[:, dead] = -2.0
    best = other.argmax(1)
    accepted = []
    for i in range(n):
        j = int(best[i])
        good = float(q[i, j]) < alpha if threshold is None else float(m[i, j]) >= threshold
        strong = float(m[i, j]) >= min_similarity
        if i < j and int(best[j]) == i and good and strong and float(m[i, j]) > max(self_mirror[i], self_mirror[j]):
            result.pairs.append(
                ReflectionPair(
                    units[i], units[j], round(float(m[i, j]), 4), float(p[i, j]), float(q[i, j]), float(effect[i, j])
                )
            )
            accepted.append(float(m[i, j]))
    paired = {u for pair in result.pairs for u in (pair.a, pair.b)}
    result.invariant = [units[i] for i in self_ok.nonzero().flatten().tolist() if units[i] not in paired]
    result.null = NullSummary(
        null, len(values), float(values.mean()), float(values.std()), min(accepted) if accepted else None
    )
    if not result.pairs:
        rule = f"similarity >= {threshold}" if threshold is not None else f"q < {alpha} against the null"
        result.explanation = f"no two units are mirror images of each other at {rule}"
    return result
