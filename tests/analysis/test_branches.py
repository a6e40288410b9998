"""Branch specialization: exact statistics, planted ground truth, the article's numbers, bad input."""

from __future__ import annotations

import itertools
import math
import os
from fractions import Fraction

import pytest
import torch
from torch import nn

from circuits_vision.analysis import branches as B
from circuits_vision.analysis.stats import bonferroni, holm, hypergeometric_log10_sf, hypergeometric_sf
from circuits_vision.analysis.unit_categories import color_categories, orientation_categories
from circuits_vision.hooks import NotABranchLayerError
from circuits_vision.models import facts, planted


def _all_in_branch(k: int, branch: int, layer: int) -> Fraction:
    """Independent: the chance that k units placed uniformly at random all land in the branch,
    drawn one at a time: prod_i (branch - i) / (layer - i)."""
    p = Fraction(1)
    for i in range(k):
        p *= Fraction(branch - i, layer - i)
    return p


# ------------------------------------------------------------------------------------------ statistics


def test_hypergeometric_tail_matches_brute_force_enumeration():
    population, branch = 9, 4  # channels 0..3 are the branch
    for draws in range(0, 6):
        subsets = list(itertools.combinations(range(population), draws))
        for k in range(0, draws + 2):
            hits = sum(1 for s in subsets if sum(u < branch for u in s) >= k)
            assert hypergeometric_sf(k, population, branch, draws) == pytest.approx(hits / len(subsets), rel=1e-12)


def test_article_p_values_from_their_counts():
    # 9 of 9 "BW vs Color" units in mixed3a_5x5 (32 of 256 channels); the article: p < 1e-8.
    p1 = hypergeometric_sf(9, 256, 32, 9)
    assert p1 == pytest.approx(float(_all_in_branch(9, 32, 256)), rel=1e-12)
    assert p1 == pytest.approx(math.comb(32, 9) / math.comb(256, 9), rel=1e-12)
    assert 2.4e-9 < p1 < 2.5e-9 and p1 < 1e-8
    # 30 of 30 curve-related units in mixed3b_5x5 (96 of 480); the article: p < 1e-20.
    p2 = hypergeometric_sf(30, 480, 96, 30)
    assert p2 == pytest.approx(float(_all_in_branch(30, 96, 480)), rel=1e-12)
    assert p2 < 1e-20
    assert hypergeometric_log10_sf(30, 480, 96, 30) == pytest.approx(math.log10(_all_in_branch(30, 96, 480)), abs=1e-9)
    # The log stays finite where the float underflows.
    assert hypergeometric_sf(300, 4000, 300, 300) == 0.0
    assert hypergeometric_log10_sf(300, 4000, 300, 300) < -320


def test_corrections():
    p = [0.01, 0.04, 0.03, 0.5]
    assert bonferroni(p) == pytest.approx([0.04, 0.16, 0.12, 1.0])
    assert bonferroni(p, n_tests=10) == pytest.approx([0.1, 0.4, 0.3, 1.0])
    # Holm by hand: sorted 0.01*4, 0.03*3, 0.04*2, 0.5*1 -> 0.04, 0.09, 0.09 (monotone), 0.5.
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    with pytest.raises(ValueError):
        bonferroni(p, n_tests=2)
    with pytest.raises(ValueError):
        hypergeometric_sf(1, 10, 11, 2)


