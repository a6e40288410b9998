"""Random labelled scenes: seeded, labelled consistently, every class drawn."""

from __future__ import annotations

import math

import pytest
import torch

from circuits_vision.stimuli import scenes


def test_same_seed_same_scenes_and_labels():
    a, la = scenes.random_scenes(24, torch.Generator().manual_seed(5))
    b, lb = scenes.random_scenes(24, torch.Generator().manual_seed(5))
    c, _ = scenes.random_scenes(24, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and all(torch.allclose(la[k], lb[k], equal_nan=True) for k in la)
    assert not torch.equal(a, c)


def test_labels_cover_every_class_and_images_are_valid():
    images, labels = scenes.random_scenes(400, torch.Generator().manual_seed(0), size=32)
    assert images.shape == (400, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert set(labels["shape"].tolist()) == set(range(len(scenes.SHAPE_CLASSES)))
    assert set(labels["color"].tolist()) == set(range(len(scenes.COLOR_NAMES)))


def test_the_object_is_drawn_in_its_labelled_colour():
    images, labels = scenes.random_scenes(64, torch.Generator().manual_seed(1), noise=0.0)
    palette = torch.tensor(list(scenes.COLORS.values()))
    for image, color in zip(images, labels["color"]):
        # Some pixel lies within the palette jitter of the labelled colour.
        distance = (image - palette[color][:, None, None]).norm(dim=0)
        assert distance.min() < 0.4


def test_orientation_classes_name_the_bin_of_the_drawn_orientation():
    _, labels = scenes.random_scenes(300, torch.Generator().manual_seed(2))
    names = [scenes.SHAPE_CLASSES[i] for i in labels["shape"].tolist()]
    checked = 0
    for name, orientation in zip(names, labels["orientation"].tolist()):
        kind, _, centre = name.rpartition("_")
        if kind in scenes.ORIENTED_KINDS:
            period = scenes.ORIENTED_KINDS[kind][1]
            off = (orientation - float(centre)) % period
            assert min(off, period - off) <= 22.5, (name, orientation)
            checked += 1
        else:
            assert math.isnan(orientation), name
    assert checked > 150


def test_a_labelled_curve_scene_is_the_curve_of_its_bin():
    """The stroke of a noise-free curve scene faces its label's orientation: along that direction the
    apex is the extreme pixel, and an arc's pixels crowd towards its apex (the mean of cos over the arc
    is nearer 1 than its ends are), so the mean lies nearer the maximum than the minimum. Facing the
    opposite way would reverse that."""
    images, labels = scenes.random_scenes(80, torch.Generator().manual_seed(4), noise=0.0)
    checked = 0
    for i, shape in enumerate(labels["shape"].tolist()):
        name = scenes.SHAPE_CLASSES[shape]
        if name.startswith("curve_"):
            stroke = (images[i] - images[i, :, :1, :1]).abs().sum(0) > 0.3  # differs from the corner colour
            rows, cols = torch.nonzero(stroke, as_tuple=True)
            theta = math.radians(labels["orientation"][i].item())
            along = cols.float() * math.cos(theta) - rows.float() * math.sin(theta)  # y points up
            assert along.max() - along.mean() < along.mean() - along.min(), name
            checked += 1
    assert checked >= 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="'n'"):
        scenes.random_scenes(0, torch.Generator())
    with pytest.raises(ValueError, match="'size'"):
        scenes.random_scenes(4, torch.Generator(), size=8)


def test_scene_batches_stream_the_seeded_scenes_with_their_labels():
    labels: dict = {}
    batches = list(scenes.scene_batches(10, 7, batch_size=4, size=32, labels=labels))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    g = torch.Generator().manual_seed(7)
    first, drawn = scenes.random_scenes(4, g, size=32)
    assert torch.equal(batches[0], first)
    assert labels["shape"][:4] == drawn["shape"].tolist() and labels["color"][:4] == drawn["color"].tolist()
    assert len(labels["shape"]) == len(labels["color"]) == 10
    again = torch.cat(list(scenes.scene_batches(10, 7, batch_size=4, size=32)))
    assert torch.equal(torch.cat(batches), again)
    with pytest.raises(ValueError, match="'n'"):
        next(scenes.scene_batches(0, 7))
