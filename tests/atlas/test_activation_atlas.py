"""Activation atlases: streaming collection, layout, binning, one batched render, class filter, the page."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from circuits_vision import atlas
from circuits_vision.hooks import run_with_cache
from circuits_vision.models.shapes import metadata_path
from circuits_vision.stimuli.scenes import random_scenes

# the module (the package attribute of the same name is the function)
AA = importlib.import_module("circuits_vision.atlas.activation_atlas")
HOSTILE = "<script>alert('x')</script>"


def scenes(n=24, seed=1, size=32):
    return random_scenes(n, torch.Generator().manual_seed(seed), size=size)


def test_collection_streams_batches_and_keeps_the_activation_at_each_sampled_position(tiny):
    images, labels = scenes(10)
    batches = ((images[i : i + 4], labels["shape"][i : i + 4]) for i in range(0, 10, 4))  # a one-pass generator
    samples = AA.collect_activations(
        tiny, "mixed3a", batches, positions_per_image=3, generator=torch.Generator().manual_seed(0)
    )
    assert samples.vectors.shape[0] == 30 and samples.n_images == 10
    with torch.no_grad():
        acts = run_with_cache(tiny, images, ["mixed3a"])["mixed3a"]
    for m in (0, 7, 29):
        i, (r, c) = int(samples.sources[m]), samples.positions[m].tolist()
        torch.testing.assert_close(samples.vectors[m], acts[i, :, r, c])
        assert int(samples.labels[m]) == int(labels["shape"][i])
    again = AA.collect_activations(
        tiny, "mixed3a", [images], positions_per_image=3, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again.positions, samples.positions)
    assert int(again.labels[0]) == -1


def _cossim_objective(acts: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """lucid's atlas objective on ``acts [N, C]`` (one position each): minus dot * max(cos, 0.1) ** 4, averaged."""
    dot = acts @ (direction / direction.norm())
    cos = dot / (acts.norm(dim=1) + 1e-4)
    return -(dot * cos.clamp_min(0.1) ** 4).mean()


def test_each_cell_is_the_mean_of_its_activations_and_every_cell_is_rendered_in_one_call(tiny, monkeypatch):
    calls = []

    def fake_render(model, objectives, **kwargs):
        calls.append((objectives, kwargs))
        return SimpleNamespace(images=torch.rand(len(objectives), 3, 8, 8))

    monkeypatch.setattr(AA, "render", fake_render)
    images, labels = scenes(40)
    result = atlas.activation_atlas(
        tiny,
        "mixed3b",
        images,
        labels=labels["shape"],
        grid=4,
        positions_per_image=4,
        reducer="pca",
        min_count=2,
        batch_size=16,
    )
    assert result.reducer == "pca" and len(calls) == 1
    objectives, kwargs = calls[0]
    assert len(objectives) == len(result.cells) and kwargs["batch_size"] == len(result.cells)
    # lucid's atlas objective is the default (the notebook measures it against "direction" on the curve cells)
    default = AA.OBJECTIVES["direction_neuron_cossim"]("mixed3b", torch.ones(4)).name
    assert all(o.name == default for o in objectives)
    assert default != AA.OBJECTIVES["direction"]("mixed3b", torch.ones(4)).name
    samples = AA.collect_activations(
        tiny,
        "mixed3b",
        [images[:16], images[16:32], images[32:]],
        positions_per_image=4,
        generator=torch.Generator().manual_seed(0),
    )
    rendered = result.sample_cell >= 0
    assert int(result.counts.sum()) == int(rendered.sum()) and bool((result.counts >= 2).all())
    for cell in range(len(result.cells)):
        mine = samples.vectors[result.sample_cell == cell]
        torch.testing.assert_close(result.directions[cell], mine.mean(0))
        torch.testing.assert_close(
            objectives[cell].objective_func(lambda name, mine=mine: mine.unsqueeze(-1).unsqueeze(-1)),
            _cossim_objective(mine, result.directions[cell]),
        )
    # cells follow the layout: a sample's cell holds its (x, y) coordinates
    m = int(rendered.nonzero()[0, 0])
    row, col = result.cells[result.sample_cell[m]].tolist()
    x, y = result.coordinates[m].tolist()
    assert col == min(int(x * 4), 3) and row == min(int((1 - y) * 4), 3)
    assert result.mosaic().shape == (3, 32, 32)
    assert result.cell_at(row, col) == int(result.sample_cell[m])


def test_auto_reducer_is_umap_when_importable_else_tsne(tiny, monkeypatch):
    monkeypatch.setattr(
        AA, "render", lambda model, objectives, **kw: SimpleNamespace(images=torch.zeros(len(objectives), 3, 4, 4))
    )
    images, _ = scenes(30)
    result = atlas.activation_atlas(tiny, "mixed3a", images, grid=3, positions_per_image=2, min_count=1)
    assert result.reducer == ("umap" if importlib.util.find_spec("umap") else "tsne")
    assert result.coordinates.min() >= 0 and result.coordinates.max() <= 1