def test_article_results_from_packaged_families_and_branch_ranges():
    ranges = facts.branch_ranges("mixed3a")
    report = B.branch_statistics(facts.families("mixed3a"), ranges, 256, layer="mixed3a")
    row = report.row("BW vs Color", "5x5")
    assert (row.count, row.category_size, row.branch_size, row.layer_size) == (9, 9, 32, 256)
    assert row.p_value == pytest.approx(float(_all_in_branch(9, 32, 256)), rel=1e-12) and row.p_value < 1e-8
    assert report.n_tests == 18 * 4
    assert row.p_bonferroni == pytest.approx(row.p_value * 72, rel=1e-12)
    assert report.best_branch("BW vs Color").branch == "5x5"

    curve_families = [
        "Curves",
        "Double Curves",
        "Curves misc.",
        "Shallow Curves",
        "Curve Shapes",
        "Evolute",
        "Circles / Loops",
    ]
    families = facts.families("mixed3b")
    curve_related = sorted(u for name in curve_families for u in families[name])
    assert curve_related == facts.branch_specialization_categories("mixed3b_5x5")["Curve Related"]
    rest = sorted(set(range(480)) - set(curve_related))
    report = B.branch_statistics({"curve related": curve_related, "rest": rest}, facts.branch_ranges("mixed3b"), 480)
    row = report.row("curve related", "5x5")
    assert (row.count, row.category_size) == (30, 30)
    assert row.p_value < 1e-20 and row.p_bonferroni < 1e-20
    assert row.enrichment == pytest.approx(5.0)  # 30 observed, 30 * 96 / 480 = 6 expected


# ------------------------------------------------------------------------------------ planted models


def test_a_category_from_a_sample_is_tested_against_the_sample():
    """Units categorised only among the first 32 channels (all inside a 48-channel first branch): against the
    whole 160-channel layer the sample's branch looks enriched; against the sample it is not."""
    branch_map = {"1x1": (0, 48), "3x3": (48, 112), "5x5": (112, 144), "pool": (144, 160)}
    categories = {"color": list(range(0, 32, 3)), "other": [u for u in range(32) if u % 3]}
    whole = B.branch_statistics(categories, branch_map, 160)
    row = next(r for r in whole.rows if (r.category, r.branch) == ("color", "1x1"))
    assert row.p_value == pytest.approx(hypergeometric_sf(11, 160, 48, 11)) and row.p_bonferroni < 1e-3
    sampled = B.branch_statistics(categories, branch_map, 160, population=range(32))
    row = next(r for r in sampled.rows if (r.category, r.branch) == ("color", "1x1"))
    assert (row.branch_size, row.layer_size, row.expected) == (32, 32, 11.0) and row.p_value == pytest.approx(1.0)
    assert not sampled.significant(0.05)
    with pytest.raises(B.CategoryError, match="not in the population"):
        B.branch_statistics({"color": [40]}, branch_map, 160, population=range(32))


def test_planted_specialised_block_is_found():
    pm = planted.branch_block(specialized=True)
    report = B.report(pm.model, "block", pm.truth["categories"])
    best = report.best_branch("color")
    assert best.branch == pm.truth["branch_of_category"]["color"] == "5x5"
    assert best.p_value < 1e-3 and best.p_bonferroni < 1e-3
    assert best.p_value == pytest.approx(float(_all_in_branch(8, 12, 64)), rel=1e-12)
    assert [(r.category, r.branch) for r in report.significant(0.05)] == [("color", "5x5")]
    assert "color" in str(report) and "5x5" in str(report)
    assert {(r["category"], r["branch"]) for r in report.table()} >= {("color", "5x5")}


def test_shuffled_control_finds_nothing():
    for seed in range(10):
        pm = planted.branch_block(specialized=False, seed=seed)
        report = B.specialization(pm.model, "block", pm.truth["categories"])
        assert report.significant(0.05, "bonferroni") == [], (seed, str(report))
        assert report.significant(0.05, "holm") == []


def test_stimulus_categories_recover_the_planted_colour_units():
    for pm in (planted.branch_block(True), planted.branch_block(False, seed=4)):
        categories = color_categories(pm.model, "block")
        assert categories["color"] == pm.truth["categories"]["color"]
        assert categories["black_and_white"] == pm.truth["categories"]["black_and_white"]
        assert categories["both"] == categories["unresponsive"] == []


