"""Early Vision family claims (Olah et al., "An Overview of Early Vision in InceptionV1", Distill 2020):
the published members of a family against the units the toolkit's own test for that family finds.

Each family is checked by the tool that defines it: curve families by
:func:`~circuits_vision.analysis.tuning.find_curve_detectors`, colour-contrast and black-and-white
families by :func:`~circuits_vision.analysis.unit_categories.color_categories`, Gabor and line families by
:func:`~circuits_vision.analysis.unit_categories.orientation_categories`, the high-low frequency family by
tuning curves to :func:`~circuits_vision.stimuli.high_low` boundaries against plain gratings. Reported as
precision and recall of the published members; the verdict compares the overlap with its null (the same
number of units drawn at random from the layer: shuffled unit labels).
"""

from __future__ import annotations

from collections.abc import Callable

from circuits_vision.claims.context import Context
from circuits_vision.claims.nulls import P_PARTLY, beats, overlap_null
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult, with_nulls
from circuits_vision.models import facts

EARLY_VISION = "An Overview of Early Vision in InceptionV1 (Olah et al., Distill 2020)"
RECALL_HOLDS = 0.5  # most of the published members found, beyond chance
PROBE_SIZE = 96  # colour / orientation probes: enough for the receptive fields up to mixed3a
HIGH_LOW_RATIO, HIGH_LOW_MIN_Z = 1.5, 2.0

CURVE_RELATED = (
    "Curves",
    "Double Curves",
    "Curves misc.",
    "Shallow Curves",
    "Curve Shapes",
    "Evolute",
    "Circles / Loops",
    "Tiny Curves",
)


def _curves(ctx: Context, layer: str) -> list[int]:
    return list(ctx.curve_detectors(layer).units)


def _colour(category: str) -> Callable[[Context, str], list[int]]:
    def measure(ctx: Context, layer: str) -> list[int]:
        from circuits_vision.analysis.unit_categories import color_categories

        size = min(ctx.size, PROBE_SIZE)
        return ctx.shared(("color_categories", layer), lambda: color_categories(ctx.model, layer, size=size))[category]

    measure.__doc__ = f"color_categories(...)['{category}']"
    return measure


def _oriented(ctx: Context, layer: str) -> list[int]:
    from circuits_vision.analysis.unit_categories import orientation_categories

    size = min(ctx.size, PROBE_SIZE)
    return ctx.shared(("orientation_categories", layer), lambda: orientation_categories(ctx.model, layer, size=size))[
        "oriented"
    ]


def _high_low(ctx: Context, layer: str) -> list[int]:
    """Units whose best response to a high-low frequency boundary (12 orientations) is >= 1.5 x their best
    response to the high or the low frequency alone and >= 2 noise SDs."""
    from circuits_vision import stimuli
    from circuits_vision.analysis.tuning import tuning_curves

    axes = {"orientation": list(range(0, 360, 30))}
    boundary = tuning_curves(ctx.model, layer, None, stimuli.high_low, axes, size=ctx.size)
    plain = [
        tuning_curves(
            ctx.model,
            layer,
            None,
            stimuli.high_low,
            axes,
            fixed={"ratio": 1.0, "frequency": f},
            size=ctx.size,
            baseline=(boundary.baseline_mean, boundary.baseline_std),
        )
        for f in (0.25, 0.0625)
    ]
    best = boundary.responses.flatten(1).amax(1)
    alone = plain[0].responses.flatten(1).amax(1).maximum(plain[1].responses.flatten(1).amax(1)).clamp_min(0)
    noise = boundary.baseline_mean / boundary.baseline_std
    keep = (best >= HIGH_LOW_RATIO * alone) & (best - noise >= HIGH_LOW_MIN_Z)
    return [u for u, k in zip(boundary.units, keep.tolist()) if k]


