"""Random labelled scenes: seeded, labelled consistently, every class drawn."""

from __future__ import annotations

import math

import pytest
import torch

from circuits_vision import stimuli
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


def test_local_curve_facing_marks_the_cells_the_arc_runs_through_with_its_outward_normal():
    """A curve facing up (90 degrees) with its midpoint at the image centre: the cells the arc crosses
    face between 90 -+ width / 2, the midpoint's cells face ~90, cells far from the arc are NaN, and
    the marked cells are the ones where the stroke is drawn."""
    orientation = torch.tensor([90.0, float("nan")])
    arc = torch.tensor([[16.0, 120.0, 0.0, 0.0], [float("nan")] * 4])
    facing = scenes.local_curve_facing(orientation, arc, 8)
    assert facing.shape == (2, 8, 8) and torch.isnan(facing[1]).all()
    marked = ~torch.isnan(facing[0])
    assert 4 <= int(marked.sum()) <= 12
    assert ((facing[0][marked] - 90).abs() <= 60 + 1e-4).all()
    # The arc's midpoint is at the centre: the cells just above/below the centre in the middle columns face ~90.
    middle = facing[0][3:5, 3:5][~torch.isnan(facing[0][3:5, 3:5])]
    assert middle.numel() >= 1 and ((middle - 90).abs() < 25).all()
    # Left half faces more to the left (> 90), right half to the right (< 90).
    columns = torch.arange(8).expand(8, 8)
    assert (facing[0][marked & (columns < 3)] > 90).all() and (facing[0][marked & (columns > 4)] < 90).all()
    image = stimuli.curves(90.0, 16.0, angular_width=120.0, thickness=2.0, size=64)[0]
    ink = (1 - image.mean(0)).reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(8, 8, 64).amax(-1) > 0.5
    assert (ink[marked]).float().mean() >= 0.9 and (marked[ink]).float().mean() >= 0.7


def test_local_curve_facing_of_drawn_scenes_agrees_with_their_orientation_label():
    _, labels = scenes.random_scenes(200, torch.Generator().manual_seed(3))
    curve = ~torch.isnan(labels["arc"][:, 0])
    assert torch.isnan(labels["arc"][~curve]).all() and curve.sum() > 20
    facing = scenes.local_curve_facing(labels["orientation"], labels["arc"], 16)
    for i in curve.nonzero().flatten().tolist():
        cells = facing[i][~torch.isnan(facing[i])]
        assert cells.numel() >= 1
        off = torch.remainder(cells - labels["orientation"][i] + 180, 360) - 180
        assert (off.abs() <= labels["arc"][i, 1] / 2 + 1e-3).all()
    with pytest.raises(ValueError, match="arc \\[n, 4\\]"):
        scenes.local_curve_facing(labels["orientation"], labels["arc"][:, :3], 8)


def test_curve_midpoint_cells_hold_the_orientation_in_the_midpoint_cell_only():
    orientation = torch.tensor([90.0, 400.0, float("nan")])
    arc = torch.tensor([[16.0, 120.0, 10.0, 10.0], [8.0, 90.0, -31.0, -31.0], [float("nan")] * 4])
    cells = scenes.curve_midpoint_cells(orientation, arc, 8)
    assert cells.shape == (3, 8, 8)
    assert cells[0, 2, 5] == 90.0 and int((~torch.isnan(cells[0])).sum()) == 1  # x 10 -> column 5, y 10 -> row 2
    assert cells[1, 7, 0] == 40.0 and int((~torch.isnan(cells[1])).sum()) == 1  # wrapped into [0, 360)
    assert torch.isnan(cells[2]).all()
