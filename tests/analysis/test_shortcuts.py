"""The top-level analysis shortcuts: `cv.branches(...)` and `cv.equivariance(...)` are calls, and their
modules' other functions stay one attribute away; `cv.analysis.branches` etc. stay modules."""

from __future__ import annotations

import inspect
import types

import pytest

import circuits_vision as cv
from circuits_vision.analysis import branches as B
from circuits_vision.analysis import equivariance as eq
from circuits_vision.models import planted

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cv_branches_is_the_branch_report_call():
    pm = planted.branch_block(specialized=True)
    report = cv.branches(pm.model, "block", pm.truth["categories"])
    assert isinstance(report, B.BranchReport)
    assert report.best_branch("color").branch == pm.truth["branch_of_category"]["color"] == "5x5"
    assert report.table() == B.report(pm.model, "block", pm.truth["categories"]).table()
    # the design's example spelling, an attribute of the shortcut
    assert cv.branches.specialization is B.specialization
    assert "categories" in inspect.signature(cv.branches).parameters
    assert "Branch specialization" in cv.branches.__doc__


def test_cv_equivariance_is_the_equivariance_report_call():
    pm = planted.curve_circuit()
    found = cv.equivariance(pm.model, "edges")
    assert isinstance(found, eq.EquivarianceReport)
    assert [f.members for f in found.families] == [f.members for f in eq.report(pm.model, "edges").families]
    # real work: the planted bright and dark edge families, 8 orientations each
    assert sorted(sorted(f.members) for f in found.families) == [list(range(8)), list(range(8, 16))]
    assert cv.equivariance.rotation_families is eq.rotation_families


def test_analysis_modules_stay_modules_and_dir_lists_the_shortcuts():
    assert isinstance(cv.analysis.branches, types.ModuleType)
    assert isinstance(cv.analysis.equivariance, types.ModuleType)
    assert {"branches", "equivariance", "render", "expanded_weights"} <= set(dir(cv))
    assert cv.branches is cv.branches
    with pytest.raises(AttributeError, match="no_such_function"):
        _ = cv.branches.no_such_function
