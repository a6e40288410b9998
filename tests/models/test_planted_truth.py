"""The planted models' ground truth as typed records that still read like the nested dicts."""

from __future__ import annotations

import dataclasses

import pytest

from circuits_vision.models import planted, superposition
from circuits_vision.models.truth import (
    BranchBlockTruth,
    CircuitInputs,
    CurveCircuitTruth,
    CurveLayer,
    EdgeLayer,
    ReflectionTruth,
)


def test_curve_circuit_truth_is_typed_and_reads_like_a_dict():
    truth = planted.curve_circuit(8).truth
    assert isinstance(truth, CurveCircuitTruth) and isinstance(truth.edges, EdgeLayer)
    assert isinstance(truth.curves, CurveLayer) and isinstance(truth.circuit[0], CircuitInputs)
    assert truth.curves.units == list(range(8)) and truth["curves"]["units"] is truth.curves.units
    assert truth.curves.orientation_deg[3] == 135.0 and truth.rotation_step_deg == 45.0
    assert truth["circuit"][0]["excite"] == truth.circuit[0].excite
    # curve 0 faces 0 deg: its apex tangent is vertical (90 deg), the inhibiting edges horizontal
    assert {truth.edges.orientation_deg[u] for u in truth.circuit[0].excite} == {90.0}
    assert {truth.edges.orientation_deg[u] for u in truth.circuit[0].inhibit} == {0.0}
    assert set(truth) == {"edges", "curves", "circuit", "rotation_step_deg", "edge_shift_per_step"}
    assert "seed" not in truth and "union" not in truth and truth.get("seed") is None
    with pytest.raises(KeyError):
        truth["seed"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        truth.seed = 1


def test_the_control_and_the_union_unit_set_their_own_fields():
    control = planted.random_control(seed=3).truth
    assert control.seed == 3 and control.curves.units == [] and control.circuit == {}
    assert "rotation_step_deg" not in control
    union = planted.union_unit(8).truth
    assert union.union.case_units == [0, 4] and union["union"]["cases_deg"] == [0.0, 180.0]
    assert dataclasses.replace(union, union=None) == planted.curve_circuit(8).truth


def test_branch_reflection_and_superposition_truths():
    block = planted.branch_block(specialized=True).truth
    assert isinstance(block, BranchBlockTruth) and block.branch_of_category == {"color": "5x5"}
    assert block.categories["color"] == list(range(40, 48)) and block.downstream.fed_by[0] == "color"
    assert block["downstream"]["layer"] == "head"
    mirrors = planted.reflection_pairs().truth
    assert isinstance(mirrors, ReflectionTruth) and mirrors.corners.pairs == [(0, 1), (2, 3)]
    assert "normal_deg" in mirrors.lines and "normal_deg" not in mirrors.corners
    toy = superposition.superposition(n_features=6, n_neurons=3)
    assert toy.truth.layer == toy.truth["layer"] == "neurons" and tuple(toy.truth.directions.shape) == (6, 3)
