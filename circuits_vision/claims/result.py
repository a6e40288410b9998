"""What one claim check returns: the published figure, the measured one, a verdict and its rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from circuits_vision.results import Result

HOLDS, PARTLY, FAILS, NOT_APPLICABLE = "holds", "partly", "fails", "not applicable"
VERDICTS = (HOLDS, PARTLY, FAILS, NOT_APPLICABLE)


class NotApplicable(Exception):
    """Raised inside a claim when the model lacks what the claim is about; the message is the reason."""


@dataclass
class ClaimResult(Result):
    """The outcome of one claim on one model.

    Attributes:
        claim: the claim's name (``curve_detectors``...).
        article, figure: where it was published.
        published: what the article reports, in words and numbers.
        measured: what the toolkit measured on this model, in words and numbers.
        verdict: one of :data:`VERDICTS`.
        rule: how the verdict was decided from the measured numbers (thresholds included).
        numbers: the measured figures, by name (JSON-serialisable); ``numbers["nulls"]`` holds the null
            records (:mod:`circuits_vision.claims.nulls`) the verdict was decided against.
        seconds: time the measurement took.
        null: what the measured statistics were compared with, and their p-values, in words.
    """

    claim: str
    article: str
    figure: str
    published: str
    measured: str
    verdict: str
    rule: str
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    null: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def table(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in asdict(self).items() if k != "numbers"}]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClaimResult:
        return cls(**data)

    def __str__(self) -> str:
        return f"{self.claim}: {self.verdict} — published: {self.published}; measured: {self.measured} ({self.rule})"

    def __repr__(self) -> str:
        return f"ClaimResult({self.claim!r}, {self.verdict!r})"


def with_nulls(result: ClaimResult, nulls: list[dict]) -> ClaimResult:
    """``result`` with ``nulls`` recorded in its numbers and described in its ``null`` text."""
    from circuits_vision.claims.nulls import describe

    result.numbers["nulls"] = nulls
    result.null = "; ".join(describe(n) for n in nulls)
    return result


def grade(fraction: float, holds: float, partly: float) -> str:
    """``holds`` when ``fraction >= holds``, ``partly`` when ``>= partly``, else ``fails``."""
    if fraction >= holds:
        return HOLDS
    if fraction >= partly:
        return PARTLY
    return FAILS
