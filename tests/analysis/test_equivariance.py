"""Equivariance detectors: exact transforms on analytic kernels, planted ground truth, controls, bad input."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from support import grid, hook_kernel

from circuits_vision.analysis import equivariance as eq
from circuits_vision.analysis.equivariance import transforms as T
from circuits_vision.models import planted

# Tiny tensors: one thread avoids oversubscription on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return hit / max(len(found), 1), hit / max(len(truth), 1)


# --------------------------------------------------------------------------------------------------
# Transforms


def test_rotation_matches_analytic_rotation_and_is_counter_clockwise():
    base = hook_kernel(21, 0.0)[None, None]
    for angle in (30.0, 45.0, 200.0):
        rotated = T.rotate(base, angle)[0, 0]
        truth = hook_kernel(21, angle)
        cos = float((rotated * truth).sum() / (rotated.norm() * truth.norm()))
        assert cos > 0.97, (angle, cos)
    # a bright pixel right of centre moves up (y up) under +90
    dot = torch.zeros(1, 1, 5, 5)
    dot[0, 0, 2, 4] = 1
    assert T.rotate(dot, 90.0)[0, 0, 0, 2] == 1
    assert torch.equal(T.rotate(dot, 90.0), torch.rot90(dot, 1, (-2, -1)))


def test_hue_rotation_turns_red_to_green_and_keeps_grey():
    red = torch.tensor([2.0, -1.0, -1.0], dtype=torch.float64) / math.sqrt(6)
    green = planted.chroma_vector(120.0)
    h = T.hue_matrix(120.0, red)
    assert torch.allclose(h @ red, green, atol=1e-9)
    assert torch.allclose(h @ torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(h @ h.T, torch.eye(3, dtype=torch.float64), atol=1e-9)


def test_zoom_doubles_a_gaussian():
    x, y = grid(25)
    small = torch.exp(-(x**2 + y**2) / (2 * 2.0**2))[None, None]
    big = torch.exp(-(x**2 + y**2) / (2 * 4.0**2))
    zoomed = T.zoom(small, 1.0)[0, 0]
    assert float((zoomed - big).abs().max()) < 0.06  # bilinear interpolation between pixels
    assert float((zoomed * big).sum() / (zoomed.norm() * big.norm())) > 0.999
    assert float((small[0, 0] * big).sum() / (small.norm() * big.norm())) < 0.85  # the test can tell the sizes apart


def test_similarity_shortcut_equals_one_product_per_angle():
    g = torch.Generator().manual_seed(0)
    k = torch.randn(6, 3, 11, 11, generator=g, dtype=torch.float64)
    mask = T.disk_mask(11, k)
    angles = torch.arange(24, dtype=torch.float64) * 15
    fast = T.transform_similarity(k, angles, T.rotate, mask=mask, period=360.0)
    direct = torch.stack(
        [
            T.normalised_flat(T.rotate(k, a / 2), mask) @ T.normalised_flat(T.rotate(k, -a / 2), mask).T
            for a in angles.tolist()
        ]
    )
    assert torch.allclose(fast, direct, atol=1e-12)
    assert fast[0].diagonal().sub(1).abs().max() < 1e-12  # every kernel equals itself unrotated


# --------------------------------------------------------------------------------------------------
# Families on analytic kernels


def test_rotation_family_found_among_distractors_with_orientations():
    g = torch.Generator().manual_seed(1)
    angles = [7.0, 52.0, 101.0, 143.0, 188.0, 236.0, 290.0, 331.0]
    family = torch.stack([hook_kernel(21, a) for a in angles])[:, None]
    noise = torch.randn(6, 1, 21, 21, generator=g, dtype=torch.float64)
    x, y = grid(21)
    blob = torch.exp(-(x**2 + y**2) / 10)[None, None]  # rotation invariant
    kernels = torch.cat([noise[:3], family, noise[3:], blob]).float()
    report = eq.families_from_kernels(kernels)
    assert len(report.families) == 1
    fam = report.families[0]
    assert set(fam.members) == set(range(3, 11))
    truth = {3 + i: a for i, a in enumerate(angles)}
    assert eq.orientation_error(fam.values, truth) <= 3.0
    assert fam.period == 360.0 and fam.score > 0.9
    assert report.invariant == [14]


def test_copies_at_one_angle_are_look_alikes_not_a_family():
    same = hook_kernel(21, 30.0)[None, None].expand(3, 1, 21, 21).float()
    report = eq.families_from_kernels(same, units=[10, 11, 12])
    assert not report.families and "[10, 11, 12]" in report.explanation


def test_scale_family_recovers_relative_scales():
    kernels = torch.stack([hook_kernel(31, 0.0, s) for s in (1.0, 2**0.5, 2.0)])[:, None].float()
    report = eq.families_from_kernels(kernels, "scale", steps=17)
    assert len(report.families) == 1
    values = report.families[0].values
    assert abs(values[0] - 0.0) < 0.15 and abs(values[1] - 0.5) < 0.15 and abs(values[2] - 1.0) < 0.15


def test_tuning_curve_families_from_circular_cross_correlation():
    theta = torch.arange(72, dtype=torch.float64) * 5
    prefs = [10.0, 95.0, 170.0, 260.0, 300.0]
    curves = torch.stack([torch.exp(3 * (torch.cos(torch.deg2rad(theta - p)) - 1)) for p in prefs])
    flat = torch.full((1, 72), 2.0)
    silent = torch.zeros(1, 72)
    report = eq.families_from_tuning(torch.cat([curves, flat, silent]))
    assert len(report.families) == 1 and sorted(report.families[0].members) == [0, 1, 2, 3, 4]
    assert eq.orientation_error(report.families[0].values, dict(enumerate(prefs))) <= 2.0
    assert report.invariant == [5]


def test_a_family_spread_over_the_circle_with_two_wide_gaps_is_not_called_look_alikes():
    """Preferences dense over three arcs with two 35-degree gaps (as on the shipped mixed3b): a family of many
    angles. Counting the gaps wider than a twelfth of the circle called it "2 distinct angles" and rejected it;
    bumps at only two angles (jittered by a few degrees) are still look-alikes."""
    theta = torch.arange(72, dtype=torch.float64) * 5

    def bumps(prefs):
        return torch.stack([torch.exp(3 * (torch.cos(torch.deg2rad(theta - p)) - 1)) for p in prefs])

    spread = [float(p) for p in range(0, 111, 10)] + [145.0, 160.0, 175.0, 190.0] + [225.0 + 10 * k for k in range(14)]
    report = eq.families_from_tuning(bumps(spread))
    assert len(report.families) == 1 and len(report.families[0]) == len(spread), str(report)
    assert eq.orientation_error(report.families[0].values, dict(enumerate(spread))) <= 3.0
    two_angles = [0.0, 3.0, 6.0, 180.0, 183.0, 186.0]
    report = eq.families_from_tuning(bumps(two_angles))
    assert not report.families and "2 distinct angles" in report.rejected[0][1], str(report)


# --------------------------------------------------------------------------------------------------
# Planted ground truth


def test_planted_edges_and_curves_families():
    pm = planted.curve_circuit()
    edges = eq.report(pm.model, "edges")
    truth_orient = pm.truth["edges"]["orientation_deg"]
    found = set().union(*(f.members for f in edges.families))
    p, r = precision_recall(found, set(pm.truth["edges"]["units"]))
    assert p >= 0.95 and r >= 0.95
    for fam in edges.families:  # bright and dark lines: two families of 8, 180-periodic
        assert len(fam) == 8 and fam.period == 180.0
        assert {pm.truth["edges"]["polarity"][u] for u in fam.members} in ({"bright"}, {"dark"})
        assert eq.orientation_error(fam.values, truth_orient, period=180.0) <= 10.0

    _assert_the_planted_curve_family(pm, eq.report(pm.model, "curves", source="edges", source_families="auto"))
    # without moving the inputs between edge channels, spatial rotation alone cannot see the family
    assert not eq.report(pm.model, "curves", source="edges").families


def _assert_the_planted_curve_family(pm, curves) -> None:
    """One family: the planted curves (precision and recall >= 0.95) at their orientations (<= 10 deg)."""
    assert len(curves.families) == 1
    fam = curves.families[0]
    p, r = precision_recall(set(fam.members), set(pm.truth["curves"]["units"]))
    assert p >= 0.95 and r >= 0.95
    assert eq.orientation_error(fam.values, pm.truth["curves"]["orientation_deg"]) <= 10.0


def test_source_families_from_the_source_layers_tuning_curves():
    """``source_families="tuning"``: the edge families found from tuning curves move the curves' inputs as well."""
    pm = planted.curve_circuit()
    _assert_the_planted_curve_family(pm, eq.report(pm.model, "curves", source="edges", source_families="tuning"))
    with pytest.raises(ValueError, match="'auto', 'tuning' or None"):
        eq.report(pm.model, "curves", source="edges", source_families="weights")