class Readout(nn.Module):
    """``layer`` (2 channels: relu(red - 0.5), relu(green - 0.5)) -> logit 0 = channel 0 - channel 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.layer = nn.ReLU()
        self.fc = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 1] = 1.0
            self.conv.bias.fill_(-0.5)
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0]]))

    def forward(self, x):
        return self.fc(self.layer(self.conv(x)).mean((2, 3)))


def test_class_filtered_atlas_keeps_only_activations_that_push_toward_the_class(monkeypatch):
    monkeypatch.setattr(
        AA, "render", lambda model, objectives, **kw: SimpleNamespace(images=torch.zeros(len(objectives), 3, 4, 4))
    )
    model = Readout().eval()
    images = torch.rand(50, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    result = atlas.activation_atlas(
        model,
        "layer",
        images,
        class_target=0,
        class_keep=0.5,
        grid=2,
        positions_per_image=2,
        reducer="pca",
        min_count=1,
    )
    assert result.class_target == "logit 0"
    # attribution to logit 0 is (channel 0 - channel 1) / 36 at a position: only red-dominant positions push up
    assert result.coordinates.shape[0] <= 50
    assert bool((result.directions[:, 0] > 0).all())
    plain = atlas.activation_atlas(model, "layer", images, grid=2, positions_per_image=2, reducer="pca", min_count=1)
    assert plain.coordinates.shape[0] == 100
    with pytest.raises(ValueError, match="positive attribution"):
        atlas.activation_atlas(model, "layer", torch.zeros(4, 3, 6, 6), class_target=0, reducer="pca", min_count=1)


def test_norm_sampling_never_picks_a_silent_position_and_the_neuron_objective_reads_the_centre(monkeypatch):
    model = Readout().eval()
    images = torch.zeros(6, 3, 6, 6)
    images[:, 0, 1, 4] = 1.0  # only (1, 4) is active, in channel 0
    images[3] = 0.0  # an all-silent image falls back to uniform positions
    samples = AA.collect_activations(
        model, "layer", [images], positions_per_image=5, sampling="norm", generator=torch.Generator().manual_seed(0)
    )
    active = samples.sources != 3
    assert bool((samples.positions[active] == torch.tensor([1, 4])).all())
    assert len({tuple(p) for p in samples.positions[~active].tolist()}) > 1
    calls = []
    monkeypatch.setattr(
        AA,
        "render",
        lambda m, objectives, **kw: (
            calls.append(objectives) or SimpleNamespace(images=torch.zeros(len(objectives), 3, 4, 4))
        ),
    )
    atlas.activation_atlas(
        model, "layer", torch.rand(20, 3, 6, 6), grid=2, reducer="pca", min_count=1, objective="direction_neuron"
    )
    assert {o.name for o in calls[0]} == {"direction_neuron"}
    with pytest.raises(ValueError, match="sampling must be one of"):
        AA.collect_activations(model, "layer", [images], sampling="max", generator=torch.Generator())
    with pytest.raises(ValueError, match="objective must be one of"):
        atlas.activation_atlas(model, "layer", images, objective="channel")


def test_heldout_scenes_are_the_held_out_stream_not_the_training_one():
    assert json.loads(metadata_path().read_text())["heldout"]["seed"] == AA.HELDOUT_SEED
    first = next(AA.heldout_scenes(4, batch_size=4, size=32))
    images, labels = random_scenes(4, torch.Generator().manual_seed(AA.HELDOUT_SEED), size=32)
    assert torch.equal(first[0], images) and torch.equal(first[1], labels["shape"])
    training, _ = random_scenes(4, torch.Generator().manual_seed(0), size=32)
    assert not torch.equal(first[0], training)


def test_a_real_render_of_the_default_scenes_gives_one_image_per_cell_and_a_page(tiny, tmp_path):
    result = atlas.activation_atlas(
        tiny,
        "mixed3b",
        grid=3,
        n_images=24,
        positions_per_image=2,
        reducer="pca",
        min_count=1,
        steps=2,
        size=32,
        batch_size=12,
    )
    assert result.images.shape == (len(result.cells), 3, 32, 32)
    assert result.label_names[0] == "curve_0" and int(result.cell_label.max()) >= 0
    (tmp_path / "units" / "mixed3b").mkdir(parents=True)
    top = result.top_units(0, 1)[0][0]
    (tmp_path / "units" / "mixed3b" / f"{top}.html").write_text("unit page")
    result.label_names = [HOSTILE] * 24
    page = result.save(tmp_path)
    html = page.read_text()
    assert page.name == "activation_atlas_mixed3b.html"
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing external: works from file://
    row, col = result.cells[0].tolist()
    assert f'href="#cell-{row}-{col}"' in html and f'id="cell-{row}-{col}"' in html
    assert f'<a href="units/mixed3b/{top}.html">mixed3b:{top}</a>' in html
    images = re.findall(r"src=\"([^\"]+)\"", html)
    assert images and all((tmp_path / src).exists() for src in images)
    assert html.count('type="radio"') == 4
    assert "activation atlas of mixed3b" in str(result)


def test_activation_atlas_errors_say_what_to_change(tiny, tmp_path):
    images, _ = scenes(8)
    with pytest.raises(ValueError, match="grid must be"):
        atlas.activation_atlas(tiny, "mixed3b", images, grid=0)
    with pytest.raises(ValueError, match="reducer must be one of"):
        atlas.activation_atlas(tiny, "mixed3b", images, reducer="mds")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        atlas.activation_atlas(tiny, "mixed3b", images[0])
    with pytest.raises(ValueError, match="no cell of the 2x2 grid holds 1000"):
        atlas.activation_atlas(tiny, "mixed3b", images, grid=2, reducer="pca", min_count=1000)
    with pytest.raises(ValueError, match="plain file name"):
        atlas.write_activation_atlas_page(SimpleNamespace(layer="mixed3b"), tmp_path, name="../x")


def test_positions_that_see_none_of_the_object_are_background_and_object_sampling_lands_on_it(tiny):
    batch, shape, details = next(AA.heldout_scenes(12, batch_size=12, size=32, details=True))
    assert torch.equal(batch, next(AA.heldout_scenes(12, batch_size=12, size=32))[0])
    mask = details["object"]
    assert mask.shape == (12, 32, 32) and 0 < float(mask.double().mean()) < 1
    samples = AA.collect_activations(
        tiny, "mixed3b", [(batch, shape, details)], positions_per_image=6, generator=torch.Generator().manual_seed(0)
    )
    h = run_with_cache(tiny, batch[:1], ["mixed3b"])["mixed3b"].shape[-1]
    stride = 32 // h
    for m in range(samples.vectors.shape[0]):  # the window: two strides, centred on the position's cell
        i, (r, c) = int(samples.sources[m]), samples.positions[m].tolist()
        top, left = r * stride - stride // 2, c * stride - stride // 2
        window = mask[i, max(0, top) : top + 2 * stride, max(0, left) : left + 2 * stride]
        assert bool(samples.on_object[m]) == (float(window.sum()) / (2 * stride) ** 2 > AA.OBJECT_SHARE)
    assert torch.equal(samples.orientations.isnan(), details["orientation"].isnan().repeat_interleave(6))
    assert 0 < float(samples.on_object.double().mean()) < 1  # uniform positions: some beside the object
    on = AA.collect_activations(
        tiny,
        "mixed3b",
        [(batch, shape, details)],
        positions_per_image=6,
        sampling="object",
        generator=torch.Generator().manual_seed(0),
    )
    assert bool(on.on_object.all())
    with pytest.raises(ValueError, match="needs object masks"):
        AA.collect_activations(tiny, "mixed3b", [(batch, shape)], sampling="object", generator=torch.Generator())
    with pytest.raises(ValueError, match="'object' and 'orientation'"):
        AA.collect_activations(tiny, "mixed3b", [(batch, shape, {"mask": mask})], generator=torch.Generator())


def test_the_default_atlas_labels_off_object_activations_background_and_keeps_their_orientations(tiny, monkeypatch):
    monkeypatch.setattr(
        AA, "render", lambda model, objectives, **kw: SimpleNamespace(images=torch.zeros(len(objectives), 3, 4, 4))
    )
    result = atlas.activation_atlas(
        tiny,
        "mixed3b",
        grid=3,
        n_images=24,
        positions_per_image=4,
        reducer="pca",
        min_count=1,
        size=32,
        batch_size=12,
        sampling="uniform",
    )
    background = result.label_names.index(AA.BACKGROUND)
    assert background == len(result.label_names) - 1 and result.label_names[0] == "curve_0"
    off = result.labels == background
    assert 0 < int(off.sum()) < len(result.labels)
    batches = list(AA.heldout_scenes(24, batch_size=12, size=32, details=True))
    drawn = torch.cat([d["orientation"] for _, _, d in batches]).repeat_interleave(4)
    assert torch.equal(result.orientations.isnan(), drawn.isnan())
    assert torch.allclose(result.orientations.nan_to_num(-1), drawn.nan_to_num(-1))
    # By default the held-out scenes are sampled where their object is: no activation is background.
    default = atlas.activation_atlas(
        tiny, "mixed3b", grid=3, n_images=24, positions_per_image=4, reducer="pca", min_count=1, size=32, batch_size=12
    )
    names = [default.label_names[i] for i in default.labels.tolist()]
    assert AA.BACKGROUND not in names and len(names) == 24 * 4
