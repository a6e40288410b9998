"""High-Low Frequency Detectors claims (Schubert et al., Distill 2021)."""

from __future__ import annotations

import numpy as np

from circuits_vision.claims.context import Context
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult
from circuits_vision.models import facts

FREQUENCY = "High-Low Frequency Detectors (Schubert et al., Distill 2021)"
TOP = 5
OVERLAP_HOLDS, OVERLAP_PARTLY = 3, 2


def _hlf() -> dict:
    return facts.high_low_frequency()


@claim("high_low_frequency_factors", article=FREQUENCY,
       figure="figure 6: NMF factors of the conv2d2 weights into the high-low frequency units",
       published=f"two NMF factors of the expanded weights conv2d2 -> the 15 mixed3a high-low frequency units; "
                 f"top conv2d2 units of the high-frequency factor {_hlf()['conv2d2_factor_high']}, of the "
                 f"low-frequency factor {_hlf()['conv2d2_factor_low']}",
       requires=("conv2d2", "mixed3a"))
def high_low_frequency_factors(ctx: Context) -> ClaimResult:
    from circuits_vision.weights import expanded_weights, nmf_factors

    fact = _hlf()
    units = fact["mixed3a_units"]
    expanded = ctx.shared(("expanded", "conv2d2", "mixed3a"),
                          lambda: expanded_weights(ctx.model, "conv2d2", "mixed3a").detach().cpu())
    # All 15 units' kernels stacked along the height: one NMF over every pixel of every unit, so the
    # factors are shared by the family (pixels x signed conv2d2 channels).
    stacked = expanded[units].permute(1, 0, 2, 3).reshape(expanded.shape[1], -1, expanded.shape[3])
    factors = nmf_factors(stacked, n_factors=2)
    channels = expanded.shape[1]
    loadings = factors.loadings[:, :channels]  # the positive parts: "uses this unit excitatorily"
    tops = [list(map(int, np.argsort(-row, kind="stable")[:TOP])) for row in loadings]
    high, low = set(fact["conv2d2_factor_high"]), set(fact["conv2d2_factor_low"])
    # The factors come unordered: pair them with the published ones the way that overlaps most.
    straight = (len(high & set(tops[0])), len(low & set(tops[1])))
    crossed = (len(high & set(tops[1])), len(low & set(tops[0])))
    overlaps, order = (straight, tops) if sum(straight) >= sum(crossed) else (crossed, tops[::-1])
    if min(overlaps) >= OVERLAP_HOLDS:
        verdict = HOLDS
    elif max(overlaps) >= OVERLAP_PARTLY:
        verdict = PARTLY
    else:
        verdict = FAILS
    chance = TOP * TOP / channels
    measured = (f"NMF (2 factors) of the expanded weights conv2d2 -> mixed3a of the 15 units: top {TOP} conv2d2 "
                f"units {order[0]} and {order[1]}; {overlaps[0]}/{TOP} and {overlaps[1]}/{TOP} of the published "
                f"high and low lists (chance {chance:.2f} each); reconstruction error {factors.relative_error:.2f}")
    rule = (f"holds: >= {OVERLAP_HOLDS}/{TOP} of both published top lists recovered; partly: >= {OVERLAP_PARTLY}/{TOP} "
            "of one; else fails")
    return ClaimResult("high_low_frequency_factors", FREQUENCY, "", "", measured, verdict, rule,
                       {"top_high": order[0], "top_low": order[1], "overlap_high": overlaps[0],
                        "overlap_low": overlaps[1], "relative_error": factors.relative_error})
