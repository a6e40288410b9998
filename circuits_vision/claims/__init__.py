"""circuits_vision.claims: the published Circuits claims about InceptionV1, each checked on given weights.

    import circuits_vision as cv
    model = cv.models.inceptionv1(weights="inception5h.pth")
    report = cv.reproduce(model, out="reproduction")     # report.html, report.json, records/
    report["curve_circuits"].verdict                     # 'holds' / 'partly' / 'fails' / 'not applicable'

Each claim is one small function with its source (article, figure), in :mod:`.curves` (Curve Detectors,
Curve Circuits), :mod:`.echo` (the echo edit), :mod:`.families` (Early Vision family lists),
:mod:`.branches` (Branch Specialization), :mod:`.equivariance`, :mod:`.frequency` (High-Low Frequency
Detectors) and :mod:`.banding` (Weight Banding); it measures with the toolkit's own tools, compares each
statistic with a null (:mod:`.nulls`: shuffled unit labels, permuted angles, noise) and says how its verdict
was decided. :mod:`.shipped` holds the claims that apply to the shipped ``shapes`` model
(``reproduce(cv.models.load("shapes"))``), printed beside the figures recorded in its ``shapes.json``.
Each claim's figure (:mod:`.figures`) is written next to the report.
"""

from circuits_vision.claims.registry import CLAIMS, Claim, select
from circuits_vision.claims.report import Reproduction
from circuits_vision.claims.reproduce import reproduce, run_claim
from circuits_vision.claims.result import FAILS, HOLDS, NOT_APPLICABLE, PARTLY, VERDICTS, ClaimResult, NotApplicable


def available_claims(suite: str = "inceptionv1") -> list[str]:
    """Names of every claim of ``suite`` (``"inceptionv1"`` or ``"shapes"``) :func:`reproduce` knows."""
    return [c.name for c in select(None, suite)]


__all__ = [
    "CLAIMS",
    "FAILS",
    "HOLDS",
    "NOT_APPLICABLE",
    "PARTLY",
    "VERDICTS",
    "Claim",
    "ClaimResult",
    "NotApplicable",
    "Reproduction",
    "available_claims",
    "reproduce",
    "run_claim",
    "select",
]
