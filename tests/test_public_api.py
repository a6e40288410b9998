"""The public API: every subpackage lists __all__, the lazy top level resolves its names, help() shows them."""

from __future__ import annotations

import importlib
import pkgutil
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

import circuits_vision as cv

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = sorted(
    name for _, name, is_package in pkgutil.walk_packages(cv.__path__, "circuits_vision.") if is_package
)


def test_the_subpackages_are_found():
    assert {"circuits_vision.analysis", "circuits_vision.viz", "circuits_vision.compat.lucent"} <= set(SUBPACKAGES)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_lists_its_names_and_each_resolves(name):
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"
    for public in module.__all__:
        if not hasattr(module, public):  # a submodule listed for `from package import *`
            importlib.import_module(f"{name}.{public}")


def test_the_top_level_lists_its_lazy_names_and_each_resolves():
    assert set(cv.__all__) == {"__version__", *cv._SUBPACKAGES, *cv._SHORTCUTS, *cv._ANALYSIS_SHORTCUTS}
    for name in cv.__all__:
        assert getattr(cv, name) is not None
    assert callable(cv.branches) and callable(cv.equivariance) and callable(cv.render)


def test_help_shows_the_names_of_analysis_and_viz():
    analysis = pydoc.render_doc(cv.analysis, renderer=pydoc.plaintext)
    assert "find_curve_detectors(" in analysis and "class TuningCurves" in analysis and "ablate(" in analysis
    viz = pydoc.render_doc(cv.viz, renderer=pydoc.plaintext)
    assert "small_multiples(" in viz and "render_grid(" in viz and "plot_report(" in viz


def test_import_is_cheap_and_viz_submodules_need_no_import():
    code = (
        "import sys, circuits_vision as cv; assert 'torch' not in sys.modules, 'torch imported eagerly'; "
        "print(cv.viz.weights.small_multiples.__module__, cv.viz.families.family_figure.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["circuits_vision.viz.weights", "family_figure"]