# (layer, published family, tool, tool's name, published families whose units are not false positives)
FAMILIES = [
    ("conv2d2", "Tiny Curves", _curves, "find_curve_detectors", ("Tiny Curves",)),
    ("mixed3a", "Curves", _curves, "find_curve_detectors", ("Curves",)),
    ("mixed3b", "Curves", _curves, "find_curve_detectors", CURVE_RELATED),
    ("mixed3a", "BW vs Color", _colour("black_and_white"), "color_categories: black_and_white", ("BW vs Color",)),
    ("conv2d0", "Color Contrast", _colour("color"), "color_categories: color", ("Color Contrast",)),
    (
        "conv2d1",
        "Color Contrast",
        _colour("color"),
        "color_categories: color",
        ("Color Contrast", "Color", "Multicolor"),
    ),
    (
        "conv2d2",
        "Color Contrast",
        _colour("color"),
        "color_categories: color",
        ("Color Contrast", "Color/Multicolor", "Color Center-Surround"),
    ),
    (
        "mixed3a",
        "Color Contrast",
        _colour("color"),
        "color_categories: color",
        ("Color Contrast", "Color Center-Surround"),
    ),
    ("conv2d0", "Gabor Filters", _oriented, "orientation_categories: oriented", ("Gabor Filters",)),
    ("conv2d2", "Line", _oriented, "orientation_categories: oriented", ("Line", "Shifted Line", "Gabor Textures")),
    ("mixed3a", "Lines", _oriented, "orientation_categories: oriented", ("Lines", "Line Misc.", "Thick Lines")),
    ("mixed3a", "High-Low Frequency", _high_low, "high-low boundary vs plain gratings", ("High-Low Frequency",)),
]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def plot_overlap(numbers: dict, ax) -> None:
    ax.bar(["recall", "precision"], [numbers["recall"], numbers["precision"]], color=["#3060c0", "#60a060"])
    ax.set_ylim(0, 1)
    ax.set_title(f"{len(numbers['found'])} found, {len(numbers['published'])} published", fontsize=7)
    ax.tick_params(labelsize=6)


def _family_claim(layer: str, name: str, measure: Callable, tool: str, related: tuple[str, ...]):
    # The curve families keep the short names they were published under in earlier reports.
    claim_name = f"early_vision_{layer}_{'curves' if measure is _curves else _slug(name)}"

    @claim(
        claim_name,
        article=EARLY_VISION,
        figure=f"{layer} family list: {name}",
        published=f"{layer} '{name}': units {facts.family(layer, name)}",
        requires=(layer,),
        plot=plot_overlap,
    )
    def check(ctx: Context) -> ClaimResult:
        members = set(facts.family(layer, name))
        allowed = set().union(*(facts.family(layer, f) for f in related if f in facts.families(layer)))
        found = set(measure(ctx, layer))
        width = facts.layer_width(layer)
        recall = len(found & members) / len(members)
        precision = len(found & allowed) / len(found) if found else 0.0
        null = overlap_null(
            len(found & members),
            width,
            len(members),
            len(found),
            f"published {name} members among the {len(found)} found",
        )
        if beats(null) and recall >= RECALL_HOLDS:
            verdict = HOLDS
        elif beats(null, P_PARTLY):
            verdict = PARTLY
        else:
            verdict = FAILS
        measured = (
            f"{tool} finds {len(found)} units of {layer}; recall of the published {len(members)} members "
            f"{recall:.2f} ({len(found & members)}), precision {precision:.2f} (finds inside {sorted(related)})"
        )
        rule = (
            f"holds: more published members found than chance at p < 0.01 (hypergeometric, shuffled unit "
            f"labels) and recall >= {RECALL_HOLDS}; partly: beyond chance at p < 0.05; else fails"
        )
        result = ClaimResult(
            claim_name,
            EARLY_VISION,
            "",
            "",
            measured,
            verdict,
            rule,
            {
                "found": sorted(found),
                "recall": recall,
                "precision": precision,
                "published": sorted(members),
                "tool": tool,
            },
        )
        return with_nulls(result, [null])

    check.__name__ = claim_name
    return check


for _row in FAMILIES:
    _family_claim(*_row)
