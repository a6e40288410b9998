"""Branch Specialization claims (Voss et al., Distill 2021): a family of units lies in one branch."""

from __future__ import annotations

from circuits_vision.claims.context import Context
from circuits_vision.claims.nulls import beats, overlap_null
from circuits_vision.claims.registry import claim
from circuits_vision.claims.result import FAILS, HOLDS, PARTLY, ClaimResult, with_nulls
from circuits_vision.models import facts

BRANCHES = "Branch Specialization (Voss et al., Distill 2021)"
P_HOLDS = 1e-3  # the article's bounds (1e-8, 1e-20) need the real layer's counts: a stricter bar than 0.01
RECALL_HOLDS = 0.8


def _in_branch(ctx: Context, layer: str, units: list[int], branch: str) -> tuple[int, float]:
    from circuits_vision.analysis.branches import specialization

    result = specialization(ctx.model, layer, {"measured": units}, branches=facts.branch_ranges(layer))
    row = next(r for r in result.rows if r.branch == branch)
    return row.count, row.p_value


def _verdict(recall: float, concentrated: bool) -> str:
    if recall >= RECALL_HOLDS and concentrated:
        return HOLDS
    if recall >= RECALL_HOLDS or concentrated:
        return PARTLY
    return FAILS


def _nulls(layer: str, members: list[int], measured: list[int], in_branch: int, what: str) -> list[dict]:
    """The published members among the measured units, and the measured units in the 5x5 branch, each against
    shuffled unit labels."""
    width = facts.layer_width(layer)
    start, stop = facts.branch_ranges(layer)["5x5"]
    return [
        overlap_null(
            len(set(members) & set(measured)),
            width,
            len(members),
            len(measured),
            f"published units among the {len(measured)} measured {what}",
        ),
        overlap_null(
            in_branch,
            width,
            stop - start,
            len(measured),
            f"measured {what} in the 5x5 branch",
            members_label="5x5 branch",
        ),
    ]


def _published(index: int) -> dict:
    return facts.branch_specialization_claims()[index]


@claim(
    "branch_bw_mixed3a_5x5",
    article=BRANCHES,
    figure="mixed3a: black-and-white vs colour units in the 5x5 branch",
    published="all 9 'BW vs Color' units of mixed3a ({}) lie in its 5x5 branch (192-224), p < 1e-8".format(
        facts.branch_specialization_claims()[0]["units"]
    ),
    requires=("mixed3a",),
)
def branch_bw_mixed3a(ctx: Context) -> ClaimResult:
    from circuits_vision.analysis.unit_categories import color_categories

    fact = _published(0)
    measured_bw = ctx.shared(
        ("color_categories", "mixed3a"), lambda: color_categories(ctx.model, "mixed3a", size=min(ctx.size, 96))
    )["black_and_white"]
    members = fact["units"]
    recall = len(set(members) & set(measured_bw)) / len(members)
    count, p = _in_branch(ctx, "mixed3a", measured_bw, "5x5") if measured_bw else (0, 1.0)
    nulls = _nulls("mixed3a", members, measured_bw, count, "black-and-white")
    verdict = _verdict(recall, p < P_HOLDS) if beats(nulls[0]) or recall < RECALL_HOLDS else PARTLY
    measured = (
        f"color_categories marks {len(measured_bw)} mixed3a units black-and-white; {count} of them in the "
        f"5x5 branch (hypergeometric p = {p:.2g}); {recall:.0%} of the 9 published units measured "
        "black-and-white"
    )
    rule = (
        f"holds: >= {RECALL_HOLDS:.0%} of the published units measured black-and-white and the measured "
        f"black-and-white units enriched in the 5x5 branch at p < {P_HOLDS:g}; partly: one of the two"
    )
    rule += "; the recall must also beat the shuffled-label null at p < 0.01 for holds"
    return with_nulls(
        ClaimResult(
            "branch_bw_mixed3a_5x5",
            BRANCHES,
            "",
            "",
            measured,
            verdict,
            rule,
            {
                "measured_bw": measured_bw,
                "in_5x5": count,
                "p_value": p,
                "recall": recall,
                "published_p_bound": fact["article_p_bound"],
            },
        ),
        nulls,
    )


@claim(
    "branch_curves_mixed3b_5x5",
    article=BRANCHES,
    figure="mixed3b: curve-related units in the 5x5 branch",
    published="all 30 curve-related units of mixed3b lie in its 5x5 branch (320-416), p < 1e-20",
    requires=("mixed3b",),
)
def branch_curves_mixed3b(ctx: Context) -> ClaimResult:
    fact = _published(1)
    found = ctx.curve_detectors("mixed3b").units
    members = fact["units"]
    recall = len(set(members) & set(found)) / len(members)
    count, p = _in_branch(ctx, "mixed3b", found, "5x5") if found else (0, 1.0)
    nulls = _nulls("mixed3b", members, found, count, "curve detectors")
    enriched = bool(found) and p < P_HOLDS
    majority = bool(found) and count / len(found) > 0.5
    # The claim is about where curve units are, not whether every published one is found: recall only
    # decides between partly and fails.
    verdict = HOLDS if enriched and majority else PARTLY if enriched or recall >= RECALL_HOLDS else FAILS
    measured = (
        f"find_curve_detectors finds {len(found)} mixed3b curve detectors, {count} of them in the 5x5 "
        f"branch (hypergeometric p = {p:.2g}); {recall:.0%} of the 30 published units found"
    )
    rule = (
        f"holds: most found curve detectors in the 5x5 branch (20% of the layer), enriched at p < {P_HOLDS:g}; "
        f"partly: enriched only, or >= {RECALL_HOLDS:.0%} of the published units found; else fails"
    )
    return with_nulls(
        ClaimResult(
            "branch_curves_mixed3b_5x5",
            BRANCHES,
            "",
            "",
            measured,
            verdict,
            rule,
            {
                "found": found,
                "in_5x5": count,
                "p_value": p,
                "recall": recall,
                "published_p_bound": fact["article_p_bound"],
            },
        ),
        nulls,
    )
