"""The packaged Circuits facts and their sources."""

from __future__ import annotations

import pytest

from circuits_vision.models import facts


def test_curve_family_and_orientations_of_mixed3b():
    curves = facts.families("mixed3b")["Curves"]
    assert sorted(curves) == sorted([379, 406, 385, 343, 342, 388, 324, 340, 330, 349])
    orientations = facts.curve_orientations("mixed3b")
    assert set(orientations) == set(curves)
    assert orientations[379] == 243.0 and orientations[342] == 22.5
    assert all(isinstance(unit, int) for unit in orientations)


def test_bw_vs_color_family_lies_in_the_mixed3a_5x5_branch():
    bw = facts.family("mixed3a", "BW vs Color")
    assert sorted(bw) == sorted([214, 208, 201, 223, 210, 197, 222, 204, 220])
    start, stop = facts.branch_ranges("mixed3a")["5x5"]
    assert (start, stop) == (192, 224) and all(start <= unit < stop for unit in bw)
    claim = facts.branch_specialization_claims()[0]
    assert claim["layer"] == "mixed3a" and sorted(claim["units"]) == sorted(bw)
    assert sorted(facts.branch_specialization_categories("mixed3a_5x5")["BW vs Color"]) == sorted(bw)


def test_published_families_partition_their_layers():
    widths = facts.layer_widths()
    for layer in facts.published_layers():
        units = [unit for members in facts.families(layer).values() for unit in members]
        assert sorted(units) == list(range(widths[layer])), layer
    assert facts.families_of("mixed3b", 379) == ["Curves"]


def test_branch_ranges_tile_each_mixed_layer():
    for layer in ("mixed3a", "mixed3b", "mixed4a", "mixed5b"):
        ranges = facts.branch_ranges(layer)
        assert list(ranges) == ["1x1", "3x3", "5x5", "pool"]
        bounds = list(ranges.values())
        assert bounds[0][0] == 0 and bounds[-1][1] == facts.layer_width(layer)
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


def test_high_low_frequency_units_and_curve_pairs():
    units = facts.high_low_frequency_units()
    assert len(units) == 15 and 110 in units and 160 in units
    pairs = facts.aligned_curve_pairs()
    assert pairs[379] == 147 and set(pairs) == set(facts.curve_units("mixed3b"))


def test_sources_name_the_repositories():
    assert "distillpub/post--circuits-early-overview" in facts.source("families")
    assert "distillpub/post--circuits-curve-detectors" in facts.source("curve_orientations")
    assert "distillpub/post--circuits-curve-circuits" in facts.source("aligned_curve_pairs")
    assert "ProGamerGov/pytorch-old-tensorflow-models" in facts.source("branch_ranges")
    assert "frequency-edges" in facts.source("high_low_frequency_units")
    assert all(isinstance(text, str) and "/" in text for text in facts.sources().values())
    commits = facts.source_commits()
    assert "tensorflow/lucid" in commits and all(len(c) == 40 for c in commits.values())
    assert "Curve Detectors" in facts.about()
    assert facts.notes("curve_orientations")


def test_accessors_return_copies_and_unknown_names_list_choices():
    facts.families("mixed3b")["Curves"].append(-1)
    assert -1 not in facts.families("mixed3b")["Curves"]
    with pytest.raises(KeyError, match="did you mean 'mixed3b'"):
        facts.families("mixed3bb")
    with pytest.raises(ValueError, match="known: .*mixed3a"):
        facts.curve_orientations("mixed5b")
    with pytest.raises(KeyError, match="family in mixed3b"):
        facts.family("mixed3b", "Dragons")