def test_orientation_categories_recover_the_planted_edge_detectors():
    pm = planted.branch_block(False, seed=1)
    categories = orientation_categories(pm.model, "block")
    assert categories["oriented"] == pm.truth["orientation"]["oriented"]
    assert categories["unoriented"] == pm.truth["orientation"]["unoriented"]
    # Oriented units are the 3x3 and 5x5 branches' edge detectors: found there, never in 1x1 or pool.
    report = B.report(pm.model, "block", "orientation")
    assert report.row("oriented", "1x1").count == report.row("oriented", "pool").count == 0
    assert report.row("oriented", "3x3").p_bonferroni < 1e-3


def test_report_with_measured_categories_and_routing():
    pm = planted.branch_block(specialized=True)
    report = B.report(pm.model, "block", "color", downstream="head")
    assert report.best_branch("color").branch == "5x5" and report.best_branch("color").p_bonferroni < 1e-3
    assert report.empty_categories == ["both", "unresponsive"]
    assert any(r.category == "both" and not r.tested for r in report.rows)  # reported, not dropped
    routing = report.routing
    fed_by = pm.truth["downstream"]["fed_by"]
    colour_heads = [h for h, c in fed_by.items() if c == "color"]
    five = [b.name for b in routing.branches].index("5x5")
    assert (routing.fraction[colour_heads, five] > 0.999).all()
    groups = routing.dominant()
    assert groups["5x5"] == colour_heads and groups["mixed"] == [h for h in fed_by if h not in colour_heads]
    labels = B.routing_clusters(routing, 2)
    assert len(set(labels[colour_heads].tolist())) == 1 and labels[colour_heads[0]] != labels[-1]


def test_routing_in_the_control_spreads_colour_mass():
    pm = planted.branch_block(specialized=False, seed=0)
    routing = B.branch_routing(pm.model, "block", "head")
    colour = pm.truth["categories"]["color"]
    per_branch = [sum(u in range(*r) for u in colour) for r in pm.truth["branches"].values()]
    # Head 0 averages the colour units with equal weights: mass per branch is proportional to their count.
    expected = torch.tensor(per_branch, dtype=torch.float64) / len(colour)
    assert torch.allclose(routing.fraction[0], expected, atol=1e-6)


def test_direct_weights_match_expanded_weights():
    pm = planted.branch_block(specialized=True)
    direct = B._direct_weights(pm.model, "block", "head_pre_relu_conv")
    expanded, method = B._weights_between(pm.model, "block", "head_pre_relu_conv")
    assert method == "expanded_weights"
    assert torch.allclose(direct, expanded.to(direct.dtype), atol=1e-6)
    with pytest.raises(ValueError, match="does not read"):
        B._direct_weights(pm.model, "block_5x5", "head_pre_relu_conv")


def test_abs_weight_svd_separates_colour_from_grey_units():
    pm = planted.branch_block(specialized=False, seed=2)
    svd = B.abs_weight_svd(pm.model, "block", "head", k=2)
    loadings = svd.source_loadings[:, 0]
    colour = pm.truth["categories"]["color"]
    grey = pm.truth["categories"]["black_and_white"]
    assert loadings[colour].min() > loadings[grey].max()
    assert svd.singular_values[0] > 100 * svd.singular_values[1]  # the head has one axis of variation


def test_plot_report_draws_counts():
    from circuits_vision.viz.branches import plot_report, plot_routing

    pm = planted.branch_block(specialized=True)
    report = B.report(pm.model, "block", pm.truth["categories"], downstream="head")
    fig = plot_report(report)
    bars = fig.axes[0]
    heights = [p.get_height() for p in bars.patches]
    assert heights[:4] == [0, 0, 8, 0]  # colour units per branch, first category's bars
    assert sum(heights) == 64
    assert plot_routing(report.routing).axes


# ----------------------------------------------------------------------------------------- bad input


def test_layer_without_branches_says_how_to_pass_a_map():
    pm = planted.branch_block()
    with pytest.raises(NotABranchLayerError, match="branches="):
        B.specialization(pm.model, "head", {"a": [0, 1]})
    report = B.specialization(pm.model, "head", {"a": [0, 1]}, branches={"x": (0, 4), "y": (4, 8)})
    assert report.row("a", "x").count == 2


