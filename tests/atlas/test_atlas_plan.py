"""The job plan: which units, cut into which chunks, what is left, which parts and report pair."""

import pytest

from circuits_vision.atlas import analyses
from circuits_vision.atlas.plan import AtlasPlan, chosen_parts, report_pair


def test_units_are_cut_into_consecutive_chunks_in_layer_order(tiny):
    plan = AtlasPlan.of(tiny, ["mixed3a", "mixed3b"], None, 8)
    assert plan.units == [("mixed3a", u) for u in range(10)] + [("mixed3b", u) for u in range(12)]
    assert [len(c) for c in plan.chunks] == [8, 8, 6]
    assert sum(plan.chunks, []) == plan.units
    assert plan.shown() is None  # whole layers


def test_a_small_atlas_shows_the_first_units_of_each_layer(tiny):
    plan = AtlasPlan.of(tiny, ["mixed3b", "mixed3a"], 3, 4)
    assert plan.layers == ["mixed3b", "mixed3a"]
    assert plan.shown() == {"mixed3b": [0, 1, 2], "mixed3a": [0, 1, 2]}
    assert plan.chunks == [
        [("mixed3b", 0), ("mixed3b", 1), ("mixed3b", 2), ("mixed3a", 0)],
        [("mixed3a", 1), ("mixed3a", 2)],
    ]


def test_what_is_left_keeps_chunk_numbers_and_drops_done_units(tiny):
    plan = AtlasPlan.of(tiny, ["mixed3a"], None, 4)  # chunks [0..3], [4..7], [8, 9]
    done = {("mixed3a", u): {} for u in (0, 1, 2, 3, 5, 9)}
    assert plan.left(done) == [(1, [("mixed3a", 4), ("mixed3a", 6), ("mixed3a", 7)]), (2, [("mixed3a", 8)])]
    assert plan.left({u: {} for u in plan.units}) == []


def test_parts_default_to_all_but_facets_and_unknown_ones_are_named():
    assert chosen_parts(None, analyses.PARTS, analyses.DEFAULT_PARTS) == analyses.DEFAULT_PARTS
    assert "facets" not in analyses.DEFAULT_PARTS
    assert chosen_parts(["branch"], analyses.PARTS, analyses.DEFAULT_PARTS) == ("branch",)
    with pytest.raises(ValueError, match=r"unknown parts \['famly'\]; choose from"):
        chosen_parts(["family", "famly"], analyses.PARTS, analyses.DEFAULT_PARTS)


def test_the_report_pair_defaults_to_the_first_pair_of_branch_layers(tiny):
    layers = ["conv2d0", "conv2d1", "mixed3a", "mixed3b"]
    assert report_pair(tiny, layers, True) == ("mixed3a", "mixed3b")
    assert report_pair(tiny, ["conv2d0", "conv2d1"], True) == ("conv2d0", "conv2d1")  # no branches: the last pair
    assert report_pair(tiny, ["mixed3a"], True) is None
    assert report_pair(tiny, layers, ["conv2d1", "mixed3a"]) == ("conv2d1", "mixed3a")
    assert report_pair(tiny, layers, False) is None
