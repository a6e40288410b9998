"""The curve-cell check of an activation atlas: pictures that follow their cells pass, shuffled ones do not."""

from __future__ import annotations

import pytest
import torch

from circuits_vision import stimuli
from circuits_vision.atlas.activation_atlas import ActivationAtlas
from circuits_vision.atlas.activation_atlas_check import curve_cells

NAMES = ["curve_0", "curve_45", "line_0", "background"]


def planted_atlas(pictures_at, seed=0):
    """Six cells: four of curve activations at 0, 90, 180, 270 degrees (+-15), one of lines, one of background;
    each cell's picture is a curve drawn at ``pictures_at[cell]`` degrees."""
    g = torch.Generator().manual_seed(seed)
    centres = [0.0, 90.0, 180.0, 270.0, float("nan"), float("nan")]
    labels_of = [0, 1, 0, 1, 2, 3]
    orientations, labels, cell = [], [], []
    for k, (centre, label) in enumerate(zip(centres, labels_of)):
        orientations.append(centre + 30 * torch.rand(10, generator=g) - 15)
        labels += [label] * 10
        cell += [k] * 10
    orientations = torch.cat(orientations)
    orientations[40:50] = 30.0  # lines have an orientation too, but are not curves
    images = stimuli.curves(torch.tensor(pictures_at, dtype=torch.float32), 10.0, angular_width=110.0, thickness=2.5)
    n = len(labels)
    return ActivationAtlas("layer", 3, "pca", torch.rand(n, 2, generator=g), torch.tensor(cell),
                           torch.tensor([[0, k] for k in range(6)]), torch.full((6,), 10), torch.rand(6, 4, generator=g),
                           images, torch.tensor(labels), torch.zeros(6, dtype=torch.long), torch.ones(6), 60, NAMES,
                           orientations=orientations)


def test_pictures_drawn_at_their_cells_orientation_pass_and_shuffled_pictures_fail():
    good = curve_cells(planted_atlas([0.0, 90.0, 180.0, 270.0, 45.0, 45.0]), permutations=200)
    assert good.cells.tolist() == [0, 1, 2, 3]  # not the line or background cells
    assert good.median_error < 25.0 and good.within(45) == 1.0
    assert good.null_median > 60.0 and good.p_value < 0.1
    bad = curve_cells(planted_atlas([180.0, 270.0, 0.0, 90.0, 45.0, 45.0]), permutations=200)
    assert bad.median_error > 150.0 and bad.p_value > 0.5
    assert "4 curve cells" in str(good) and len(good.table()) == 4


def test_the_check_needs_drawn_orientations_and_a_sensible_share():
    result = planted_atlas([0.0] * 6)
    with pytest.raises(ValueError, match="min_share"):
        curve_cells(result, min_share=0)
    result.orientations = None
    with pytest.raises(ValueError, match="no drawn orientations"):
        curve_cells(result)
