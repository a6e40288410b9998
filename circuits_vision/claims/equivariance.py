"""Naturally Occurring Equivariance claims (Olah et al., Distill 2020): rotated copies of one feature."""

from __future__ import annotations

import numpy as np

from circuits_vision.claims.context import Context
from circuits_vision.claims.curves import circular_difference
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult
from circuits_vision.models import facts

EQUIVARIANCE = "Naturally Occurring Equivariance in Neural Networks (Olah et al., Distill 2020)"
MEMBERS_HOLDS, MEMBERS_PARTLY, ERROR_HOLDS = 0.8, 0.5, 30.0


def _published_units() -> list[int]:
    return facts.equivariance_examples()["rotational_feature_examples"]["mixed3b_curve_detectors"]


@claim("equivariance_mixed3b_curves", article=EQUIVARIANCE,
       figure="rotational equivariance: the mixed3b curve detectors",
       published=f"mixed3b units {_published_units()} are one rotation family, rotated copies of each other "
                 "at their Curve Detectors orientations",
       requires=("mixed3b",))
def equivariance_mixed3b_curves(ctx: Context) -> ClaimResult:
    from circuits_vision.analysis.equivariance import families_from_tuning

    units = _published_units()
    orientations = facts.curve_orientations("mixed3b")
    # The tuning curves of the curve-detector claim (the 10 published curve units), averaged over radii.
    search = ctx.curve_detectors("mixed3b", list(orientations))
    curves = search.curves.subset(units).orientation_curve()
    result = families_from_tuning(curves, units=units)
    best = max(result.families, key=lambda f: len(set(f.members) & set(units)), default=None)
    members = sorted(set(best.members) & set(units)) if best is not None else []
    fraction = len(members) / len(units)
    error = float("nan")
    if best is not None and len(members) >= 2:
        ref = best.reference
        measured = np.array([best.values[u] for u in members])
        published = np.array([orientations[u] - orientations[ref] for u in members])
        error = float(np.median(circular_difference(measured, published)))
    if fraction >= MEMBERS_HOLDS and error <= ERROR_HOLDS:
        verdict = HOLDS
    elif fraction >= MEMBERS_PARTLY:
        verdict = PARTLY
    else:
        verdict = FAILS
    text = (f"rotation families from tuning curves (families_from_tuning, q < 0.05): {len(result.families)}; "
            f"the best holds {len(members)}/{len(units)} published units"
            + (f", relative angles off the published ones by {error:.1f} deg (median)" if members else "")
            + ("" if result.families else f" ({result.explanation})" if result.explanation else ""))
    rule = (f"holds: >= {MEMBERS_HOLDS:.0%} of the published units in one family and relative angles within "
            f"{ERROR_HOLDS:g} deg of the published orientation differences; partly: >= {MEMBERS_PARTLY:.0%}; "
            "else fails")
    numbers = {"members": members, "fraction": fraction, "median_angle_error_deg": error,
               "families": [f.members for f in result.families]}
    return ClaimResult("equivariance_mixed3b_curves", EQUIVARIANCE, "", "", text, verdict, rule, numbers)