def test_planted_curves_from_tuning_curves():
    pm = planted.curve_circuit()
    report = eq.report(pm.model, "curves", method="tuning", steps=36)
    assert len(report.families) == 1 and set(report.families[0].members) == set(range(8))
    assert eq.orientation_error(report.families[0].values, pm.truth["curves"]["orientation_deg"]) <= 10.0


def test_planted_hue_family():
    pm = planted.hue_family()
    report = eq.hue_families(pm.model, "hues")
    truth = pm.truth["hues"]
    assert len(report.families) == 1
    p, r = precision_recall(set(report.families[0].members), set(truth["units"]))
    assert p >= 0.95 and r >= 0.95
    assert eq.orientation_error(report.families[0].values, truth["hue_deg"]) <= 10.0
    # Gaussian colour blobs are rotation invariant, and nothing is a rotation family
    rotation = eq.report(pm.model, "hues")
    assert rotation.invariant == truth["units"] and not rotation.families


@pytest.mark.parametrize("layer", ["lines", "corners"])
def test_planted_reflection_pairs(layer):
    pm = planted.reflection_pairs()
    report = eq.reflection_pairs(pm.model, layer)
    truth = pm.truth[layer]
    assert {(p.a, p.b) for p in report.pairs} == {tuple(sorted(p)) for p in truth["pairs"]}
    assert report.invariant == truth["self_symmetric"]