def test_grouped_convolution_groups_are_branches():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2))
    model.input_size = 8
    found = B.layer_branches(model, "2")
    assert [(b.name, b.start, b.stop) for b in found] == [("group0", 0, 4), ("group1", 4, 8)]
    report = B.specialization(model, "2", {"a": [4, 5, 6, 7], "b": [0]})
    assert report.row("a", "group1").p_value == pytest.approx(1 / math.comb(8, 4))


def test_bad_categories_are_reported_clearly():
    pm = planted.branch_block()
    with pytest.raises(B.CategoryError, match=r"unit 64 is outside layer 'block', which has 64 channels \(0..63\)"):
        B.specialization(pm.model, "block", {"a": [1, 64]})
    with pytest.raises(B.CategoryError, match=r"units \[3\] are in both categories 'a' and 'b'"):
        B.specialization(pm.model, "block", {"a": [1, 3], "b": [3, 5]})
    with pytest.raises(B.CategoryError, match="more than once"):
        B.specialization(pm.model, "block", {"a": [1, 1]})
    with pytest.raises(B.CategoryError, match="int"):
        B.specialization(pm.model, "block", {"a": [1.5]})
    with pytest.raises(ValueError, match="categories must be"):
        B.report(pm.model, "block", "colour")
    report = B.specialization(pm.model, "block", {"a": [40, 41], "nothing": []})
    assert [r.category for r in report.rows].count("nothing") == 4
    assert report.n_tests == 4 and "(empty category)" in str(report)


# ------------------------------------------------------------------------------- real InceptionV1


def test_inceptionv1_branches_are_discovered_and_give_the_article_counts():
    # Branch ranges come from the model's structure and the counts from the published families,
    # so a randomly initialised InceptionV1 already reproduces the article's tests.
    from circuits_vision.models import inceptionv1

    model = inceptionv1(generator=torch.Generator().manual_seed(0))
    report = B.report(model, "mixed3a", "families")
    assert {b.name: (b.start, b.stop) for b in report.branches} == facts.branch_ranges("mixed3a")
    row = report.best_branch("BW vs Color")
    assert (row.branch, row.count, row.category_size, row.layer_size) == ("5x5", 9, 9, 256)
    assert row.p_value == pytest.approx(float(_all_in_branch(9, 32, 256)), rel=1e-12)


@pytest.mark.needs_weights
def test_inceptionv1_reproduces_the_articles_two_results():
    from circuits_vision.models import inceptionv1

    model = inceptionv1(os.environ["CIRCUITS_VISION_INCEPTIONV1"])
    for layer in ("mixed3a", "mixed3b"):
        found = B.layer_branches(model, layer)
        assert {b.name: (b.start, b.stop) for b in found} == facts.branch_ranges(layer)
    report = B.report(model, "mixed3a", "families")
    row = report.best_branch("BW vs Color")
    assert (row.branch, row.count, row.category_size) == ("5x5", 9, 9) and row.p_value < 1e-8
    categories = facts_mixed3b = facts.branch_specialization_categories("mixed3b_5x5")["Curve Related"]
    rest = sorted(set(range(480)) - set(facts_mixed3b))
    report = B.specialization(model, "mixed3b", {"curve related": categories, "rest": rest})
    row = report.best_branch("curve related")
    assert (row.branch, row.count) == ("5x5", 30) and row.p_value < 1e-20


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-6), (torch.bfloat16, 1e-2)])
def test_branch_report_runs_in_the_models_dtype(dtype, tolerance):
    from circuits_vision.models import load

    reference = B.report(load("shapes"), "mixed3a", "color", downstream="mixed3b")
    other = B.report(load("shapes").to(dtype), "mixed3a", "color", downstream="mixed3b")
    if dtype == torch.float64:
        assert other.categories == reference.categories
    assert other.routing.fraction.shape == (160, 4)
    assert float((other.routing.fraction - reference.routing.fraction).abs().max()) <= tolerance
