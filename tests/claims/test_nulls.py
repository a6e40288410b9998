"""The nulls verdicts are decided against: each p-value checked against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from circuits_vision.claims import nulls
from circuits_vision.claims.figures import claim_figure
from circuits_vision.claims.result import HOLDS, NOT_APPLICABLE, ClaimResult, with_nulls


def test_overlap_null_is_the_hypergeometric_tail():
    # 3 of 5 found units among 10 published of a 100-unit layer.
    record = nulls.overlap_null(3, 100, 10, 5, "members")
    direct = sum(math.comb(10, k) * math.comb(90, 5 - k) for k in range(3, 6)) / math.comb(100, 5)
    assert record["p_value"] == pytest.approx(direct, rel=1e-9)
    assert sum(record["pmf"]) == pytest.approx(1.0) and record["expected"] == pytest.approx(0.5)
    assert nulls.overlap_null(0, 100, 10, 0, "nothing found")["p_value"] == 1.0


def test_binomial_null():
    record = nulls.binomial_null(2, 10, 0.1, "pairs")
    assert record["p_value"] == pytest.approx(1 - 0.9**10 - 10 * 0.1 * 0.9**9)


def test_sample_null_counts_as_extreme_values():
    samples = np.arange(99.0)  # 0..98
    assert nulls.sample_null(97.5, samples, "s")["p_value"] == pytest.approx(2 / 100)  # 98 is as extreme
    assert nulls.sample_null(0.5, samples, "s", greater=False)["p_value"] == pytest.approx(2 / 100)
    assert nulls.sample_null(math.nan, samples, "s")["p_value"] == 1.0
    record = nulls.sample_null(1.0, np.zeros(5000), "s")
    assert len(record["samples"]) <= nulls.MAX_SAMPLES and record["n"] == 5000


def test_reference_null_and_description():
    assert nulls.reference_null(3.0, 2.0, "z")["p_value"] == 0.0
    assert nulls.reference_null(1.0, 2.0, "z")["p_value"] == 1.0
    assert nulls.reference_null(1.0, 2.0, "z", greater=False)["p_value"] == 0.0
    text = nulls.describe(nulls.overlap_null(3, 100, 10, 5, "members"))
    assert text.startswith("members: 3 vs 0.50 expected") and "p = " in text


def test_figure_draws_every_null_kind():
    records = [
        nulls.overlap_null(3, 100, 10, 5, "members"),
        nulls.sample_null(1.0, np.arange(10.0), "s"),
        nulls.reference_null(3.0, 2.0, "z"),
        nulls.summary_null(0.5, 0.01, 0.0, 0.1, "r", n=100),
    ]
    result = with_nulls(ClaimResult("x", "a", "f", "p", "m", HOLDS, "r"), records)
    png = claim_figure(result, plot=lambda numbers, ax: ax.plot([0, 1], [0, 1]))
    assert png[:4] == b"\x89PNG"
    assert "p = 0.01" in result.null and result.numbers["nulls"] == records
    assert claim_figure(ClaimResult("x", "a", "f", "p", "m", NOT_APPLICABLE, "r")) is None
