"""Circuit motifs on planted models: the equivariant curve circuit, its pattern, the echo edit, the union unit."""

from __future__ import annotations

import pytest
import torch

from circuits_vision.analysis import equivariance as eq
from circuits_vision.analysis import motifs
from circuits_vision.analysis.equivariance import Family
from circuits_vision.models import planted
from circuits_vision.weights import expanded_weights

# Tiny tensors: one thread avoids oversubscription on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def curve_circuit():
    pm = planted.curve_circuit()
    edges = eq.report(pm.model, "edges")
    curves = eq.report(pm.model, "curves", source="edges", source_families=edges.families)
    bright = next(f for f in edges.families if pm.truth["edges"]["polarity"][f.members[0]] == "bright")
    return pm, bright, curves.families[0], expanded_weights(pm.model, "edges", "curves")


def test_planted_circuit_is_equivariant_and_shuffled_angles_are_not(curve_circuit):
    pm, edges, curves, weights = curve_circuit
    result = motifs.equivariant_circuit(weights, edges, curves)
    assert result.score > 0.95
    assert result.null_score < 0.5
    # 8 curves x 8 line orientations = 64 kernels; relative angles are multiples of 22.5 deg -> 16 kernels
    assert len(result.relative_angles) == 16 and result.reduction == pytest.approx(4.0)
    assert result.kernels.shape == (16, 15, 15)


def test_equivariance_score_drops_when_one_kernel_is_broken(curve_circuit):
    pm, edges, curves, weights = curve_circuit
    broken = weights.clone()
    g = torch.Generator().manual_seed(0)
    broken[curves.members[0]] = torch.randn(broken[0].shape, generator=g) * broken[0].std()
    assert (
        motifs.equivariant_circuit(broken, edges, curves).score
        < motifs.equivariant_circuit(weights, edges, curves).score - 0.05
    )


def test_curve_pattern_tangent_lines_excite_orthogonal_ones_inhibit(curve_circuit):
    pm, edges, curves, weights = curve_circuit
    pattern = motifs.curve_pattern(weights, edges, curves)
    assert pattern.holds and pattern.period == 180.0
    # the aligned relative angle really is "edge along the tangent at the apex" in the planted truth
    k = curves.members[0]
    excite = [u for u in pm.truth["circuit"][k]["excite"] if u in edges.members]
    inhibit = [u for u in pm.truth["circuit"][k]["inhibit"] if u in edges.members]
    d = lambda u: (curves.values[k] - edges.values[u]) % 180.0  # noqa: E731
    assert d(excite[0]) == pytest.approx(pattern.aligned, abs=1.0)
    assert d(inhibit[0]) == pytest.approx(pattern.opposite, abs=1.0)


def test_curve_pattern_with_a_given_convention(curve_circuit):
    pm, edges, curves, weights = curve_circuit
    found = motifs.curve_pattern(weights, edges, curves)
    assert motifs.curve_pattern(weights, edges, curves, aligned=found.aligned).holds
    swapped = motifs.curve_pattern(weights, edges, curves, aligned=found.opposite)  # the wrong convention
    assert not swapped.excites_aligned and not swapped.inhibits_opposite


def test_echo_experiment_edits_a_copy_and_the_opposite_response_grows(curve_circuit):
    pm, edges, curves, _ = curve_circuit
    before = pm.model.curves_pre_relu_conv.weight.clone()
    result = motifs.echo_experiment(pm.model, "edges", "curves", edges, curves, which="all", orientations=24)
    assert torch.equal(pm.model.curves_pre_relu_conv.weight, before)  # the original is untouched
    assert result.zeroed > 0
    assert float(result.echo_before.max()) < 0.05  # planted inhibition silences the opposite curve
    assert float(result.echo_after.min()) > float(result.echo_before.max()) + 0.1


def test_zero_inhibition_needs_a_direct_conv():
    pm = planted.union_unit()
    fam = Family("rotation", [0, 1, 2], {0: 0.0, 1: 45.0, 2: 90.0}, 0, 360.0, 1.0)
    with pytest.raises(ValueError, match="no single convolution"):
        motifs.zero_inhibition(
            pm.model,
            pm.truth["edges"]["layer"],
            pm.truth["union"]["layer"],
            fam,
            Family("rotation", [0], {0: 0.0}, 0, 360.0, 1.0),
        )


def test_union_unit_found_and_not_in_the_random_control():
    pm = planted.union_unit()
    truth = pm.truth["union"]
    curve_layer, edge_layer = pm.truth["curves"]["layer"], pm.truth["edges"]["layer"]
    curves = eq.report(pm.model, curve_layer, source=edge_layer, source_families="auto").families[0]
    found = motifs.union_units(expanded_weights(pm.model, curve_layer, truth["layer"]), curves)
    assert [u.unit for u in found] == [truth["unit"]]
    assert set(found[0].cases) == set(truth["case_units"])
    # the random control has no family to take a union over
    rc = planted.random_control(0)
    assert not eq.report(rc.model, "curves", source="edges", source_families="auto").families


