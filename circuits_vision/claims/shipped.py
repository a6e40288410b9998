"""The claims that make sense on the shipped ``shapes`` model, beside the figures recorded for it.

The shipped model has no published unit ids, so each Circuits claim is asked in its general form (a
curve family at every orientation, a circuit whose weights follow the orientation difference, curve
detectors concentrated in one branch, an equivariant 3a -> 3b circuit), measured on the given model with
the same tools and defaults as ``benchmarks/measure_shapes.py``, and printed beside the figures recorded in
``circuits_vision/data/shapes.json`` (read when the claim runs: the checkpoint may be retrained) with
whether the measurement reproduces them.
"""

from __future__ import annotations

import json
import math

from circuits_vision.claims.context import Context
from circuits_vision.claims.figures import plot_weight_profile
from circuits_vision.claims.nulls import P_PARTLY, beats, overlap_null, reference_null, sample_null, summary_null
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult, NotApplicable, with_nulls

CURVES = "Curve Detectors (Cammarata et al., Distill 2020), on the shipped model"
CIRCUITS = "Curve Circuits (Cammarata et al., Distill 2021), on the shipped model"
BRANCHES = "Branch Specialization (Voss et al., Distill 2021), on the shipped model"
EQUIVARIANCE = "Naturally Occurring Equivariance (Olah et al., Distill 2020), on the shipped model"
NULL_MODELS = 3  # random initialisations of the same architecture
MIN_SECTORS = 6  # of the eight 45-degree sectors: "at every orientation", allowing a gap or two
P_CIRCUIT = 0.01
PERMUTATIONS = 2000


def recorded() -> dict:
    """The shipped checkpoint's record (``shapes.json``): ``measured`` and ``curve_detectors``."""
    from circuits_vision.models.shapes import metadata_path

    return json.loads(metadata_path().read_text(encoding="utf-8"))


def _detectors(ctx: Context, layer: str):
    return ctx.curve_detectors(layer).detectors


def _random_counts(ctx: Context, layer: str) -> list[int]:
    """Curve detectors ``find_curve_detectors`` finds in ``layer`` of randomly initialised shapes models."""
    import torch

    from circuits_vision.analysis.tuning import find_curve_detectors
    from circuits_vision.models.shapes import ShapesNet

    def count() -> list[int]:
        return [
            len(
                find_curve_detectors(
                    ShapesNet(generator=torch.Generator().manual_seed(seed)).eval(), layer, size=ctx.size
                ).detectors
            )
            for seed in range(NULL_MODELS)
        ]

    return ctx.shared(("random_shapes_curve_counts", layer), count)


def plot_sectors(numbers: dict, ax) -> None:
    import numpy as np
    from matplotlib.patches import Circle

    angles = np.radians(np.array(numbers["preferred_orientation_deg"], dtype=float))
    ax.scatter(np.cos(angles), np.sin(angles), s=14, color="#3060c0")
    ax.add_patch(Circle((0, 0), 1, fill=False, color="#999999"))
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_aspect("equal")
    ax.set_title(f"{len(angles)} detectors, {len(numbers['sectors_45deg'])}/8 sectors", fontsize=7)
    ax.set_axis_off()