def test_visualization_method_compares_rotated_images():
    """Given images (rendering is slow; see the module doc for how it fares on rendered ones)."""
    pm = planted.curve_circuit()
    angles = pm.truth["curves"]["orientation_deg"]
    colour = torch.tensor([0.9, 0.3, 0.1], dtype=torch.float64)[:, None, None]
    images = torch.stack([0.5 + 0.4 * colour * hook_kernel(33, angles[u]) for u in range(8)]).float()
    report = eq.report(pm.model, "curves", method="visualization", images=images)
    assert len(report.families) == 1 and sorted(report.families[0].members) == list(range(8))
    assert eq.orientation_error(report.families[0].values, angles) <= 10.0
    with pytest.raises(ValueError, match="images must be"):
        eq.report(pm.model, "curves", method="visualization", images=images[:3])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_control_reports_nothing_at_the_defaults(seed):
    model = planted.random_control(seed).model
    for layer in ("edges", "curves"):
        for kind in ("rotation", "hue", "scale", "reflection"):
            report = eq.report(model, layer, kind=kind)
            assert report.empty, (layer, kind, str(report))
            assert report.explanation
    assert eq.report(model, "curves", source="edges", source_families="auto").empty


# --------------------------------------------------------------------------------------------------
# Bad input


def test_layer_without_spatial_extent_gives_explained_empty_result():
    pm = planted.union_unit()
    report = eq.report(pm.model, pm.truth["union"]["layer"], source=pm.truth["curves"]["layer"], extent=False)
    assert report.empty and "no spatial extent" in report.explanation


def test_units_without_extent_take_kernels_from_an_earlier_layer():
    """The 1x1 union unit has 1x1 kernels from "curves"; from "edges" (through the curves) it has extent."""
    pm = planted.union_unit()
    layer, unit = pm.truth["union"]["layer"], pm.truth["union"]["unit"]
    report = eq.report(pm.model, layer, source=pm.truth["curves"]["layer"], kind="reflection")
    assert report.sources == {unit: "edges"}
    assert "took their kernels from edges" in report.explanation
    direct = eq.unit_kernels(pm.model, layer, "edges", units=[unit])
    assert direct.shape[-1] >= 3 and float(direct.abs().sum()) > 0


def test_too_few_units_and_bad_indices():
    pm = planted.curve_circuit()
    report = eq.report(pm.model, "curves", units=[0, 1])
    assert report.empty and "at least 3" in report.explanation
    with pytest.raises(IndexError, match="8 channels"):
        eq.report(pm.model, "curves", units=[0, 8])
    with pytest.raises(ValueError, match="kind must be"):
        eq.report(pm.model, "curves", kind="shear")
    with pytest.raises(ValueError, match="source=None"):
        eq.report(pm.model, "curves", source="edges", kind="hue")


