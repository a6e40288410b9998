"""Weight pictures on small planted arrays with exact expected colours, orders and graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from circuits_vision.viz.weights import (
    first_layer_figure,
    nmf_figure,
    small_multiples,
    strongest_inputs_figure,
    to_image,
)
from circuits_vision.weights.pictures import (
    circuit_graph,
    circuit_graph_json,
    heatmap,
    nmf_factors,
    rgb_kernels,
    shared_scale,
    strongest_inputs,
    strongest_outputs,
)


def test_heatmap_colours_on_a_shared_scale():
    w = np.array([[2.0, -1.0], [0.0, 1.0]])
    rgb = heatmap(w, scale=2.0)
    np.testing.assert_allclose(rgb[0, 0], [1.0, 0.0, 0.0])  # +scale: pure red
    np.testing.assert_allclose(rgb[0, 1], [0.5, 0.5, 1.0])  # -scale/2: half blue
    np.testing.assert_allclose(rgb[1, 0], [1.0, 1.0, 1.0])  # zero: white
    np.testing.assert_allclose(rgb[1, 1], [1.0, 0.5, 0.5])  # +scale/2: half red
    # own scale: the largest |w| saturates; beyond a given scale colours clip
    np.testing.assert_allclose(heatmap(np.array([-4.0, 2.0]))[0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(heatmap(np.array([3.0]), scale=1.0)[0], [1.0, 0.0, 0.0])
    assert shared_scale(np.array([1.0, -3.0]), torch.tensor([2.0])) == 3.0
    assert shared_scale(np.zeros(3)) == 1.0


def test_rgb_kernels_put_zero_at_grey_and_channels_in_colour():
    w = np.zeros((2, 3, 1, 2))
    w[0, 0, 0, 0] = 4.0  # unit 0: red input at the left pixel
    w[1, 2, 0, 1] = -2.0  # unit 1: negative blue input at the right pixel
    rgb = rgb_kernels(w)
    assert rgb.shape == (2, 1, 2, 3)
    np.testing.assert_allclose(rgb[0, 0, 0], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(rgb[1, 0, 1], [0.5, 0.5, 0.25])
    np.testing.assert_allclose(rgb[0, 0, 1], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[C_out, 3, kh, kw\]"):
        rgb_kernels(np.zeros((2, 4, 1, 1)))


def test_strongest_inputs_and_outputs_order_by_l2_norm():
    e = np.zeros((2, 4, 2, 2))
    e[1, 0] = 1.0  # norm 2
    e[1, 2, 0, 0] = -3.0  # norm 3: strongest despite its sign
    e[1, 3, 1, 1] = 0.5  # norm 0.5
    e[0, 2, 0, 0] = 1.0
    units, norms = strongest_inputs(e, 1, k=3)
    assert units.tolist() == [2, 0, 3]
    np.testing.assert_allclose(norms, [3.0, 2.0, 0.5])
    out_units, out_norms = strongest_outputs(e, 2, k=None)
    assert out_units.tolist() == [1, 0]
    np.testing.assert_allclose(out_norms, [3.0, 1.0])
    with pytest.raises(IndexError, match="2 target units"):
        strongest_inputs(e, 2)


def test_nmf_recovers_planted_spatial_factors():
    # three non-overlapping spatial blobs, each used by its own channels with a sign
    maps = np.zeros((3, 4, 4))
    maps[0, :2, :2], maps[1, 2:, :], maps[2, :2, 2:] = 1.0, 1.0, 1.0
    mix = np.array([[1.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, 1.5], [0.5, 0.0, 0.0]])  # [C=4, 3]
    weights = np.einsum("cf,fhw->chw", mix, maps)
    result = nmf_factors(weights, 3, seed=0)
    assert result.image.shape == (4, 4, 3) and result.loadings.shape == (3, 8)
    assert result.relative_error < 1e-3
    found = sorted(tuple((result.image[..., f] > 0.5).ravel()) for f in range(3))
    assert found == sorted(tuple((maps[f] > 0.5).ravel()) for f in range(3))
    # the factor of blob 1 loads on channel 1's negative part (column 4 + 1)
    blob1 = next(f for f in range(3) if result.image[3, 0, f] > 0.5)
    assert np.argmax(result.loadings[blob1]) == 4 + 1
    with pytest.raises(ValueError, match="all weights are zero"):
        nmf_factors(np.zeros((2, 3, 3)))


def test_circuit_graph_top_k_edges():
    e = np.zeros((3, 2, 1, 2))
    e[2, 1] = [3.0, -1.0]  # l2 sqrt(10), net +2
    e[0, 0] = [-2.0, 0.0]  # l2 2, net -2
    e[1, 1] = [0.5, 0.5]
    graph = circuit_graph(e, "mixed3a", "mixed3b", k=2)
    assert [(x["source"], x["target"]) for x in graph["edges"]] == [
        ("mixed3a:1", "mixed3b:2"),
        ("mixed3a:0", "mixed3b:0"),
    ]
    assert [x["weight"] for x in graph["edges"]] == [2.0, -2.0]
    assert graph["edges"][0]["l2"] == pytest.approx(np.sqrt(10))
    assert {n["id"]: (n["layer"], n["unit"]) for n in graph["nodes"]} == {
        "mixed3a:1": ("mixed3a", 1),
        "mixed3b:2": ("mixed3b", 2),
        "mixed3a:0": ("mixed3a", 0),
        "mixed3b:0": ("mixed3b", 0),
    }
    restricted = circuit_graph(e, "a", "b", k=5, target_units=[1])
    assert [x["target"] for x in restricted["edges"]] == ["b:1", "b:1"] and restricted["edges"][0]["source"] == "a:1"
    assert json.loads(circuit_graph_json(graph)) == graph


def test_images_have_the_planted_pixels():
    image = to_image(heatmap(np.array([[1.0, -1.0]])), zoom=3)
    assert image.size == (6, 3)
    assert image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((5, 2)) == (0, 0, 255)
    sheet = small_multiples([np.ones((2, 2, 3)), np.zeros((2, 2, 3))], columns=2, zoom=2, gap=1)
    assert sheet.size == (2 * (4 + 1) + 1, 4 + 1 + 1)
    assert sheet.getpixel((6, 1)) == (0, 0, 0)
    e = torch.zeros(1, 3, 2, 2)
    e[0, 2, 0, 0] = 1.0
    figure = strongest_inputs_figure(e, 0, "mixed3a", k=2, zoom=1)
    assert figure.getpixel((4, 4)) == (255, 0, 0)  # the strongest input (unit 2) comes first
    assert first_layer_figure(torch.zeros(4, 3, 2, 2), columns=2, zoom=1).size == (2 * 6 + 4, 2 * 6 + 4)
    weights = np.zeros((2, 3, 3))
    weights[0, 0, 0], weights[1, 2, 2], weights[0, 1, 1] = 1.0, -1.0, 0.5
    assert nmf_figure(weights, zoom=2).size == (6, 6)
