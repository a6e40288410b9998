"""render_grid: a render result as one picture, labelled, never-active units marked, saved on request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from circuits_vision.optvis import RenderResult
from circuits_vision.viz.renders import _labels, render_grid


def _result(n=3, size=5):
    images = torch.linspace(0, 1, n * 3 * size * size).reshape(n, 3, size, size)
    return RenderResult(
        images=images,
        history=torch.zeros(2, n),
        objectives=[f"Channel [mixed3b, {c}]" for c in range(n)],
        never_active=torch.tensor([False, True, False][:n]),
    )


def test_grid_places_each_image_and_saves(tmp_path):
    result = _result()
    grid = render_grid(result, columns=2, zoom=2, labels=False, path=tmp_path / "grid.png")
    # 2 columns, 2 rows of 10-px tiles with 4-px gaps
    assert grid.size == (2 * 14 + 4, 2 * 14 + 4)
    pixels = np.asarray(grid)
    first = (result.images[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(pixels[4:14:2, 4:14:2], first)  # the first image, zoomed x2, at the first cell
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid.png")), pixels)


def test_labels_name_units_and_mark_never_active_ones():
    result = _result()
    assert _labels(result, 3, True) == ["0", "1 off", "2"]  # one layer: channel numbers
    result.objectives[2] = "Channel [mixed3a, 7]"
    assert _labels(result, 3, True) == ["mixed3b:0", "mixed3b:1 off", "mixed3a:7"]
    assert _labels(result.images, 3, True) == ["0", "1", "2"]
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        render_grid(result, labels=["a", "b"])


def test_grid_rejects_what_is_not_images():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        render_grid(torch.zeros(3, 5, 5))
