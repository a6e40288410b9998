"""Agreement between two family detections of the same layer (e.g. from weights and from tuning curves)."""

from __future__ import annotations

import math

import torch

from circuits_vision.analysis._equivariance_grouping import Family, circular_difference


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
    result = {"jaccard": len(shared) / max(len(union), 1), "shared": shared, "median_offset_deg": math.nan,
              "max_offset_deg": math.nan, "common_offset_deg": math.nan}
    if not shared:
        return result
    period = float(min(a.period or 360.0, b.period or 360.0))
    diff = torch.tensor([a.values[u] - b.values[u] for u in shared], dtype=torch.float64)
    k = 2 * math.pi / period
    common = float(torch.angle(torch.polar(torch.ones_like(diff), k * diff).mean()) / k)
    residual = circular_difference(diff - common, period).abs()
    result.update(median_offset_deg=float(residual.median()), max_offset_deg=float(residual.max()),
                  common_offset_deg=common % period)
    return result


def best_match(family: Family, candidates: list[Family]) -> Family | None:
    """The candidate sharing the most members with ``family`` (None when none shares any)."""
    scored = [(len(set(family.members) & set(c.members)), c) for c in candidates]
    scored = [s for s in scored if s[0] > 0]
    return max(scored, key=lambda s: s[0])[1] if scored else None
