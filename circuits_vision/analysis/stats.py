"""Exact small-sample statistics used by the analyses: hypergeometric tails, the sign test and multiple-test corrections.

Everything is exact integer arithmetic (``math.comb``) so p-values far below float64's relative
precision of sums (e.g. 1e-23) are still right; ``log10`` variants stay finite where a float would
underflow to 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

__all__ = ["bonferroni", "holm", "hypergeometric_log10_sf", "hypergeometric_pmf", "hypergeometric_sf", "sign_test"]


def _check(k: int, population: int, successes: int, draws: int) -> None:
    for name, value in (("k", k), ("population", population), ("successes", successes), ("draws", draws)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if population < 0 or not 0 <= successes <= population or not 0 <= draws <= population:
        raise ValueError(
            f"need 0 <= successes ({successes}) <= population ({population}) and 0 <= draws ({draws}) <= population"
        )


def _tail(k: int, population: int, successes: int, draws: int) -> Fraction:
    """``P(X >= k)`` as an exact fraction, ``X ~ Hypergeometric(population, successes, draws)``."""
    _check(k, population, successes, draws)
    low = max(k, 0, draws - (population - successes))
    high = min(successes, draws)
    if low > high:
        return Fraction(0)
    numerator = sum(
        math.comb(successes, i) * math.comb(population - successes, draws - i) for i in range(low, high + 1)
    )
    return Fraction(numerator, math.comb(population, draws))


def hypergeometric_pmf(k: int, population: int, successes: int, draws: int) -> float:
    """``P(X = k)``: the chance that exactly ``k`` of ``draws`` items drawn without replacement from
    ``population`` items, ``successes`` of them marked, are marked."""
    _check(k, population, successes, draws)
    if not max(0, draws - (population - successes)) <= k <= min(successes, draws):
        return 0.0
    return math.comb(successes, k) * math.comb(population - successes, draws - k) / math.comb(population, draws)


def hypergeometric_sf(k: int, population: int, successes: int, draws: int) -> float:
    """One-sided over-representation p-value ``P(X >= k)`` (exact; Python's int division rounds correctly).

    For branch specialization: ``population`` = layer width, ``successes`` = branch width, ``draws`` =
    category size, ``k`` = category members inside the branch. All ``k`` members in the branch gives
    ``C(branch, k) / C(layer, k)``.
    """
    tail = _tail(k, population, successes, draws)
    return tail.numerator / tail.denominator


def hypergeometric_log10_sf(k: int, population: int, successes: int, draws: int) -> float:
    """``log10 P(X >= k)``, exact up to float rounding even when the p-value underflows float64."""
    tail = _tail(k, population, successes, draws)
    if tail == 0:
        return -math.inf
    return math.log10(tail.numerator) - math.log10(tail.denominator)


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact sign test: ``P(X >= wins)`` for ``X ~ Binomial(wins + losses, 1/2)`` (ties left out).

    The p-value that paired differences are positive more often than chance: ``wins`` pairs came out
    positive, ``losses`` negative. 1.0 when there are no untied pairs.
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be counts >= 0, got {wins} and {losses}")
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(wins, n + 1))
    return float(Fraction(tail, 2**n))


def bonferroni(p_values: Sequence[float], n_tests: int | None = None) -> list[float]:
    """``min(1, p * n_tests)`` for each p (``n_tests`` defaults to ``len(p_values)``)."""
    m = len(p_values) if n_tests is None else n_tests
    if m < len(p_values):
        raise ValueError(f"n_tests ({m}) must be at least the number of p-values ({len(p_values)})")
    return [min(1.0, p * m) for p in p_values]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    The i-th smallest p (0-based) is multiplied by ``m - i``; a running maximum keeps the adjusted
    values monotone in the raw ones; capped at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
