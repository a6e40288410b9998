"""High-Low Frequency Detectors claims (Schubert et al., Distill 2021)."""

from __future__ import annotations

import numpy as np
import torch

from circuits_vision.claims.context import Context
from circuits_vision.claims.nulls import P_PARTLY, beats, overlap_null, sample_null
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult, NotApplicable, with_nulls
from circuits_vision.models import facts

FREQUENCY = "High-Low Frequency Detectors (Schubert et al., Distill 2021)"
TOP = 5
NULL_DRAWS = 500


def _hlf() -> dict:
    return facts.high_low_frequency()


@claim(
    "high_low_frequency_factors",
    article=FREQUENCY,
    figure="figure 6: NMF factors of the conv2d2 weights into the high-low frequency units",
    published=f"two NMF factors of the expanded weights conv2d2 -> the 15 mixed3a high-low frequency units; "
    f"top conv2d2 units of the high-frequency factor {_hlf()['conv2d2_factor_high']}, of the "
    f"low-frequency factor {_hlf()['conv2d2_factor_low']}",
    requires=("conv2d2", "mixed3a"),
)
def high_low_frequency_factors(ctx: Context) -> ClaimResult:
    from circuits_vision.weights import expanded_weights, nmf_factors

    fact = _hlf()
    units = fact["mixed3a_units"]
    expanded = ctx.shared(
        ("expanded", "conv2d2", "mixed3a"), lambda: expanded_weights(ctx.model, "conv2d2", "mixed3a").detach().cpu()
    )
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
    nulls = [
        overlap_null(k, channels, TOP, TOP, f"published {which} units among the factor's top {TOP}")
        for k, which in zip(overlaps, ("high-frequency", "low-frequency"))
    ]
    if all(beats(n) for n in nulls):
        verdict = HOLDS
    elif any(beats(n, P_PARTLY) for n in nulls):
        verdict = PARTLY
    else:
        verdict = FAILS
    chance = TOP * TOP / channels
    measured = (
        f"NMF (2 factors) of the expanded weights conv2d2 -> mixed3a of the 15 units: top {TOP} conv2d2 "
        f"units {order[0]} and {order[1]}; {overlaps[0]}/{TOP} and {overlaps[1]}/{TOP} of the published "
        f"high and low lists (chance {chance:.2f} each); reconstruction error {factors.relative_error:.2f}"
    )
    rule = (
        f"holds: both published top-{TOP} lists recovered beyond chance at p < 0.01 (hypergeometric, shuffled "
        "unit labels); partly: one at p < 0.05; else fails"
    )
    return with_nulls(
        ClaimResult(
            "high_low_frequency_factors",
            FREQUENCY,
            "",
            "",
            measured,
            verdict,
            rule,
            {
                "top_high": order[0],
                "top_low": order[1],
                "overlap_high": overlaps[0],
                "overlap_low": overlaps[1],
                "relative_error": factors.relative_error,
            },
        ),
        nulls,
    )


def _side_correlation(
    expanded: np.ndarray, units: list[int], high: dict[int, float], low: dict[int, float]
) -> np.ndarray:
    """``[U]``: per unit, the correlation over kernel taps of its high-frequency map (the published high
    units' expanded weights, weighted by their published coefficients) with its low-frequency map;
    negative = the two lie on opposite sides. 0 where a map is flat."""
    hi = np.einsum("c,ucxy->uxy", np.array(list(high.values())), expanded[units][:, list(high)])
    lo = np.einsum("c,ucxy->uxy", np.array(list(low.values())), expanded[units][:, list(low)])
    hi = hi.reshape(len(units), -1) - hi.reshape(len(units), -1).mean(1, keepdims=True)
    lo = lo.reshape(len(units), -1) - lo.reshape(len(units), -1).mean(1, keepdims=True)
    norm = np.linalg.norm(hi, axis=1) * np.linalg.norm(lo, axis=1)
    return np.where(norm > 1e-12, (hi * lo).sum(1) / np.where(norm > 1e-12, norm, 1.0), 0.0)


