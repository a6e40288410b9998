"""Top-k dataset examples on a model whose units read known pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from circuits_vision.analysis.dataset_examples import DatasetExamples, top_activating

SIZE = 16


class ChannelModel(nn.Module):
    """ "unit" layer: channel 0 = red, 1 = green, 2 = blue at each pixel (identity 1x1 conv)."""

    input_size = SIZE

    def __init__(self):
        super().__init__()
        self.unit = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.unit.weight.copy_(torch.eye(3)[:, :, None, None])
            self.unit.bias.zero_()

    def forward(self, x):
        return self.unit(x)


def spot_images(n: int, seed: int = 0):
    """Images that are black except one pixel per channel with a random value at a random place."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 3, SIZE, SIZE)
    values = torch.rand(n, 3, generator=g)
    rows = torch.randint(SIZE, (n, 3), generator=g)
    cols = torch.randint(SIZE, (n, 3), generator=g)
    for i in range(n):
        for c in range(3):
            images[i, c, rows[i, c], cols[i, c]] = values[i, c]
    return images, values, rows, cols


def test_top_k_values_order_positions_and_crops():
    images, values, rows, cols = spot_images(40)
    result = top_activating(
        ChannelModel(), "unit", [images[:13], images[13:]], k=5, batch_size=8, crop_size=5, progress=False
    )
    assert result.n_images == 40 and result.n_skipped == 0
    for u in range(3):
        expected = values[:, u].argsort(descending=True)[:5]
        assert result.indices[u].tolist() == expected.tolist()
        assert torch.allclose(result.values[u], values[expected, u])
        assert result.positions[u].tolist() == [[int(rows[i, u]), int(cols[i, u])] for i in expected]
        # The crop is centred on the spot: its centre pixel holds the spot's value.
        assert torch.allclose(result.crops[u, :, u, 2, 2], values[expected, u])
        assert result.sources[int(expected[0])] == f"tensor:{int(expected[0])}"


def test_kept_images_and_boxes_locate_each_crop_in_its_image():
    images, values, rows, cols = spot_images(20, seed=3)
    result = top_activating(ChannelModel(), "unit", [images], k=3, crop_size=5, keep_images=True, progress=False)
    assert result.images.shape == (3, 3, 3, SIZE, SIZE)
    assert result.image_size == (SIZE, SIZE) and result.map_size == (SIZE, SIZE)
    boxes = result.boxes()
    for u in range(3):
        for j, i in enumerate(result.indices[u].tolist()):
            assert torch.equal(result.images[u, j], images[i])
            top, left, bottom, right = boxes[u, j].tolist()
            assert (bottom - top, right - left) == (5, 5)
            # the box is centred on the spot (identity 1x1 layer: map position = pixel)
            assert (top + 2, left + 2) == (int(rows[i, u]), int(cols[i, u]))
            padded = torch.nn.functional.pad(images[i], (5, 5, 5, 5))
            assert torch.equal(result.crops[u, j], padded[:, top + 5 : bottom + 5, left + 5 : right + 5])
    assert top_activating(ChannelModel(), "unit", [images], k=3, progress=False).images is None


def test_keep_images_refuses_images_of_several_sizes():
    with pytest.raises(ValueError, match="one size"):
        top_activating(
            ChannelModel(),
            "unit",
            [torch.rand(2, 3, 16, 16), torch.rand(2, 3, 12, 12)],
            k=2,
            crop_size=4,
            batch_size=2,
            keep_images=True,
            progress=False,
        )


def test_streaming_in_small_batches_equals_one_big_batch():
    images, *_ = spot_images(30, seed=1)
    small = top_activating(ChannelModel(), "unit", iter(images), units=[2, 0], k=4, batch_size=3, progress=False)
    big = top_activating(ChannelModel(), "unit", [images], units=[2, 0], k=4, batch_size=64, progress=False)
    assert small.units == [2, 0]
    assert torch.equal(small.indices, big.indices)
    assert torch.equal(small.crops, big.crops)


def test_fewer_images_than_k_leaves_empty_slots():
    images, *_ = spot_images(2)
    result = top_activating(ChannelModel(), "unit", [images], k=4, progress=False)
    assert (result.indices[:, 2:] == -1).all() and (result.indices[:, :2] >= 0).all()
    assert torch.isinf(result.values[:, 2:]).all()


def test_folder_skips_unreadable_files_and_round_trips(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, level in enumerate([40, 200, 120]):
        array = np.zeros((20, 24, 3), dtype=np.uint8)
        array[..., 0] = level
        Image.fromarray(array).save(folder / "sub" / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    result = top_activating(ChannelModel(), "unit", folder, units=[0], k=2, progress=False)
    assert result.n_images == 3 and result.n_skipped == 2
    assert sorted(p.rsplit("/", 1)[-1] for p in result.skipped) == ["broken.png", "notes.txt"]
    assert [result.sources[i].rsplit("/", 1)[-1] for i in result.indices[0].tolist()] == ["img1.png", "img2.png"]
    assert result.values[0].tolist() == pytest.approx([200 / 255, 120 / 255], abs=1e-3)
    result.save(tmp_path / "out" / "unit")
    loaded = DatasetExamples.load(tmp_path / "out" / "unit")
    assert torch.equal(loaded.crops, result.crops) and loaded.sources == result.sources
    assert loaded.n_skipped == 2 and loaded.layer == "unit"


def test_clear_errors():
    with pytest.raises(NotADirectoryError):
        top_activating(ChannelModel(), "unit", "/nonexistent/folder", progress=False)
    with pytest.raises(IndexError, match="channels"):
        top_activating(ChannelModel(), "unit", [torch.rand(1, 3, SIZE, SIZE)], units=[3], progress=False)
    with pytest.raises(ValueError, match="shape"):
        top_activating(ChannelModel(), "unit", [torch.rand(SIZE, SIZE)], progress=False)


def test_border_positions_can_be_ignored():
    images = torch.zeros(2, 3, SIZE, SIZE)
    images[0, 0, 0, 0] = 1.0  # a bright corner pixel
    images[1, 0, 8, 8] = 0.5  # a dimmer pixel inside
    everywhere = top_activating(ChannelModel(), "unit", [images], units=[0], k=1, progress=False)
    inside = top_activating(ChannelModel(), "unit", [images], units=[0], k=1, border=2, progress=False)
    assert everywhere.indices[0].tolist() == [0] and inside.indices[0].tolist() == [1]
    assert inside.positions[0, 0].tolist() == [8, 8]
    with pytest.raises(ValueError, match="border"):
        top_activating(ChannelModel(), "unit", [images], border=8, progress=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_models_in_other_dtypes_read_float32_images(dtype):
    images, values, *_ = spot_images(20, seed=2)
    reference = top_activating(ChannelModel(), "unit", [images], k=3, progress=False)
    other = top_activating(ChannelModel().to(dtype), "unit", [images], k=3, progress=False)
    assert torch.equal(other.indices, reference.indices)
    assert torch.allclose(other.values, reference.values, rtol=1e-2)  # bfloat16 keeps 8 bits of the spot values
