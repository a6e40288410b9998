"""circuits_vision.claims: the published Circuits claims about InceptionV1, each checked on given weights.

    import circuits_vision as cv
    model = cv.models.inceptionv1(weights="inception5h.pth")
    report = cv.reproduce(model, out="reproduction")     # report.html, report.json, records/
    report["curve_circuits"].verdict                     # 'holds' / 'partly' / 'fails' / 'not applicable'

Each claim is one small function with its source (article, figure), in :mod:`.curves` (Curve Detectors,
Curve Circuits), :mod:`.families` (Early Vision family lists) and :mod:`.branches` (Branch
Specialization); it measures with the toolkit's own tools and says how its verdict was decided.
"""

from circuits_vision.claims.registry import CLAIMS, Claim, select
from circuits_vision.claims.report import Reproduction
from circuits_vision.claims.reproduce import reproduce, run_claim
from circuits_vision.claims.result import FAILS, HOLDS, NOT_APPLICABLE, PARTLY, VERDICTS, ClaimResult, NotApplicable


def available_claims() -> list[str]:
    """Names of every claim :func:`reproduce` knows."""
    return [c.name for c in select(None)]


__all__ = ["CLAIMS", "FAILS", "HOLDS", "NOT_APPLICABLE", "PARTLY", "VERDICTS", "Claim", "ClaimResult",
           "NotApplicable", "Reproduction", "available_claims", "reproduce", "run_claim", "select"]