def test_table_rows_are_ordered_by_angle():
    pm = planted.curve_circuit()
    report = eq.report(pm.model, "edges")
    rows = [row for row in report.table() if row["family"] == 0]
    assert len(rows) == 8 and [r["value"] for r in rows] == sorted(r["value"] for r in rows)


# --------------------------------------------------------------------------------------------------
# The shipped model and real InceptionV1

SHAPES_CHECKPOINT = Path(__file__).resolve().parents[2] / "circuits_vision" / "data" / "shapes.pt"
FACTS = Path(__file__).resolve().parents[2] / "circuits_vision" / "data" / "inceptionv1_circuits_facts.json"


@pytest.mark.skipif(not SHAPES_CHECKPOINT.exists(), reason="the shipped shapes checkpoint is not built yet")
@pytest.mark.xfail(
    strict=True,
    reason=(
        "the shipped shapes checkpoint's mixed3b weights and tuning do not agree: 40 detectors, no weight family at "
        "q < 0.05 (Jaccard 0), pair median error 90.0 deg against 91.5 deg shuffled, no detector pair whose kernels "
        "match; its 16 trained detectors sit in the 1x1 branch, whose kernels come from maxpool1 through mixed3a "
        "(the checkpoints before: 93.1 against 91.9, 94.8 against 89.3, and 61 against 85-89)"
    ),
)
def test_shapes_curve_detectors_weights_agree_with_tuning():
    """Weights and tuning should agree on the shipped model's mixed3b curve detectors; on the current
    checkpoint they do not, and this strict xfail turns into a failure the day a checkpoint makes them agree
    (then drop the mark). The current checkpoint's figures (36 angles, the default FDR rule) are in the mark.
    The bounds are the ones an earlier checkpoint met (10 detectors, Jaccard 0.14, median 61 deg against 85-89
    deg shuffled, 29 deg over the 7 pairs whose kernels match at >= 0.5)."""
    from circuits_vision import models

    agreement = eq.weights_vs_tuning(models.load("shapes"), "mixed3b", source="mixed3a", steps=36)
    assert len(agreement["detectors"]) >= 6, agreement
    assert agreement["jaccard"] >= 0.1, agreement
    assert agreement["pair_null_median_deg"] >= 75.0, agreement
    assert agreement["pair_median_error_deg"] <= 70.0, agreement
    assert agreement["pair_median_error_deg"] <= agreement["pair_null_median_deg"] - 15.0, agreement
    assert agreement["strong_pairs"] >= 3 and agreement["strong_pair_median_error_deg"] <= 40.0, agreement


@pytest.mark.slow
@pytest.mark.skipif(not SHAPES_CHECKPOINT.exists(), reason="the shipped shapes checkpoint is not built yet")
def test_shapes_mixed3b_curve_family_is_found_from_tuning_curves():
    """At the default rule (pairs against units of weight-shuffled copies, q < 0.05) the tuning view of mixed3b
    holds a 360-periodic family made mostly of the curve detectors the checkpoint's card lists, at their
    preferred orientations. Measured: 22 members, all 22 among the card's 40 detectors, within 6.8 deg. With
    arcs alone (no tangent line in the response surfaces) the family holding most detectors had 41 members,
    only 20 of them detectors: most of the rest answer lines nearly as much as curves."""
    import json

    from circuits_vision import models

    card = json.loads(SHAPES_CHECKPOINT.with_suffix(".json").read_text())["curve_detectors"]["mixed3b"]
    detectors = dict(zip(card["units"], card["preferred_orientation_deg"]))
    result = eq.report(models.load("shapes"), "mixed3b", method="tuning")
    assert result.settings.null == "network"
    curves = [f for f in result.families if f.period == 360.0]
    best = max(curves, key=lambda f: len(set(f.members) & set(detectors)), default=None)
    assert best is not None, str(result)
    hits = set(best.members) & set(detectors)
    assert len(hits) >= 6 and len(hits) >= 0.7 * len(best), str(result)
    # measured 6.8 deg after the best common offset
    assert eq.orientation_error({u: best.values[u] for u in hits}, detectors) <= 20.0, str(result)


