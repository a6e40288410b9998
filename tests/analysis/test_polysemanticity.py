"""Polysemanticity on planted units: an OR of two unrelated curve detectors vs one curve detector."""

from __future__ import annotations

import pytest
import torch

from circuits_vision.analysis import polysemanticity as poly
from circuits_vision.models import planted
from circuits_vision.stimuli.geometry import curves

ORIENTATIONS = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]
PER_ORIENTATION = 12


def curve_set():
    """Dark curves on white at 8 orientations, 12 jittered copies each -> (images [96, 3, 33, 33], labels [96])."""
    g = torch.Generator().manual_seed(3)
    n = len(ORIENTATIONS) * PER_ORIENTATION
    labels = torch.arange(len(ORIENTATIONS)).repeat_interleave(PER_ORIENTATION)
    orientation = torch.tensor(ORIENTATIONS)[labels] + 6 * (torch.rand(n, generator=g) - 0.5)
    radius = 4.5 + torch.rand(n, generator=g)
    center = 3 * (torch.rand(n, 2, generator=g) - 0.5)
    images = curves(orientation, radius, angular_width=120.0, thickness=1.5, center=center, size=33)
    return images, labels


@pytest.fixture(scope="module")
def models():
    union = planted.union_unit().model
    single = planted.union_unit().model
    with torch.no_grad():  # drop the 180-degree case: ReLU(curve_0 - curve_90 - curve_270), one feature
        single.union_pre_relu_conv.weight[0, 4] = 0.0
    return union, single


def test_a_union_unit_scores_high_and_its_clusters_are_its_two_cases(models):
    union, _ = models
    images, labels = curve_set()
    names = [f"curve_{int(o)}" for o in ORIENTATIONS]
    found = poly.polysemanticity(
        union, "union", "curves", [images[:50], images[50:]], labels=labels, label_names=names, k=2 * PER_ORIENTATION
    )
    unit = found.unit(0)
    # the top examples are exactly the two cases, the curves facing 0 and 180 degrees
    assert sorted({names[int(labels[i])] for i in unit.examples}) == ["curve_0", "curve_180"]
    assert unit.n_clusters == 2 and unit.separation > 0.8 and unit.score > 0.8
    assert sorted(c["size"] for c in unit.clusters) == [PER_ORIENTATION, PER_ORIENTATION]
    for cluster in unit.clusters:  # each cluster is one case
        assert len(set(cluster["labels"])) == 1
    assert unit.label_entropy == pytest.approx(1.0)  # two scene labels, equally common
    row = found.table()[0]
    assert row["unit"] == 0 and row["n_clusters"] == 2 and row["cluster_sizes"] == [12, 12]
    assert "union" in str(found) and "'curves'" in str(found)
    assert repr(found) == f"Polysemanticity(layer='union', units=1, most polysemantic 0 ({unit.score:.2f}))"


def test_a_single_feature_unit_scores_low(models):
    union, single = models
    images, labels = curve_set()
    both = [
        poly.polysemanticity(m, "union", "curves", [images], labels=labels, k=2 * PER_ORIENTATION).unit(0)
        for m in (union, single)
    ]
    assert both[1].n_clusters == 1 and both[1].score < 0.2 < 0.8 < both[0].score
    # its top examples are the 0-degree curves first, then their 45-degree neighbours: one feature, tuned
    assert {int(labels[i]) for i in both[1].examples[:PER_ORIENTATION]} == {0}
    assert {int(labels[i]) for i in both[1].examples} == {0, 1, 7}


def test_deterministic_and_first_layers_cluster_pixels(models):
    union, _ = models
    images, labels = curve_set()
    runs = [poly.polysemanticity(union, "edges", None, [images], units=[0, 9], k=8, seed=5).table() for _ in range(2)]
    assert runs[0] == runs[1] and [r["unit"] for r in runs[0]] == [0, 9]


def test_default_data_are_the_labelled_example_scenes(models):
    union, _ = models
    found = poly.polysemanticity(union, "union", "curves", k=16)
    assert found.n_images == poly.DEFAULT_SCENES
    from circuits_vision.stimuli.scenes import SHAPE_CLASSES

    labels = [label for c in found.unit(0).clusters for label in c["labels"]]
    assert len(labels) == 16 and set(labels) <= set(SHAPE_CLASSES) and found.unit(0).label_entropy is not None


def test_units_that_never_fire_and_bad_input(models):
    union, _ = models
    blank = torch.full((4, 3, 33, 33), 0.5)  # grey: every planted unit sits at its (zero) bias
    unit = poly.polysemanticity(union, "union", "curves", [blank], k=4).unit(0)
    assert (unit.score, unit.n_clusters, unit.note) == (0.0, 0, "never active on these images")
    with pytest.raises(ValueError, match="k must be"):
        poly.polysemanticity(union, "union", "curves", [blank], k=2)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        poly.polysemanticity(union, "union", "curves", [blank], labels=[0, 1, 2], k=4)
    with pytest.raises(ValueError, match="max_clusters"):
        poly.polysemanticity(union, "union", "curves", [blank], k=4, max_clusters=1)
    with pytest.raises(IndexError):
        poly.polysemanticity(union, "union", "curves", [blank], units=[3], k=4)
    with pytest.raises(KeyError, match="not measured"):
        poly.polysemanticity(union, "union", "curves", [blank], k=4).unit(1)
