"""The nulls every verdict is decided against: what the measured statistic would be by chance.

Two kinds, each returned as a JSON-ready record ``{"statistic", "observed", "p_value", "kind", ...}`` that
the report prints and plots (:mod:`.figures`):

- :func:`overlap_null`: the overlap of two unit sets when the unit labels are shuffled (exact
  hypergeometric tail: the published members are a random set of the layer's units);
- :func:`sample_null`: a statistic against its values on shuffled data (permutation p-value), e.g. the
  orientation error with the published angles permuted among the units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

P_HOLDS, P_PARTLY = 0.01, 0.05
"""Significance levels a statistic must reach against its null for "holds" / "partly"."""
MAX_SAMPLES = 400  # null samples kept in a record (enough to draw its histogram)


def overlap_null(
    overlap: int, population: int, members: int, found: int, statistic: str, members_label: str = "published"
) -> dict:
    """``P(X >= overlap)`` for ``X`` the overlap of ``found`` random units of ``population`` with ``members``
    of them (hypergeometric), with the whole distribution of ``X`` for the figure."""
    from circuits_vision.analysis.stats import hypergeometric_pmf, hypergeometric_sf

    overlap, population, members, found = int(overlap), int(population), int(members), int(found)
    top = min(members, found)
    pmf = [hypergeometric_pmf(k, population, members, found) for k in range(top + 1)]
    p = hypergeometric_sf(overlap, population, members, found) if found else 1.0
    return {
        "kind": "overlap",
        "statistic": statistic,
        "observed": overlap,
        "p_value": float(p),
        "expected": members * found / population if population else 0.0,
        "support": list(range(top + 1)),
        "pmf": pmf,
        "description": f"shuffled unit labels: {found} random units of {population} overlap the "
        f"{members} {members_label} ones by {members * found / max(population, 1):.2f} on average",
    }


def binomial_null(successes: int, trials: int, chance: float, statistic: str, description: str = "") -> dict:
    """``P(X >= successes)`` for ``X ~ Binomial(trials, chance)``, with its distribution for the figure."""
    pmf = [math.comb(trials, k) * chance**k * (1 - chance) ** (trials - k) for k in range(trials + 1)]
    return {
        "kind": "overlap",
        "statistic": statistic,
        "observed": int(successes),
        "p_value": float(min(1.0, sum(pmf[successes:]))),
        "expected": trials * chance,
        "support": list(range(trials + 1)),
        "pmf": pmf,
        "description": description,
    }


def sample_null(
    observed: float,
    samples: Sequence[float] | np.ndarray,
    statistic: str,
    *,
    greater: bool = True,
    description: str = "",
) -> dict:
    """Permutation p-value of ``observed`` against ``samples`` drawn under the null (``greater``: large values
    are the claim's direction), ``(1 + #{as extreme}) / (1 + n)``."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if not math.isfinite(observed) or not len(samples):
        p = 1.0
    else:
        extreme = samples >= observed - 1e-12 if greater else samples <= observed + 1e-12
        p = float((1 + extreme.sum()) / (1 + len(samples)))
    kept = samples[:: max(1, len(samples) // MAX_SAMPLES)][:MAX_SAMPLES]
    return {
        "kind": "samples",
        "statistic": statistic,
        "observed": float(observed),
        "p_value": p,
        "greater": greater,
        "n": len(samples),
        "samples": [round(float(s), 6) for s in kept],
        "null_mean": float(samples.mean()) if len(samples) else math.nan,
        "null_q95": float(np.quantile(samples, 0.95 if greater else 0.05)) if len(samples) else math.nan,
        "description": description,
    }


def reference_null(
    observed: float, reference: float, statistic: str, *, greater: bool = True, description: str = ""
) -> dict:
    """A statistic against one fixed reference value of it under the null (e.g. its expectation for
    independent noise): ``p_value`` is 0 when ``observed`` is beyond it in the claim's direction, else 1."""
    beyond = observed > reference if greater else observed < reference
    return {
        "kind": "reference",
        "statistic": statistic,
        "observed": float(observed),
        "reference": float(reference),
        "p_value": 0.0 if beyond and math.isfinite(observed) else 1.0,
        "greater": greater,
        "description": description,
    }


def summary_null(
    observed: float, p_value: float, null_mean: float, null_std: float, statistic: str, *, n: int, description: str = ""
) -> dict:
    """A statistic whose permutation null was drawn by the tool that measured it (only its p-value, mean and
    spread are kept)."""
    return {
        "kind": "summary",
        "statistic": statistic,
        "observed": float(observed),
        "p_value": float(p_value),
        "null_mean": float(null_mean),
        "null_std": float(null_std),
        "n": int(n),
        "description": description,
    }


def beats(null: dict, level: float = P_HOLDS) -> bool:
    """The statistic is beyond its null at ``level`` (``p < level``)."""
    return null["p_value"] < level


def describe(null: dict) -> str:
    """One line for the report: the statistic, its value, the null it is compared with and the p-value."""
    if null["kind"] == "overlap":
        return (
            f"{null['statistic']}: {null['observed']} vs {null['expected']:.2f} expected ({null['description']}); "
            f"p = {null['p_value']:.2g}"
        )
    if null["kind"] == "reference":
        return (
            f"{null['statistic']}: {null['observed']:.3g} vs {null['reference']:.3g} under the null "
            f"({null['description']})"
        )
    if null["kind"] == "summary":
        return (
            f"{null['statistic']}: {null['observed']:.3g} vs null {null['null_mean']:.3g} +- {null['null_std']:.3g} "
            f"over {null['n']} draws ({null['description']}); p = {null['p_value']:.2g}"
        )
    return (
        f"{null['statistic']}: {null['observed']:.3g} vs null mean {null['null_mean']:.3g} over {null['n']} "
        f"draws ({null['description']}); p = {null['p_value']:.2g}"
    )
