"""The echo edit of Curve Circuits (Cammarata et al., Distill 2021): a curve detector's inhibition from
early curves facing the other way is what keeps it from answering the opposite curve."""

from __future__ import annotations

import math

from circuits_vision.analysis.curve_experiments import ECHO_GROWTH
from circuits_vision.claims.context import Context
from circuits_vision.claims.nulls import P_HOLDS, beats, reference_null
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult, NotApplicable, with_nulls
from circuits_vision.models import facts

CIRCUITS = "Curve Circuits (Cammarata et al., Distill 2021)"
NOISE_Z = 2.0  # the opposite response must clear the unit's noise-image responses by this many SDs


def published_detectors(layer: str):
    """The published curve units of ``layer`` as :class:`CurveDetector` records at their published angles."""
    from circuits_vision.analysis.tuning import CurveDetector

    nan = math.nan
    return [CurveDetector(u, a, nan, nan, nan, nan, nan) for u, a in facts.curve_orientations(layer).items()]


def plot_echo(numbers: dict, ax) -> None:
    ax.plot(numbers["orientations"], numbers["before"], label="before", color="#3060c0")
    ax.plot(numbers["orientations"], numbers["after"], label="inhibition removed", color="#c03030")
    ax.axvline(numbers["preferred_orientation"], color="#3060c0", linestyle=":", linewidth=0.8)
    ax.axvline((numbers["preferred_orientation"] + 180) % 360, color="#c03030", linestyle=":", linewidth=0.8)
    ax.set_xlabel("curve orientation (deg)", fontsize=7)
    ax.set_ylabel(f"3b:{numbers['unit']} (noise SDs)", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, frameon=False)


@claim(
    "curve_echo",
    article=CIRCUITS,
    figure="the echo: removing inhibition from opposite curves",
    published="removing a mixed3b curve detector's negative weights from the mixed3a curves facing the opposite "
    "way makes it respond to the curve rotated 180 degrees (an 'echo' in its tuning curve)",
    requires=("mixed3a", "mixed3b"),
    plot=plot_echo,
)
def curve_echo(ctx: Context) -> ClaimResult:
    from circuits_vision.analysis.curve_experiments import echo
    from circuits_vision.analysis.tuning import noise_baseline

    # The published units at their published orientations; echo() picks the 3b unit that receives the
    # most inhibition from opposite-facing 3a units.
    report = echo(
        ctx.model,
        "mixed3a",
        "mixed3b",
        source_detectors=published_detectors("mixed3a"),
        target_detectors=published_detectors("mixed3b"),
        size=ctx.size,
    )
    if not report.opposite_units:
        raise NotApplicable(f"no published mixed3a curve unit faces away from 3b:{report.unit}")
    before, after = report.before.numpy(), report.after.numpy()
    peak = int(before.argmax())
    opposite = (peak + len(before) // 2) % len(before)
    # The null: the unit's own responses to uniform-noise images (the tuning curves' baseline), in the
    # same units (responses / noise SD).
    mean, std = noise_baseline(ctx.model, "mixed3b", [report.unit], size=ctx.size)
    noise_level = float(mean[0] / std[0])
    z_before, z_after = float(before[opposite]) - noise_level, float(after[opposite]) - noise_level
    null = reference_null(
        z_after,
        NOISE_Z,
        "response at preferred + 180 deg after the edit, noise SDs above noise",
        description=f"responses of 3b:{report.unit} to 64 uniform-noise images (its tuning "
        f"baseline): an echo must clear their mean by {NOISE_Z:g} SDs",
    )
    growth = report.echo_after - report.echo_before
    appears = beats(null, P_HOLDS) and z_before < NOISE_Z and growth >= ECHO_GROWTH
    verdict = HOLDS if appears else PARTLY if growth >= ECHO_GROWTH else FAILS
    measured = (
        f"3b:{report.unit} (prefers {report.preferred_orientation:.0f} deg): removing {report.removed_weight:+.3g} "
        f"net weight from opposite 3a units {report.opposite_units} moves its response at "
        f"{float(report.orientations[opposite]):.0f} deg from {z_before:.2f} to {z_after:.2f} noise SDs above "
        f"noise; echo ratio {report.echo_before:.3f} -> {report.echo_after:.3f}"
    )
    rule = (
        f"holds: the response 180 deg from the preferred one is within noise before the edit (< {NOISE_Z:g} SDs), "
        f"clears the noise null by >= {NOISE_Z:g} SDs after it, and the echo ratio grows by >= {ECHO_GROWTH}; "
        f"partly: the ratio grows but not out of noise; else fails (analysis.curve_experiments.echo)"
    )
    numbers = {
        **report.summary(),
        "orientations": report.orientations.tolist(),
        "before": before.tolist(),
        "after": after.tolist(),
        "z_before": z_before,
        "z_after": z_after,
        "echo_growth": growth,
        "noise_level": noise_level,
    }
    return with_nulls(ClaimResult("curve_echo", CIRCUITS, "", "", measured, verdict, rule, numbers), [null])