def test_invariant_transitions_both_directions():
    fam = Family("rotation", [0, 1, 2, 3], {0: 0.0, 1: 90.0, 2: 180.0, 3: 270.0}, 0, 360.0, 1.0)
    x = torch.arange(5, dtype=torch.float32) - 2
    bar = torch.exp(-((x.view(1, -1) - 1.5) ** 2 + x.view(-1, 1) ** 2) / 1.5)  # a blob right of centre
    weights = torch.zeros(6, 4, 5, 5)
    weights[0] = 1.0  # pools every member equally: a "circle" unit
    weights[1, 0] = 1.0  # reads one member only
    found = motifs.invariant_transitions(weights, source_family=fam)
    assert [t.unit for t in found] == [0]
    # an invariant source feeding each member with a kernel turned by the member's angle
    down = torch.zeros(4, 3, 5, 5)
    for m, angle in enumerate([0.0, 90.0, 180.0, 270.0]):
        down[m, 1] = torch.rot90(bar, int(angle // 90), (0, 1))
        down[m, 2] = bar  # not rotating with the member
    found = motifs.invariant_transitions(down, target_family=fam)
    assert [t.unit for t in found] == [1] and found[0].rotates > 0.99


def test_family_indices_out_of_range_are_named(curve_circuit):
    pm, edges, curves, weights = curve_circuit
    bad = Family("rotation", [0, 99], {0: 0.0, 99: 45.0}, 0, 360.0, 1.0)
    with pytest.raises(IndexError, match="outside the weights"):
        motifs.equivariant_circuit(weights, edges, bad)


# ------------------------------------------------------------------------- editing the shipped model


@pytest.fixture(scope="module")
def shapes_model():
    from circuits_vision.models import load

    return load("shapes")


def _family(members, step=45.0):
    return Family("rotation", list(members), {u: k * step for k, u in enumerate(members)}, members[0], 360.0, 1.0)


def test_members_behind_a_bottleneck_are_named_with_the_source_to_use(shapes_model):
    # mixed3b's 3x3 branch (channels 48..111) reads mixed3a through a 1x1 bottleneck, its pool branch
    # (144..159) through a max pool; channel 5 is in the 1x1 branch, which reads mixed3a itself.
    target = _family([83, 86, 5, 150])
    with pytest.raises(ValueError) as error:
        motifs.zero_inhibition(shapes_model, "mixed3a", "mixed3b", _family([0, 1, 2]), target)
    message = str(error.value)
    assert "members [83, 86] are written by 'mixed3b_3x3_pre_relu_conv'" in message
    assert "source='mixed3b_3x3_bottleneck'" in message and "source='mixed3b_pool'" in message
    assert "motifs.restrict(target_family, [5])" in message
    with pytest.raises(ValueError, match="no single convolution"):
        motifs.echo_experiment(shapes_model, "mixed3a", "mixed3b", _family([0, 1, 2]), target)


def test_zero_inhibition_edits_every_member_including_units_silent_on_the_probe(shapes_model):
    # Channels 0, 1, 2 of mixed3b are written by the 1x1 conv but are 0 on a noise image, so matching
    # conv outputs by value could not find them.
    source, target = _family([0, 4, 9]), _family([0, 1, 2])
    conv = shapes_model.mixed3b_1x1_pre_relu_conv
    before = conv.weight.detach().clone()
    edited, zeroed = motifs.zero_inhibition(shapes_model, "mixed3a", "mixed3b", source, target, which="all")
    block = before[[0, 1, 2]][:, [0, 4, 9]]
    assert zeroed == int((block < 0).sum()) > 0
    after = edited.mixed3b_1x1_pre_relu_conv.weight.detach()
    expected = before.clone()
    for t in (0, 1, 2):
        for s in (0, 4, 9):
            expected[t, s] = before[t, s].clamp_min(0)
    assert torch.equal(after, expected)
    assert torch.equal(conv.weight, before)  # the shipped model itself is untouched


def test_members_reached_through_their_bottleneck_are_edited(shapes_model):
    source, target = _family([0, 1, 2, 3]), motifs.restrict(_family([83, 86, 5]), [83, 86])
    assert target.members == [83, 86] and target.values == {83: 0.0, 86: 45.0}
    weight = shapes_model.mixed3b_3x3_pre_relu_conv.weight.detach()
    edited, zeroed = motifs.zero_inhibition(
        shapes_model, "mixed3b_3x3_bottleneck", "mixed3b", source, target, which="all"
    )
    # mixed3b channel 48 + k is the 3x3 conv's output channel k
    assert zeroed == int((weight[[83 - 48, 86 - 48]][:, [0, 1, 2, 3]] < 0).sum()) > 0
    assert float(edited.mixed3b_3x3_pre_relu_conv.weight.detach()[35, :4].min()) >= 0.0


def test_echo_experiment_runs_on_the_shipped_model(shapes_model):
    # mixed3a's 1x1 branch (channels 0..23) reads maxpool1 directly: its recorded curve detectors
    import json

    from circuits_vision.models.shapes import metadata_path

    recorded = json.loads(metadata_path().read_text())["curve_detectors"]["mixed3a"]["units"]
    units = [u for u in recorded if u < 24]
    assert len(units) >= 2, recorded
    result = motifs.echo_experiment(
        shapes_model, "maxpool1", "mixed3a", _family(list(range(48))), _family(units), orientations=24
    )
    assert result.before.shape == result.after.shape == (len(units), 24) and result.zeroed > 0
    assert float(result.before.amax(1).min()) > 1.0
    # zeroing every inhibitory input can only raise a unit's pre-activation
    assert bool((result.after >= result.before - 1e-4).all()) and float((result.after - result.before).max()) > 1.0