def _curve_family(layer: str):
    name = f"shapes_curve_family_{layer}"

    @claim(
        name,
        article=CURVES,
        figure=f"{layer}: curve detectors at every orientation",
        published=f"{layer} holds a family of curve detectors covering the orientations (Circuits: mixed3b's "
        f"curve family); recorded for the shipped checkpoint in shapes.json (curve_detectors.{layer})",
        requires=(layer,),
        plot=plot_sectors,
        suite="shapes",
    )
    def check(ctx: Context) -> ClaimResult:
        found = _detectors(ctx, layer)
        units = [d.unit for d in found]
        orientations = [d.preferred_orientation for d in found]
        sectors = sorted({int(o // 45) % 8 for o in orientations})
        null_counts = _random_counts(ctx, layer)
        null = reference_null(
            len(found),
            max(null_counts),
            f"curve detectors in {layer}",
            description=f"the most find_curve_detectors finds in {NULL_MODELS} random "
            f"initialisations of the architecture: {null_counts}",
        )
        verdict = HOLDS if beats(null) and len(sectors) >= MIN_SECTORS else PARTLY if beats(null) else FAILS
        record = recorded().get("curve_detectors", {}).get(layer)
        agrees = record is not None and record["units"] == units
        record_text = (
            f"recorded: {len(record['units'])} units over {len(record['sectors_45deg'])}/8 sectors"
            if record is not None
            else "nothing recorded"
        )
        measured = (
            f"find_curve_detectors finds {len(found)} curve detectors in {layer}, over {len(sectors)}/8 "
            f"45-degree sectors ({record_text}; {'the same units' if agrees else 'other units than recorded'})"
        )
        rule = (
            f"holds: more detectors than any random initialisation and >= {MIN_SECTORS}/8 sectors covered; "
            "partly: more detectors only; else fails"
        )
        numbers = {
            "units": units,
            "preferred_orientation_deg": orientations,
            "sectors_45deg": sectors,
            "random_counts": null_counts,
            "recorded_units": record["units"] if record else None,
            "agrees_with_record": agrees,
        }
        return with_nulls(ClaimResult(name, CURVES, "", "", measured, verdict, rule, numbers), [null])

    check.__name__ = name
    return check


shapes_curve_family_mixed3a = _curve_family("mixed3a")
shapes_curve_family_mixed3b = _curve_family("mixed3b")


def _need_detectors(ctx: Context) -> tuple[list, list]:
    source, target = _detectors(ctx, "mixed3a"), _detectors(ctx, "mixed3b")
    if len(source) < 2 or len(target) < 2:
        raise NotApplicable(
            f"a circuit needs >= 2 curve detectors per layer; found {len(source)} in mixed3a, {len(target)} in mixed3b"
        )
    return source, target


@claim(
    "shapes_curve_circuit",
    article=CIRCUITS,
    figure="net 3a->3b weight against the orientation difference",
    published="between the curve detectors of mixed3a and mixed3b the net weight excites similar orientations "
    "and inhibits opposite ones (follows cos of the difference); recorded in shapes.json "
    "(measured.curve_circuit)",
    requires=("mixed3a", "mixed3b"),
    plot=plot_weight_profile,
    suite="shapes",
)
def shapes_curve_circuit(ctx: Context) -> ClaimResult:
    from circuits_vision.analysis.curve_circuits import curve_circuit

    source, target = _need_detectors(ctx)
    result = curve_circuit(
        ctx.model, "mixed3a", "mixed3b", source_detectors=source, target_detectors=target, permutations=PERMUTATIONS
    )
    null = summary_null(
        result.correlation,
        result.p_value,
        result.null_mean,
        result.null_std,
        "corr(net weight, cos of the orientation difference)",
        n=result.permutations,
        description="orientations permuted among the detectors (analysis.curve_circuits)",
    )
    signs = result.aligned_mean > 0 > result.opposite_mean
    verdict = HOLDS if beats(null, P_CIRCUIT) and signs else PARTLY if beats(null, P_PARTLY) else FAILS
    record = recorded().get("measured", {}).get("curve_circuit", {})
    recorded_r = record.get("correlation_net_vs_cos_delta", math.nan)
    agrees = math.isfinite(recorded_r) and abs(recorded_r - result.correlation) < 1e-3
    measured = (
        f"corr = {result.correlation:.3f} over {result.net.numel()} pairs, permutation p = {result.p_value:.3g}; "
        f"aligned mean {result.aligned_mean:+.3g}, opposite {result.opposite_mean:+.3g} (recorded: corr "
        f"{recorded_r:.3f}, p {record.get('permutation_p', math.nan):.3g}; "
        f"{'reproduced' if agrees else 'not the recorded figure'})"
    )
    rule = f"holds: p < {P_CIRCUIT} and aligned > 0 > opposite; partly: p < {P_PARTLY}; else fails"
    numbers = {
        "correlation": result.correlation,
        "p_value": result.p_value,
        "aligned_mean": result.aligned_mean,
        "opposite_mean": result.opposite_mean,
        "pairs": int(result.net.numel()),
        "bins": result.bins,
        "profile": result.profile,
        "null_low": result.null_low,
        "null_high": result.null_high,
        "recorded_correlation": recorded_r,
        "agrees_with_record": agrees,
    }
    return with_nulls(ClaimResult("shapes_curve_circuit", CIRCUITS, "", "", measured, verdict, rule, numbers), [null])


@claim(
    "shapes_echo",
    article=CIRCUITS,
    figure="the echo: removing inhibition from opposite curves",
    published="removing a curve detector's inhibition from the early curves facing the other way makes it "
    "respond to the curve rotated 180 degrees (an 'echo'); recorded in shapes.json (measured.echo_survey)",
    requires=("mixed3a", "mixed3b"),
    suite="shapes",
)
def shapes_echo(ctx: Context) -> ClaimResult:
    from circuits_vision.analysis.curve_experiments import echo_survey

    source, target = _need_detectors(ctx)
    survey = echo_survey(ctx.model, source_detectors=source, target_detectors=target, size=ctx.size)
    wins, losses = survey.sign_counts
    untied = max(wins + losses, 1)
    null = summary_null(
        wins / untied,
        survey.p_value,
        0.5,
        0.5 / math.sqrt(untied),
        "fraction of detectors whose echo the edit grows more than the control does",
        n=untied,
        description="exact sign test against the control edit, which removes as many orthogonal curves' "
        "inhibition instead (analysis.curve_experiments.echo_survey)",
    )
    verdict = (
        HOLDS
        if beats(null, P_CIRCUIT) and survey.n_echo > survey.n_control_echo
        else PARTLY
        if survey.n_echo > survey.n_control_echo
        else FAILS
    )
    record = recorded().get("measured", {}).get("echo_survey", {})
    agrees = record.get("echo") == survey.n_echo and record.get("control_echo") == survey.n_control_echo
    best = survey.reports[survey.strongest]
    measured = (
        f"an echo appears in {survey.n_echo} of {len(survey.reports)} mixed3b detectors, {survey.n_control_echo} "
        f"under the control; sign test p = {survey.p_value:.2g}; strongest mixed3b:{best.unit}, echo ratio "
        f"{best.echo_before:.2f} -> {best.echo_after:.2f} (recorded: {record.get('echo')} against "
        f"{record.get('control_echo')}; {'reproduced' if agrees else 'not the recorded figure'})"
    )
    rule = (
        f"holds: more echoes than under the control and the sign test at p < {P_CIRCUIT}; partly: more echoes "
        "only; else fails"
    )
    numbers = {
        **survey.summary(),
        "wins": wins,
        "losses": losses,
        "agrees_with_record": agrees,
    }
    return with_nulls(ClaimResult("shapes_echo", CIRCUITS, "", "", measured, verdict, rule, numbers), [null])


def _branch_claim(layer: str):
    name = f"shapes_branch_curves_{layer}"

    @claim(
        name,
        article=BRANCHES,
        figure=f"{layer}: curve detectors by branch",
        published=f"the curve detectors of {layer} sit in one branch (Circuits: all 30 curve-related mixed3b "
        f"units in mixed3b_5x5); recorded in shapes.json (measured.branch_specialization_best)",
        requires=(layer,),
        suite="shapes",
    )
    def check(ctx: Context) -> ClaimResult:
        from circuits_vision.analysis import branches

        units = sorted(d.unit for d in _detectors(ctx, layer))
        if not units:
            raise NotApplicable(f"find_curve_detectors finds no curve detector in {layer}")
        width = sum(stop - start for start, stop in ctx.model.branch_ranges(layer).values())
        found = branches.report(
            ctx.model, layer, {"curve_detector": units, "other": [u for u in range(width) if u not in units]}
        )
        row = found.best_branch("curve_detector")
        null = overlap_null(
            row.count,
            width,
            row.branch_size,
            len(units),
            f"curve detectors in the {row.branch} branch",
            members_label="branch",
        )
        corrected = min(1.0, row.p_bonferroni)
        null["p_value"] = corrected
        null["description"] += "; p Bonferroni-corrected over categories x branches (analysis.branches)"
        majority = row.count / len(units) > 0.5
        verdict = HOLDS if corrected < 0.01 and majority else PARTLY if corrected < P_PARTLY else FAILS
        record = recorded().get("measured", {}).get("branch_specialization_best", {}).get(f"{layer}/curve")
        record_text = (
            f"recorded: {record['count']} in {record['branch']}, p_bonf {record['p_bonferroni']:.2g}"
            if record
            else "nothing recorded"
        )
        # Where no branch is enriched the best row is a tie; the record agrees when it found none either.
        agrees = record is not None and (
            (record["branch"] == row.branch and record["count"] == f"{row.count}/{len(units)}")
            or (corrected >= P_PARTLY and record["p_bonferroni"] >= P_PARTLY)
        )
        measured = (
            f"{row.count}/{len(units)} curve detectors in the {row.branch} branch ({row.branch_size} of {width} "
            f"units), Bonferroni p = {corrected:.2g} ({record_text}; {'reproduced' if agrees else 'differs'})"
        )
        rule = "holds: most detectors in one branch, enriched at Bonferroni p < 0.01; partly: p < 0.05; else fails"
        numbers = {
            "branch": row.branch,
            "count": row.count,
            "detectors": len(units),
            "branch_size": row.branch_size,
            "p_bonferroni": corrected,
            "agrees_with_record": agrees,
        }
        return with_nulls(ClaimResult(name, BRANCHES, "", "", measured, verdict, rule, numbers), [null])

    check.__name__ = name
    return check


shapes_branch_curves_mixed3a = _branch_claim("mixed3a")
shapes_branch_curves_mixed3b = _branch_claim("mixed3b")


def _family(detectors):
    from circuits_vision.analysis.equivariance import Family

    ordered = sorted(detectors, key=lambda d: d.preferred_orientation)
    members = [d.unit for d in ordered]
    return Family(
        "rotation", members, {d.unit: float(d.preferred_orientation) for d in ordered}, members[0], 360.0, math.nan
    )


@claim(
    "shapes_equivariant_circuit",
    article=EQUIVARIANCE,
    figure="the equivariant circuit from mixed3a's curve detectors to mixed3b's",
    published="the weights from the mixed3a curve detectors to the mixed3b ones are rotated copies of one kernel "
    "per relative orientation (not recorded in shapes.json: measured here only)",
    requires=("mixed3a", "mixed3b"),
    suite="shapes",
)
def shapes_equivariant_circuit(ctx: Context) -> ClaimResult:
    from circuits_vision.analysis.equivariance import circuits

    source, target = _need_detectors(ctx)
    result = circuits.circuit(
        ctx.model, "mixed3a", "mixed3b", _family(target), source_family=_family(source), shuffles=199
    )
    null = sample_null(
        result.score,
        result.null_scores.numpy(),
        "equivariance score",
        description="both families' measured angles shuffled (analysis.equivariance.circuits)",
    )
    verdict = HOLDS if beats(null) else PARTLY if beats(null, P_PARTLY) else FAILS
    measured = (
        f"equivariance score {result.score:.3f} against {float(result.null_scores.mean()):.3f} with shuffled "
        f"angles (effect size {result.effect_size:.1f}), {len(source)} -> {len(target)} detectors"
    )
    rule = "holds: above the shuffled-angle null at p < 0.01; partly: p < 0.05; else fails"
    return with_nulls(
        ClaimResult(
            "shapes_equivariant_circuit",
            EQUIVARIANCE,
            "",
            "",
            measured,
            verdict,
            rule,
            {"score": result.score, "effect_size": result.effect_size},
        ),
        [null],
    )