@pytest.mark.slow
@pytest.mark.skipif(not SHAPES_CHECKPOINT.exists(), reason="the shipped shapes checkpoint is not built yet")
def test_shapes_mixed3b_tuning_family_holds_the_curve_detectors_at_their_orientations():
    """What the tuning view finds on the current checkpoint at the default rule: one 360-periodic family holds
    22 of the 40 curve detectors of the card (measured), with angles matching their preferred orientations to
    6.8 deg after one common offset."""
    import json

    from circuits_vision import models

    card = json.loads(SHAPES_CHECKPOINT.with_suffix(".json").read_text())["curve_detectors"]["mixed3b"]
    detectors = dict(zip(card["units"], card["preferred_orientation_deg"]))
    result = eq.report(models.load("shapes"), "mixed3b", method="tuning")
    curves = [f for f in result.families if f.period == 360.0]
    best = max(curves, key=lambda f: len(set(f.members) & set(detectors)), default=None)
    assert best is not None, str(result)
    hits = set(best.members) & set(detectors)
    assert len(hits) >= 18, str(result)
    assert eq.orientation_error({u: best.values[u] for u in hits}, detectors) <= 10.0, str(result)


@pytest.mark.slow
@pytest.mark.skipif(not SHAPES_CHECKPOINT.exists(), reason="the shipped shapes checkpoint is not built yet")
def test_shapes_mixed3b_tuning_family_is_inherited_from_mixed3a():
    """Measured: against units of fully weight-shuffled copies mixed3b's tuning view holds a 22-unit 360-periodic
    family (null pairs 0.31 +- 0.13); against copies with only mixed3b's own wiring shuffled (the real mixed3a
    units kept) nothing reaches q < 0.05 (null pairs 0.48 +- 0.20): random wirings of mixed3a's tuned units look
    as alike, so the family says more about mixed3a than about mixed3b's weights, whose view finds no family
    either."""
    from circuits_vision import models

    model = models.load("shapes")
    network = eq.report(model, "mixed3b", method="tuning")
    assert max((len(f) for f in network.families if f.period == 360.0), default=0) >= 15, str(network)
    layer = eq.report(model, "mixed3b", method="tuning", tuning_null="layer")
    assert layer.settings.null == "layer" and not layer.families, str(layer)
    assert layer.null.mean > network.null.mean + 0.1, (layer.null, network.null)  # measured 0.48 against 0.31


@pytest.mark.needs_weights
@pytest.mark.slow
def test_inceptionv1_mixed3b_curves_and_mixed3a_high_low_families():
    import json

    from circuits_vision.models import inceptionv1

    facts = json.loads(FACTS.read_text())
    model = inceptionv1(os.environ["CIRCUITS_VISION_INCEPTIONV1"])
    curves_3b = facts["families"]["mixed3b"]["Curves"]
    others_3b = facts["families"]["mixed3b"]["Lines"] + facts["families"]["mixed3b"]["Eyes"]
    sources = eq.report(
        model,
        "mixed3a",
        units=facts["families"]["mixed3a"]["Curves"] + facts["families"]["mixed3a"]["Lines"],
        threshold=0.6,
    )
    report = eq.report(
        model, "mixed3b", source="mixed3a", units=curves_3b + others_3b, threshold=0.6, source_families=sources.families
    )
    best = max(report.families, key=lambda f: len(set(f.members) & set(curves_3b)), default=None)
    assert best is not None, str(report)
    p, r = precision_recall(set(best.members), set(curves_3b))
    assert p >= 0.7 and r >= 0.7, str(report)
    truth = {int(u): a for u, a in facts["curve_preferred_orientation_deg"]["mixed3b"].items()}
    assert eq.orientation_error(best.values, truth) <= 45.0

    high_low = facts["equivariance_examples"]["rotational_feature_examples"]["mixed3a_high_low_frequency_detectors"]
    others_3a = facts["families"]["mixed3a"]["Color Contrast"] + facts["families"]["mixed3a"]["Lines"]
    report = eq.report(model, "mixed3a", units=high_low + others_3a, threshold=0.6)
    best = max(report.families, key=lambda f: len(set(f.members) & set(high_low)), default=None)
    assert best is not None, str(report)
    p, r = precision_recall(set(best.members), set(high_low))
    assert p >= 0.7 and r >= 0.7, str(report)


def test_family_figure_orders_members_by_angle():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from circuits_vision.viz.families import family_figure

    pm = planted.curve_circuit()
    report = eq.report(pm.model, "edges")
    fam = report.families[0]
    kernels = eq.unit_kernels(pm.model, "edges")
    fig = family_figure(fam, kernels, columns=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"{u} @ {fam.values[u]:.0f}\N{DEGREE SIGN}" for u in sorted(fam.members, key=fam.values.get)]
    matplotlib.pyplot.close(fig)


