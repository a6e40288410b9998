"""The Circuits figures of the shipped ``shapes`` checkpoint, measured with the toolkit's defaults.

The numbers are those recorded in ``circuits_vision/data/shapes.json`` (``"measured"``, written by
``benchmarks/measure_shapes.py``); each test recomputes its figure and holds it within a margin, so a
change of checkpoint or of the analyses that moves a figure shows up here.
"""

from __future__ import annotations

import json

import pytest

from circuits_vision.analysis import branches, curve_circuits, curve_experiments
from circuits_vision.analysis.tuning import find_curve_detectors
from circuits_vision.models.shapes import metadata_path, shapes

# Measured on the shipped checkpoint: 21 mixed3b detectors over 7 of 8 sectors (none in 225..270), 7 mixed3a
# detectors over 6 sectors, 6 of them in mixed3a's 5x5 branch; ablating the mixed3b detectors costs 21 points.
MIN_SECTORS_3B = 7
MIN_DETECTORS_3A, MIN_SECTORS_3A = 7, 6
ABLATION_DROP = 0.15
BRANCH_LAYER, BRANCH = "mixed3a", "5x5"


@pytest.fixture(scope="module")
def model():
    return shapes()


@pytest.fixture(scope="module")
def measured():
    return json.loads(metadata_path().read_text())["measured"]


@pytest.fixture(scope="module")
def detectors(model):
    return {layer: find_curve_detectors(model, layer).detectors for layer in ("mixed3a", "mixed3b")}


def test_mixed3b_curve_family(detectors, measured):
    found = detectors["mixed3b"]
    sectors = {int(d.preferred_orientation // 45) for d in found}
    assert len(found) >= 8, [d.unit for d in found]
    assert len(sectors) >= MIN_SECTORS_3B, sorted(sectors)
    assert [d.unit for d in found] == measured["curve_detectors_mixed3b"]["units"]


def test_mixed3a_precursors(detectors, measured):
    found = detectors["mixed3a"]
    assert len(found) >= MIN_DETECTORS_3A and len({int(d.preferred_orientation // 45) for d in found}) >= MIN_SECTORS_3A
    assert [d.unit for d in found] == measured["curve_detectors_mixed3a"]["units"]


def test_curve_circuit_figure(model, detectors, measured):
    circuit = curve_circuits.curve_circuit(
        model, source_detectors=detectors["mixed3a"], target_detectors=detectors["mixed3b"], permutations=2000
    )
    recorded = measured["curve_circuit"]
    assert circuit.n_pairs == recorded["pairs"]
    assert circuit.correlation == pytest.approx(recorded["correlation_net_vs_cos_delta"], abs=1e-3)
    assert circuit.p_value == pytest.approx(recorded["permutation_p"], abs=0.03)
    assert circuit.aligned_mean == pytest.approx(recorded["aligned_mean_net"], rel=1e-3)
    assert circuit.opposite_mean == pytest.approx(recorded["opposite_mean_net"], rel=1e-3)


@pytest.mark.slow
def test_echo_on_the_shipped_model(model, detectors, measured):
    result = curve_experiments.echo(model, source_detectors=detectors["mixed3a"], target_detectors=detectors["mixed3b"])
    recorded = measured["echo"]
    assert result.unit == recorded["unit"] and result.opposite_units == recorded["opposite_units"]
    assert result.echo_before == pytest.approx(recorded["echo_before"], abs=0.02)
    assert result.echo_after == pytest.approx(recorded["echo_after"], abs=0.02)
    assert result.removed_weight < 0


@pytest.mark.slow
def test_hand_built_replacement_on_the_shipped_model(model, detectors, measured):
    result = curve_experiments.replace_curve_detectors_on_scenes(
        model, source_detectors=detectors["mixed3a"], target_detectors=detectors["mixed3b"]
    )
    recorded = measured["replacement"]["accuracy"]
    for key, value in (
        ("original", result.ablated.before),
        ("ablated", result.ablated.after),
        ("hand_built", result.replaced.after),
    ):
        assert value == pytest.approx(recorded[key], abs=0.005), key
    assert result.ablated.after < result.ablated.before - ABLATION_DROP  # the curve detectors matter
    assert set(result.curve_classes) == {f"curve_{a}" for a in range(0, 360, 45)}


def test_branch_specialization(model, detectors):
    units = {d.unit for d in detectors[BRANCH_LAYER]}
    width = 104 if BRANCH_LAYER == "mixed3a" else 160
    found = branches.report(
        model, BRANCH_LAYER, {"curve_detector": sorted(units), "other": [u for u in range(width) if u not in units]}
    )
    row = found.best_branch("curve_detector")
    assert row.branch == BRANCH and row.p_bonferroni < 0.01, found
