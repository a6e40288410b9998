"""Weight Banding claim (Petrov et al., Distill 2021): mixed5b's 5x5 weights form horizontal bands."""

from __future__ import annotations

import numpy as np

from circuits_vision.claims.context import Context
from circuits_vision.claims.nulls import P_PARTLY, beats, sample_null
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult, NotApplicable, with_nulls

BANDING = "Weight Banding (Petrov et al., Distill 2021)"
SCORE_HOLDS = 0.5
NULL_DRAWS = 200
UNITS = 32  # the first units of the branch: NMF per unit is the cost


def row_fraction(image: np.ndarray) -> np.ndarray:
    """``[n]``: for spatial maps ``[kh, kw, n]``, the fraction of each map's variance its row means carry
    (1 = constant along every row: horizontal bands; ``(kh - 1) / (kh * kw - 1)`` expected for noise)."""
    centred = image - image.mean(axis=(0, 1), keepdims=True)
    total = (centred**2).sum(axis=(0, 1))
    rows = (centred.mean(axis=1, keepdims=True) ** 2).sum(axis=(0, 1)) * image.shape[1]
    return rows / np.where(total > 0, total, 1.0)


@claim(
    "weight_banding_mixed5b",
    article=BANDING,
    figure="NMF factors of mixed5b's 5x5 weights",
    published="the NMF factors of mixed5b's 5x5 branch weights are horizontal bands",
    requires=("mixed5b_5x5_bottleneck", "mixed5b_5x5"),
)
def weight_banding(ctx: Context) -> ClaimResult:
    from circuits_vision.weights import expanded_weights, nmf_factors

    # Between the bottleneck and the 5x5 conv the expanded weights are the conv's own kernel.
    weights = expanded_weights(ctx.model, "mixed5b_5x5_bottleneck", "mixed5b_5x5").detach().cpu()
    if weights.shape[-1] < 3:
        raise NotApplicable(f"mixed5b_5x5's kernels are {tuple(weights.shape[-2:])}: too small for bands")
    units = range(min(UNITS, weights.shape[0]))
    images = [np.asarray(nmf_factors(weights[u], n_factors=3).image) for u in units]  # each [kh, kw, 3]
    scores = np.array([row_fraction(image).mean() for image in images])
    score = float(np.median(scores))
    # The null: the same factors with their taps shuffled (the spatial arrangement destroyed, the values kept).
    generator = np.random.default_rng(0)
    samples = []
    for _ in range(NULL_DRAWS):
        shuffled = [generator.permutation(image.reshape(-1, image.shape[-1])).reshape(image.shape) for image in images]
        samples.append(float(np.median([row_fraction(image).mean() for image in shuffled])))
    null = sample_null(
        score,
        samples,
        "median row share of the factors' variance",
        description="the NMF factors' taps shuffled within each factor map",
    )
    verdict = HOLDS if beats(null) and score >= SCORE_HOLDS else PARTLY if beats(null, P_PARTLY) else FAILS
    kh, kw = weights.shape[-2:]
    noise = (kh - 1) / (kh * kw - 1)
    measured = (
        f"share of the NMF factors' spatial variance in their row means (1 = horizontal bands): median "
        f"{score:.2f} over the first {len(scores)} units (independent noise: {noise:.2f})"
    )
    rule = (
        f"holds: the median above the shuffled-tap null at p < 0.01 and >= {SCORE_HOLDS} (most variance along "
        "rows); partly: above the null at p < 0.05; else fails"
    )
    return with_nulls(
        ClaimResult(
            "weight_banding_mixed5b",
            BANDING,
            "",
            "",
            measured,
            verdict,
            rule,
            {"median_row_fraction": score, "noise_expectation": noise, "per_unit": scores.tolist()},
        ),
        [null],
    )
