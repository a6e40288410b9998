"""Naturally Occurring Equivariance claims (Olah et al., Distill 2020): rotated copies of one feature."""

from __future__ import annotations

import numpy as np

from circuits_vision.claims.context import Context
from circuits_vision.claims.curves import circular_difference
from circuits_vision.claims.nulls import P_PARTLY, beats, sample_null
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult, with_nulls
from circuits_vision.models import facts

EQUIVARIANCE = "Naturally Occurring Equivariance in Neural Networks (Olah et al., Distill 2020)"
MEMBERS_HOLDS, MEMBERS_PARTLY = 0.8, 0.5
NULL_DRAWS = 1000
SHUFFLES = 199


def _published_units() -> list[int]:
    return facts.equivariance_examples()["rotational_feature_examples"]["mixed3b_curve_detectors"]


@claim(
    "equivariance_mixed3b_curves",
    article=EQUIVARIANCE,
    figure="rotational equivariance: the mixed3b curve detectors",
    published=f"mixed3b units {_published_units()} are one rotation family, rotated copies of each other "
    "at their Curve Detectors orientations",
    requires=("mixed3b",),
)
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
    nulls = []
    if best is not None and len(members) >= 2:
        ref = best.reference
        measured = np.array([best.values[u] for u in members])
        published = np.array([orientations[u] - orientations[ref] for u in members])
        error = float(np.median(circular_difference(measured, published)))
        # The null: the published orientations permuted among the members (relative to the reference).
        generator = np.random.default_rng(0)
        absolute = np.array([orientations[u] for u in members])
        samples = []
        for _ in range(NULL_DRAWS):
            shuffled = dict(zip(members, generator.permutation(absolute)))
            samples.append(
                float(
                    np.median(
                        circular_difference(
                            measured,
                            np.array(
                                [
                                    shuffled[u] - (shuffled[ref] if ref in shuffled else orientations[ref])
                                    for u in members
                                ]
                            ),
                        )
                    )
                )
            )
        nulls.append(
            sample_null(
                error,
                samples,
                "median error of the relative angles (deg)",
                greater=False,
                description="published orientations permuted among the family's members",
            )
        )
    if fraction >= MEMBERS_HOLDS and nulls and beats(nulls[0]):
        verdict = HOLDS
    elif fraction >= MEMBERS_PARTLY:
        verdict = PARTLY
    else:
        verdict = FAILS
    text = (
        f"rotation families from tuning curves (families_from_tuning, q < 0.05): {len(result.families)}; "
        f"the best holds {len(members)}/{len(units)} published units"
        + (f", relative angles off the published ones by {error:.1f} deg (median)" if members else "")
        + ("" if result.families else f" ({result.explanation})" if result.explanation else "")
    )
    rule = (
        f"holds: >= {MEMBERS_HOLDS:.0%} of the published units in one family (families_from_tuning decides "
        "families against its own scrambled-curve and shuffled-angle nulls, q < 0.05) and relative angles closer to "
        f"the published differences than permuted ones (p < 0.01); partly: >= {MEMBERS_PARTLY:.0%}; else fails"
    )
    numbers = {
        "members": members,
        "fraction": fraction,
        "median_angle_error_deg": error,
        "families": [f.members for f in result.families],
    }
    result = with_nulls(
        ClaimResult("equivariance_mixed3b_curves", EQUIVARIANCE, "", "", text, verdict, rule, numbers), nulls
    )
    if not nulls:
        result.null = (
            "no family of >= 2 published units passed families_from_tuning's scrambled-curve and "
            "shuffled-angle nulls (q < 0.05), so no angle was compared"
        )
    return result


def published_family(layer: str):
    """The published curve units of ``layer`` as one rotation :class:`Family` at their published angles."""
    from circuits_vision.analysis.equivariance import Family

    orientations = facts.curve_orientations(layer)
    members = sorted(orientations, key=orientations.get)
    return Family("rotation", members, {u: orientations[u] for u in members}, members[0], 360.0, float("nan"))


def plot_circuit(numbers: dict, ax) -> None:
    delta = numbers["delta_deg"]
    ax.fill_between(delta, numbers["null_low"], numbers["null_high"], color="#dddddd", label="shuffled angles 95%")
    ax.plot(delta, numbers["mean_weight"], marker="o", markersize=3, color="#3060c0", label="measured")
    ax.axhline(0, color="#999999", linewidth=0.6)
    ax.set_xlabel("3b - 3a orientation (deg)", fontsize=7)
    ax.set_ylabel("mean net weight", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, frameon=False)


@claim(
    "equivariant_circuit_3a_3b",
    article=EQUIVARIANCE,
    figure="the equivariant circuit from mixed3a's curves to mixed3b's curves",
    published="the weights from the mixed3a curve units to the mixed3b curve units are rotated copies of one "
    "kernel per relative orientation (an equivariant circuit: far fewer free parameters)",
    requires=("mixed3a", "mixed3b"),
    plot=plot_circuit,
)
def equivariant_circuit(ctx: Context) -> ClaimResult:
    from circuits_vision.analysis.equivariance import circuits
    from circuits_vision.weights import expanded_weights

    expanded = ctx.shared(
        ("expanded", "mixed3a", "mixed3b"), lambda: expanded_weights(ctx.model, "mixed3a", "mixed3b").detach().cpu()
    )
    result = circuits.circuit(
        ctx.model,
        "mixed3a",
        "mixed3b",
        published_family("mixed3b"),
        source_family=published_family("mixed3a"),
        weights=expanded,
        shuffles=SHUFFLES,
    )
    null = sample_null(
        result.score,
        result.null_scores.numpy(),
        "equivariance score (weight energy explained by one kernel per relative angle)",
        description="both families' published angles shuffled (analysis.equivariance.circuits)",
    )
    verdict = HOLDS if beats(null) else PARTLY if beats(null, P_PARTLY) else FAILS
    measured = (
        f"equivariance score {result.score:.3f} against {float(result.null_scores.mean()):.3f} +- "
        f"{float(result.null_scores.std()):.3f} with shuffled angles (effect size {result.effect_size:.1f}); "
        f"{result.n_weights} weights -> {result.n_parameters} parameters ({result.reduction:.1f}x) over the "
        f"published units at their published orientations"
    )
    rule = "holds: score above the shuffled-angle null at p < 0.01; partly: p < 0.05; else fails"
    numbers = {
        "score": result.score,
        "effect_size": result.effect_size,
        "reduction": result.reduction,
        "delta_deg": result.delta_deg,
        "mean_weight": result.mean_weight,
        "null_low": result.null_low,
        "null_high": result.null_high,
    }
    return with_nulls(
        ClaimResult("equivariant_circuit_3a_3b", EQUIVARIANCE, "", "", measured, verdict, rule, numbers), [null]
    )
