"""From an all-pairs similarity-under-transformation tensor ``S [P, N, N]`` to families.

``S[p, i, j]`` says how well unit ``j`` is unit ``i`` transformed by parameter ``p`` (an angle, a
hue angle, a log2 scale). Families are groups whose members are all pairwise similar after the best
transformation (average-linkage clustering, so a chain of look-alikes does not merge two groups);
each member then gets one parameter value, found by synchronising all pairwise best parameters at
once (the top eigenvector of ``exp(i * best angle)``, "angular synchronisation"), not from a single
reference pair.
"""

from __future__ import annotations

import math

import torch

from circuits_vision.analysis.equivariance._result import Family


def circular_difference(a: torch.Tensor, period: float) -> torch.Tensor:
    """``a`` wrapped into ``[-period/2, period/2)``."""
    return torch.remainder(a + period / 2, period) - period / 2


def best_parameters(
    sim: torch.Tensor, parameters: torch.Tensor, circular_period: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair, the best similarity and the parameter reaching it, refined by a parabola through the peak.

    Args:
        sim: [P, N, N]; parameters: [P], evenly spaced (and covering one period when circular).
    Returns:
        best [N, N], argbest [N, N] (in parameter units).
    """
    best, index = sim.max(dim=0)
    p = len(parameters)
    step = float(parameters[1] - parameters[0]) if p > 1 else 0.0
    if p < 3:
        return best, parameters[index]
    if circular_period is not None:
        lo, hi = torch.remainder(index - 1, p), torch.remainder(index + 1, p)
        ok = torch.ones_like(index, dtype=torch.bool)
    else:
        lo, hi = (index - 1).clamp(0, p - 1), (index + 1).clamp(0, p - 1)
        ok = (index > 0) & (index < p - 1)
    s_lo, s_hi = sim.gather(0, lo[None])[0], sim.gather(0, hi[None])[0]
    curvature = s_lo - 2 * best + s_hi
    offset = torch.where(
        ok & (curvature < -1e-9), 0.5 * (s_lo - s_hi) / curvature.clamp(max=-1e-9), torch.zeros_like(best)
    )
    return best, parameters[index] + offset.clamp(-0.5, 0.5) * step


def cluster(distance: torch.Tensor, max_distance: float) -> list[list[int]]:
    """Average-linkage clusters of a precomputed ``distance [N, N]``, cut at ``max_distance``."""
    n = distance.shape[0]
    if n == 1:
        return [[0]]
    from sklearn.cluster import AgglomerativeClustering  # slow import, only when clustering

    labels = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=max_distance
    ).fit_predict(distance.double().cpu().numpy())
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(i)
    return list(groups.values())


def synchronise_circular(best_param: torch.Tensor, weight: torch.Tensor, period: float) -> torch.Tensor:
    """Values ``v [n]`` with ``v_j - v_i ~= best_param[i, j]`` (mod period), weighted least squares on the circle.

    ``H[i, j] = w_ij exp(i k best_ij)`` with ``k = 2 pi / period`` is ``conj(z) z^T`` for ``z = exp(i k v)``
    when the pairs agree, so ``conj(z)`` is its top eigenvector.
    """
    k = 2 * math.pi / period
    phase = torch.polar(weight.double(), k * best_param.double())
    h = (phase + phase.conj().T) / 2
    _, vectors = torch.linalg.eigh(h)
    top = vectors[:, -1]
    return torch.remainder(-torch.angle(top) / k, period)


def synchronise_linear(best_param: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Values ``v [n]`` with ``v_j - v_i ~= best_param[i, j]``: weighted least squares, smallest at 0."""
    n = best_param.shape[0]
    w = weight.double().clone()
    w.fill_diagonal_(0)
    w = (w + w.T) / 2
    antisym = (best_param.double() - best_param.double().T) / 2
    # Normal equations of sum_ij w_ij (v_j - v_i - b_ij)^2: (D - W) v = sum_i w_ij b_ij (per j), v fixed up to a constant.
    laplacian = torch.diag(w.sum(1)) - w
    rhs = (w * antisym).sum(0)
    values = torch.linalg.lstsq(laplacian + 1.0 / n, rhs[:, None]).solution[:, 0]
    return values - values.min()


def detect_period(
    self_sim: torch.Tensor, parameters: torch.Tensor, threshold: float, candidates=(90.0, 120.0, 180.0)
) -> float:
    """Smallest candidate period at which every member's median self-similarity reaches ``threshold``; else 360."""
    step = float(parameters[1] - parameters[0]) if len(parameters) > 1 else 360.0
    for period in candidates:
        distance = circular_difference(parameters - period, 360.0).abs()
        index = int(distance.argmin())
        if float(distance[index]) <= step / 2 + 1e-9 and float(self_sim[index].median()) >= threshold:
            return period
    return 360.0


def group_families(
    sim: torch.Tensor,
    parameters: torch.Tensor,
    *,
    kind: str,
    circular: bool,
    distance: torch.Tensor,
    cut: float,
    min_members: int,
    exclude: torch.Tensor,
    period_level: float | None,
) -> list[Family]:
    """Candidate families among the units not in ``exclude [N] bool`` (row indices; not yet tested).

    Args:
        sim: [P, N, N] similarity after transformation (see ``transform_similarity``).
        parameters: [P] evenly spaced; for ``circular`` they cover [0, 360).
        distance: [N, N] pair distances; groups are average-linkage clusters cut at ``cut``.
        min_members: smallest group kept.
        period_level: self-similarity every member needs at a candidate period (90/120/180); None:
            0.9 of the group's mean pair similarity.
    """
    best, arg = best_parameters(sim, parameters, 360.0 if circular else None)
    best = (best + best.T) / 2  # S[p, i, j] and S[-p, j, i] measure the same pair
    keep = (~exclude).nonzero().flatten()
    if len(keep) < min_members:
        return []
    d = distance[keep][:, keep].clone()
    d.fill_diagonal_(0)
    families = []
    for group in cluster(d, cut):
        if len(group) < min_members:
            continue
        idx = keep[group]
        sub_best, sub_arg = best[idx][:, idx], arg[idx][:, idx]
        n = len(idx)
        off = ~torch.eye(n, dtype=torch.bool, device=sub_best.device)
        score = float(sub_best[off].mean())
        level = 0.9 * score if period_level is None else period_level
        period = detect_period(sim[:, idx, idx], parameters, level) if circular else None  # [P, n] self-similarities
        if circular:
            values = synchronise_circular(sub_arg, sub_best.clamp_min(0), period)
        else:
            values = synchronise_linear(sub_arg, sub_best.clamp_min(0))
        typical = sub_best.sum(1) - 1
        ref = int(typical.argmax())
        rel = torch.remainder(values - values[ref], period) if circular else values
        predicted = rel[None, :] - rel[:, None]
        error = circular_difference(sub_arg - predicted, period) if circular else sub_arg - predicted
        confidence = predicted_similarity(sim[:, idx][:, :, idx], parameters, predicted, circular)
        conf = (confidence * off).sum(1) / (n - 1)
        order = torch.argsort(rel)
        members = [int(idx[i]) for i in order]
        families.append(
            Family(
                kind=kind,
                members=members,
                values={int(idx[i]): round(float(rel[i]), 3) for i in order},
                reference=int(idx[ref]),
                period=period,
                score=score,
                confidence={int(idx[i]): round(float(conf[i]), 4) for i in order},
                residual=float(error[off].abs().median()),
            )
        )
    families.sort(key=lambda f: (-len(f), -f.score))
    return families


def span(values: torch.Tensor, period: float | None) -> float:
    """How far the values spread: ``period`` minus the largest circular gap, or max - min."""
    if period is None:
        return float(values.max() - values.min()) if len(values) else 0.0
    ordered = torch.sort(torch.remainder(values.double(), period)).values
    gaps = torch.diff(torch.cat([ordered, ordered[:1] + period]))
    return float(period - gaps.max())


def distinct_values(values: torch.Tensor, period: float | None, resolution: float) -> int:
    """The most values that can be picked pairwise at least ``resolution`` apart (circularly for ``period``).

    Values at two angles with some jitter count 2; values spread evenly over the circle count about
    ``period / resolution`` however densely they sit (counting the gaps wider than ``resolution`` instead
    would call a dense, even spread one value).
    """
    if len(values) == 0:
        return 0
    ordered = torch.sort(torch.remainder(values.double(), period) if period is not None else values.double()).values
    points = ordered.tolist()
    if period is None:
        return _greedy_count(points, None, resolution)
    # on a circle the greedy pick depends on where it starts
    return max(
        _greedy_count(points[start:] + [p + period for p in points[:start]], period, resolution)
        for start in range(len(points))
    )


def _greedy_count(ordered: list[float], period: float | None, resolution: float) -> int:
    """Values of ``ordered`` (ascending) picked left to right, each ``resolution`` after the last picked; on a
    circle the last must also sit ``resolution`` before the first plus ``period``."""
    picked = [ordered[0]]
    for p in ordered[1:]:
        if p - picked[-1] >= resolution - 1e-9:
            picked.append(p)
    if period is not None and len(picked) > 1 and picked[0] + period - picked[-1] < resolution - 1e-9:
        picked.pop()
    return len(picked)


def predicted_similarity(
    sim: torch.Tensor, parameters: torch.Tensor, predicted: torch.Tensor, circular: bool
) -> torch.Tensor:
    """``sim [P, n, n]`` read at the parameter nearest ``predicted [n, n]``."""
    delta = predicted[None] - parameters[:, None, None]
    if circular:
        delta = circular_difference(delta, 360.0)
    index = delta.abs().argmin(0)
    return sim.gather(0, index[None])[0]