def test_the_null_of_a_gathered_family_breaks_the_channel_correspondence_too():
    """Units that are one channel pattern moved along the source family, on a blob: the scrambled surrogates keep
    each kernel's weights per channel at zero frequency, so under the true map surrogates of two members would
    still match in part and the null's tail reach the members' 45-degree pairs (blurred by the bilinear turn).
    Each surrogate's inputs are permuted among the family's members, so the 8 members are one family with the
    true map alone, and with the null's map from shuffled source angles as well."""
    generator = torch.Generator().manual_seed(0)
    source = eq.Family("rotation", list(range(8)), {j: 45.0 * j for j in range(8)}, 0, 360.0, 0.0)
    yy, xx = torch.meshgrid(torch.arange(5) - 2.0, torch.arange(5) - 2.0, indexing="ij")
    blob = torch.exp(-(yy**2 + xx**2) / 2.0)
    angles = torch.arange(8) * 45.0
    kernels = torch.zeros(40, 24, 5, 5)
    for k in range(8):  # unit k reads the source member at g with cos(g - 45 k) + 0.5 sin(g - 45 k)
        d = torch.deg2rad(angles - 45.0 * k)
        kernels[k, :8] = (torch.cos(d) + 0.5 * torch.sin(d))[:, None, None] * blob
    kernels[8:] = torch.randn(32, 24, 5, 5, generator=generator) * blob  # unrelated units
    gather = eq.family_gather([source], 24, kernels)
    shuffled = eq.family_gather([source], 24, kernels, shuffle=torch.Generator().manual_seed(2))
    assert sorted(shuffled(45.0)[:8].tolist()) == list(range(8)) and shuffled(45.0)[8:].tolist() == list(range(8, 24))
    assert not torch.equal(shuffled(45.0), gather(45.0))
    plain = eq.families_from_kernels(kernels, gather=gather, steps=8)
    assert len(plain.families) == 1 and set(plain.families[0].members) == set(range(8)), str(plain)
    # (without the per-surrogate permutation the null's tail reached the members' pairs: measured, two families of 4)
    found = eq.families_from_kernels(kernels, gather=gather, null_gather=shuffled, steps=8)
    assert len(found.families) == 1 and set(found.families[0].members) == set(range(8)), str(found)
    assert eq.orientation_error(found.families[0].values, {k: 45.0 * k for k in range(8)}) <= 5.0


def test_units_with_1x1_kernels_are_rotated_copies_through_the_source_family_map():
    """A 1x1 unit is its own spatial rotation, but with the source family's channel map its weights on the
    family move to other members: 8 centre-only kernels reading the 8 source members at cos(g - 45 k) form one
    family at 45 k, beside 32 unrelated centre-only units. Without the map they say nothing and are left out."""
    generator = torch.Generator().manual_seed(0)
    source = eq.Family("rotation", list(range(8)), {j: 45.0 * j for j in range(8)}, 0, 360.0, 0.0)
    angles = torch.arange(8) * 45.0
    kernels = torch.zeros(40, 24, 5, 5)
    for k in range(8):
        d = torch.deg2rad(angles - 45.0 * k)
        kernels[k, :8, 2, 2] = torch.cos(d) + 0.5 * torch.sin(d)
    kernels[8:, :, 2, 2] = torch.randn(32, 24, generator=generator)
    kernels[:8, 8:, 2, 2] = 0.1 * torch.randn(8, 16, generator=generator)  # inputs the map leaves in place
    gather = eq.family_gather([source], 24, kernels)
    shuffled = eq.family_gather([source], 24, kernels, shuffle=torch.Generator().manual_seed(2))
    found = eq.families_from_kernels(kernels, gather=gather, null_gather=shuffled, steps=8)
    assert len(found.families) == 1 and set(found.families[0].members) == set(range(8)), str(found)
    assert eq.orientation_error(found.families[0].values, {k: 45.0 * k for k in range(8)}) <= 5.0
    assert not any(why.startswith("no spatial") for u, why in found.excluded.items() if u < 8)

    without_map = eq.families_from_kernels(kernels, steps=8)
    assert not without_map.families and all(without_map.excluded[u].startswith("no spatial") for u in range(40))
    # A centre-only unit whose weights sit off the family is unmoved by the map: still left out.
    only_off = kernels.clone()
    only_off[:, :8] = 0
    unmoved = eq.families_from_kernels(only_off, gather=gather, null_gather=shuffled, steps=8)
    assert all(unmoved.excluded[u].startswith("no spatial") for u in range(40))
