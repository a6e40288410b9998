"""The shapes suite: the claims that make sense on the shipped model, measured and set beside the figures
recorded in ``circuits_vision/data/shapes.json`` (read here too: the checkpoint may be retrained)."""

from __future__ import annotations

import json

import pytest
import torch

import circuits_vision as cv
from circuits_vision.claims import FAILS, HOLDS, PARTLY
from circuits_vision.claims.shipped import MIN_SECTORS
from circuits_vision.cli import main
from circuits_vision.models.shapes import ShapesNet, metadata_path

SHAPES_CLAIMS = [
    "shapes_curve_family_mixed3a",
    "shapes_curve_family_mixed3b",
    "shapes_curve_circuit",
    "shapes_echo",
    "shapes_branch_curves_mixed3a",
    "shapes_branch_curves_mixed3b",
    "shapes_equivariant_circuit",
]


@pytest.fixture(scope="module")
def record():
    return json.loads(metadata_path().read_text())


@pytest.fixture(scope="module")
def report():
    return cv.reproduce(cv.models.load("shapes"), progress=False)  # the shapes suite, chosen for a ShapesNet


def test_suite_runs_on_the_shipped_model(report):
    assert [r.claim for r in report.results] == SHAPES_CLAIMS
    assert all(r.null for r in report.results)


@pytest.mark.parametrize("layer", ["mixed3a", "mixed3b"])
def test_curve_family_reproduces_the_record(report, record, layer):
    result = report[f"shapes_curve_family_{layer}"]
    recorded = record["curve_detectors"][layer]
    assert result.numbers["units"] == recorded["units"] and result.numbers["agrees_with_record"]
    assert result.numbers["sectors_45deg"] == recorded["sectors_45deg"]
    beyond_random = len(recorded["units"]) > max(result.numbers["random_counts"])
    expected = (
        HOLDS if beyond_random and len(recorded["sectors_45deg"]) >= MIN_SECTORS else PARTLY if beyond_random else FAILS
    )
    assert result.verdict == expected, str(result)
    assert f"recorded: {len(recorded['units'])} units" in result.measured


def test_curve_circuit_reproduces_the_record(report, record):
    result = report["shapes_curve_circuit"]
    recorded = record["measured"]["curve_circuit"]
    assert result.numbers["correlation"] == pytest.approx(recorded["correlation_net_vs_cos_delta"], abs=1e-3)
    assert result.numbers["p_value"] == pytest.approx(recorded["permutation_p"], abs=0.03)
    holds = recorded["permutation_p"] < 0.01 and recorded["aligned_mean_net"] > 0 > recorded["opposite_mean_net"]
    assert (result.verdict == HOLDS) == holds, str(result)
    assert result.numbers["agrees_with_record"]


def test_echo_reproduces_the_record(report, record):
    result = report["shapes_echo"]
    recorded = record["measured"]["echo_survey"]
    assert result.numbers["echo"] == recorded["echo"] and result.numbers["control_echo"] == recorded["control_echo"]
    assert result.numbers["p_value"] == pytest.approx(recorded["p_value"], rel=1e-9)
    holds = recorded["p_value"] < 0.01 and recorded["echo"] > recorded["control_echo"]
    assert (result.verdict == HOLDS) == holds and result.numbers["agrees_with_record"], str(result)


@pytest.mark.parametrize("layer", ["mixed3a", "mixed3b"])
def test_branch_specialization_reproduces_the_record(report, record, layer):
    result = report[f"shapes_branch_curves_{layer}"]
    recorded = record["measured"]["branch_specialization_best"][f"{layer}/curve"]
    assert result.numbers["p_bonferroni"] == pytest.approx(recorded["p_bonferroni"], rel=1e-6)
    assert result.numbers["agrees_with_record"]
    count, size = map(int, recorded["count"].split("/"))
    holds = recorded["p_bonferroni"] < 0.01 and count / size > 0.5
    assert (result.verdict == HOLDS) == holds, str(result)


def test_random_initialisation_does_not_hold():
    model = ShapesNet(generator=torch.Generator().manual_seed(7)).eval()
    report = cv.reproduce(model, progress=False)
    assert HOLDS not in report.verdicts().values(), str(report)
    assert report["shapes_curve_family_mixed3b"].verdict == FAILS


def test_cli_prints_the_shapes_claims(tmp_path, capsys):
    assert main(["reproduce", "--model", "shapes", "--out", str(tmp_path), "--claims", "shapes_curve_family_*"]) == 0
    printed = capsys.readouterr().out
    assert "shapes_curve_family_mixed3b" in printed and "recorded:" in printed and "report.html" in printed
    assert (tmp_path / "figures" / "shapes_curve_family_mixed3b.png").is_file()
