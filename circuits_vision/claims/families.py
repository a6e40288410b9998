"""Early Vision family claims (Olah et al., "An Overview of Early Vision in InceptionV1", Distill 2020):
the published members of a family against the units the toolkit's own test for that family finds."""

from __future__ import annotations

from circuits_vision.claims.context import Context
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult
from circuits_vision.models import facts

EARLY_VISION = "An Overview of Early Vision in InceptionV1 (Olah et al., Distill 2020)"
RECALL_HOLDS, RECALL_PARTLY, PRECISION_HOLDS = 0.7, 0.4, 0.5

# family measured by find_curve_detectors -> the published families whose units count as correct finds
# (curve-like families besides the named one: a found unit there is not a false positive).
CURVE_FAMILIES = {
    "conv2d2": ("Tiny Curves", ("Tiny Curves",)),
    "mixed3a": ("Curves", ("Curves",)),
    "mixed3b": ("Curves", ("Curves", "Double Curves", "Curves misc.", "Shallow Curves", "Curve Shapes",
                           "Evolute", "Circles / Loops")),
}


def _curve_family_claim(layer: str):
    name, related = CURVE_FAMILIES[layer]
    claim_name = f"early_vision_{layer}_curves"

    @claim(claim_name, article=EARLY_VISION, figure=f"{layer} family list: {name}",
           published=f"{layer} '{name}': units {facts.family(layer, name)}", requires=(layer,))
    def check(ctx: Context) -> ClaimResult:
        members = set(facts.family(layer, name))
        allowed = set().union(*(facts.family(layer, f) for f in related))
        found = set(ctx.curve_detectors(layer).units)
        recall = len(found & members) / len(members)
        precision = len(found & allowed) / len(found) if found else 0.0
        if recall >= RECALL_HOLDS and precision >= PRECISION_HOLDS:
            verdict = HOLDS
        elif recall >= RECALL_PARTLY:
            verdict = PARTLY
        else:
            verdict = FAILS
        measured = (f"find_curve_detectors finds {len(found)} units of {layer}; recall of the published "
                    f"{len(members)} members {recall:.2f} ({len(found & members)}), precision {precision:.2f} "
                    f"(finds inside the curve-related families {sorted(related)})")
        rule = (f"holds: recall >= {RECALL_HOLDS} and precision >= {PRECISION_HOLDS}; partly: recall >= "
                f"{RECALL_PARTLY}; else fails")
        return ClaimResult(claim_name, EARLY_VISION, "", "", measured, verdict, rule,
                           {"found": sorted(found), "recall": recall, "precision": precision,
                            "published": sorted(members)})

    check.__name__ = claim_name
    return check


early_vision_conv2d2_curves = _curve_family_claim("conv2d2")
early_vision_mixed3a_curves = _curve_family_claim("mixed3a")
early_vision_mixed3b_curves = _curve_family_claim("mixed3b")
