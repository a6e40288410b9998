"""Bad settings of the family searches fail at once with a message naming the setting and its range."""

from __future__ import annotations

import pytest

from circuits_vision.analysis import equivariance as eq
from circuits_vision.analysis._arguments import check_family_search
from circuits_vision.models import planted

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return planted.curve_circuit().model


@pytest.mark.parametrize(
    "settings, error, message",
    [
        ({"threshold": 5}, ValueError, r"threshold must be in \(0, 1\].*got 5"),
        ({"threshold": -2}, ValueError, r"threshold must be in \(0, 1\]"),
        ({"threshold": 0.0}, ValueError, r"threshold must be in \(0, 1\]"),
        ({"threshold": float("nan")}, ValueError, r"threshold must be in \(0, 1\]"),
        ({"threshold": "high"}, TypeError, "threshold must be a number"),
        ({"invariant_threshold": 1.5}, ValueError, r"invariant_threshold must be in \(0, 1\]"),
        ({"units": []}, ValueError, "units is empty"),
        ({"min_members": 0}, ValueError, "min_members must be >= 2"),
        ({"min_members": 1}, ValueError, "min_members must be >= 2"),
        ({"min_members": 2.5}, TypeError, "min_members must be an integer"),
        ({"steps": -4}, ValueError, "steps must be >= 2"),
        ({"steps": 0}, ValueError, "steps must be >= 2"),
    ],
)
def test_equivariance_report_rejects_bad_settings_before_any_work(model, settings, error, message):
    with pytest.raises(error, match=message):
        eq.report(model, "edges", **settings)


def test_good_settings_pass_and_still_find_the_planted_families(model):
    check_family_search(threshold=1, invariant_threshold=0.9, min_members=2, units=[0, 1], steps=2)
    found = eq.report(model, "edges", threshold=0.9, min_members=8, steps=36)
    assert sorted(sorted(f.members) for f in found.families) == [list(range(8)), list(range(8, 16))]