def plot_sides(numbers: dict, ax) -> None:
    high, low = np.array(numbers["high_map"]), np.array(numbers["low_map"])
    scale = max(np.abs(high).max(), np.abs(low).max(), 1e-12)
    ax.imshow(
        np.concatenate([high, np.full((high.shape[0], 1), np.nan), low], axis=1), cmap="RdBu_r", vmin=-scale, vmax=scale
    )
    ax.set_title(f"3a:{numbers['example_unit']}: high | low", fontsize=7)
    ax.set_axis_off()


@claim(
    "high_low_frequency_sides",
    article=FREQUENCY,
    figure="figure 6: the high- and low-frequency factors of each detector lie on opposite sides",
    published="each mixed3a high-low frequency detector reads the conv2d2 high-frequency cluster "
    f"({_hlf()['conv2d2_factor_high']}) on one side of its receptive field and the low-frequency cluster "
    f"({_hlf()['conv2d2_factor_low']}) on the other",
    requires=("conv2d2", "mixed3a"),
    plot=plot_sides,
)
def high_low_frequency_sides(ctx: Context) -> ClaimResult:
    from circuits_vision.weights import expanded_weights

    fact = _hlf()
    units = fact["mixed3a_units"]
    coefficients = fact["factor_coefficients"]
    high = {int(u): c for u, c in coefficients["conv2d2_factor_high"].items()}
    low = {int(u): c for u, c in coefficients["conv2d2_factor_low"].items()}
    expanded = (
        ctx.shared(
            ("expanded", "conv2d2", "mixed3a"), lambda: expanded_weights(ctx.model, "conv2d2", "mixed3a").detach().cpu()
        )
        .double()
        .numpy()
    )
    full_expanded = expanded
    # Only the taps the 15 units use (a 3x3 unit's expanded kernel sits zero-padded in the layer's 5x5).
    support = np.flatnonzero(np.abs(expanded[units]).sum(axis=(0, 1)).ravel() > 0)
    if len(support) < 2:
        raise NotApplicable("the high-low frequency units have no spatial extent in their conv2d2 weights")
    expanded = expanded.reshape(*expanded.shape[:2], -1)[:, :, support][..., None]
    per_unit = _side_correlation(expanded, units, high, low)
    observed = float(np.median(per_unit))
    # The null: the same statistic for two random disjoint sets of the other conv2d2 units in the
    # clusters' place (shuffled unit labels, the published coefficients kept).
    generator = torch.Generator().manual_seed(0)
    others = torch.tensor([c for c in range(expanded.shape[1]) if c not in high and c not in low])
    samples = []
    for _ in range(NULL_DRAWS):
        picked = others[torch.randperm(len(others), generator=generator)[: len(high) + len(low)]].tolist()
        fake_high = dict(zip(picked[: len(high)], high.values()))
        fake_low = dict(zip(picked[len(high) :], low.values()))
        samples.append(float(np.median(_side_correlation(expanded, units, fake_high, fake_low))))
    null = sample_null(
        observed,
        samples,
        "median correlation of the high and low maps (negative: opposite sides)",
        greater=False,
        description="random other conv2d2 units in place of the published clusters",
    )
    opposite = observed < 0
    verdict = HOLDS if beats(null) and opposite else PARTLY if beats(null, P_PARTLY) and opposite else FAILS
    measured = (
        f"median over the 15 units of corr(high-cluster map, low-cluster map) = {observed:.2f} "
        f"({int((per_unit < 0).sum())}/15 negative); shuffled clusters give {null['null_mean']:.2f} on average"
    )
    rule = (
        "holds: the median correlation is negative and below the shuffled-cluster null at p < 0.01; partly: "
        "p < 0.05; else fails (maps from the expanded weights conv2d2 -> mixed3a)"
    )
    example = units[int(np.argmin(per_unit))]
    full = full_expanded[example]
    hi_map = np.einsum("c,cxy->xy", np.array(list(high.values())), full[list(high)])
    lo_map = np.einsum("c,cxy->xy", np.array(list(low.values())), full[list(low)])
    numbers = {
        "median_correlation": observed,
        "per_unit": dict(zip(map(str, units), per_unit.tolist())),
        "example_unit": example,
        "high_map": hi_map.tolist(),
        "low_map": lo_map.tolist(),
    }
    return with_nulls(
        ClaimResult("high_low_frequency_sides", FREQUENCY, "", "", measured, verdict, rule, numbers), [null]
    )
