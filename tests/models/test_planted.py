"""Planted models: their ground truth checked by behaviour (responses to drawn stimuli), not by weights."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
import torch

import circuits_vision as cv
from circuits_vision import stimuli
from circuits_vision.hooks import layer_names, run_with_cache
from circuits_vision.models import planted

ANGLES = torch.arange(0.0, 360.0, 1.0)


def _centre(model, layer: str, images: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` activations of ``layer`` at the centre pixel."""
    with torch.no_grad():
        out = run_with_cache(model, images, [layer])[layer]
    return out[:, :, out.shape[2] // 2, out.shape[3] // 2]


def _angle_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b + 180.0) % 360.0 - 180.0).abs()


def _curve_tuning(model, layer: str, dark_on_light: bool = True) -> torch.Tensor:
    """``[360, C]`` responses to 120-degree arcs of radius 5 facing 0..359 degrees."""
    fg, bg = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) if dark_on_light else ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    arcs = stimuli.curves(ANGLES, 5.0, angular_width=120.0, thickness=1.5, size=33, color=fg, background=bg)
    return _centre(model, layer, arcs)


@pytest.mark.parametrize("n", [8, 16])
def test_curve_detectors_prefer_their_labelled_orientation(n):
    pm = planted.curve_circuit(n)
    labels = pm.truth["curves"]["orientation_deg"]
    assert sorted(labels) == pm.truth["curves"]["units"] == list(range(n))
    assert sorted(labels.values()) == [k * 360.0 / n for k in range(n)]
    for dark_on_light in (True, False):  # both stroke polarities
        tuning = _curve_tuning(pm.model, "curves", dark_on_light)
        preferred = ANGLES[tuning.argmax(0)]
        expected = torch.tensor([labels[u] for u in range(n)])
        assert _angle_error(preferred, expected).max() <= 5.0, preferred
        # Selective: the best response is well above the opposite curve's response.
        opposite = tuning[(tuning.argmax(0) + 180) % 360, torch.arange(n)]
        assert (opposite < 0.5 * tuning.max(0).values).all()


def _shifted_correlations(tuning: torch.Tensor, step_deg: float) -> torch.Tensor:
    """Correlation of each unit's tuning curve with unit 0's, rotated by the unit's label."""
    reference = tuning[:, 0]
    values = []
    for k in range(1, tuning.shape[1]):
        rolled = torch.roll(reference, shifts=int(round(k * step_deg)))
        values.append(torch.corrcoef(torch.stack([rolled, tuning[:, k]]))[0, 1])
    return torch.stack(values)


def test_curve_family_is_equivariant_and_random_control_is_not():
    tuning = _curve_tuning(planted.curve_circuit(8).model, "curves")
    assert _shifted_correlations(tuning, 45.0).min() > 0.99
    control = planted.random_control(seed=0)
    assert control.truth["curves"]["units"] == [] and control.truth["circuit"] == {}
    random_tuning = _curve_tuning(control.model, "curves")
    assert random_tuning.shape == tuning.shape  # same architecture
    assert _shifted_correlations(random_tuning, 45.0).nan_to_num(0.0).abs().mean() < 0.6


def test_curve_circuit_tangent_lines_excite_orthogonal_lines_inhibit():
    pm = planted.curve_circuit(8)
    model = pm.model
    for unit, circuit in pm.truth["circuit"].items():
        edges = pm.truth["edges"]["orientation_deg"]
        excite = {edges[u] for u in circuit["excite"]}
        inhibit = {edges[u] for u in circuit["inhibit"]}
        assert len(excite) == len(inhibit) == 1 and len(circuit["excite"]) == 2  # both polarities
        orientations = torch.tensor([excite.pop(), inhibit.pop()])
        segments = stimuli.lines(orientations, length=5.0, thickness=1.5, size=33)
        pre = _centre(model, "curves_pre_relu_conv", segments)[:, unit]
        assert pre[0] > 0.05 and pre[1] < -0.05, (unit, pre)


def test_hue_units_prefer_their_labelled_hue_and_ignore_grey():
    pm = planted.hue_family(6)
    hues = torch.arange(0.0, 360.0, 1.0)
    colours = torch.stack([0.5 + 0.3 * planted.chroma_vector(float(h)) for h in hues]).float()
    blobs = stimuli.blobs(torch.full((360,), 3.0), color=colours, background=(0.5, 0.5, 0.5), size=15)
    responses = _centre(pm.model, "hues", blobs)
    labels = torch.tensor([pm.truth["hues"]["hue_deg"][u] for u in pm.truth["hues"]["units"]])
    assert torch.equal(labels, torch.arange(0.0, 360.0, 60.0))
    assert _angle_error(hues[responses.argmax(0)], labels).max() <= 5.0
    # Cross-check with an independent hue definition: pure red and pure green as drawn.
    primaries = stimuli.blobs(
        torch.full((2,), 3.0),
        color=torch.tensor([[0.8, 0.35, 0.35], [0.35, 0.8, 0.35]]),
        background=(0.5, 0.5, 0.5),
        size=15,
    )
    assert _centre(pm.model, "hues", primaries).argmax(1).tolist() == [0, 2]  # 0 deg red, 120 deg green
    greys = stimuli.blobs(
        torch.full((3,), 3.0),
        color=torch.tensor([[0.0] * 3, [0.9] * 3, [0.3] * 3]),
        background=(0.5, 0.5, 0.5),
        size=15,
    )
    assert pm.model(greys).abs().max() < 1e-5


def test_reflection_pairs_respond_to_mirrored_images_symmetrically():
    pm = planted.reflection_pairs()
    images = torch.rand(2, 3, 31, 31, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        acts = run_with_cache(pm.model, torch.cat([images, images.flip(-1)]), ["lines", "corners"])
    for layer in ("lines", "corners"):
        truth = pm.truth[layer]
        original, mirrored_back = acts[layer][:2], acts[layer][2:].flip(-1)
        scale = original.abs().max()
        paired = set()
        for a, b in truth["pairs"]:
            assert torch.allclose(original[:, a], mirrored_back[:, b], atol=1e-5 * scale)
            assert torch.allclose(original[:, b], mirrored_back[:, a], atol=1e-5 * scale)
            # ... and a pair member is not its own mirror image (the test can tell the difference).
            assert (original[:, a] - mirrored_back[:, a]).abs().max() > 0.05 * scale
            paired |= {a, b}
        for unit in truth["self_symmetric"]:
            assert torch.allclose(original[:, unit], mirrored_back[:, unit], atol=1e-5 * scale)
        assert paired | set(truth["self_symmetric"]) == set(truth["units"])


def test_union_unit_answers_both_cases_and_not_a_third():
    pm = planted.union_unit()
    truth = pm.truth["union"]
    arcs = stimuli.curves(
        torch.tensor([0.0, 180.0, 90.0, 270.0, 45.0]), 5.0, angular_width=120.0, thickness=1.5, size=33
    )
    response = _centre(pm.model, truth["layer"], arcs)[:, truth["unit"]]
    assert response[0] > 0.2 and response[1] > 0.2
    assert torch.isclose(response[0], response[1], rtol=0.05)
    assert response[2] == 0 and response[3] == 0
    assert response[4] < 0.6 * response[0]
    # The two cases it unites are the curve detectors facing 0 and 180 degrees.
    curves = pm.truth["curves"]["orientation_deg"]
    assert [curves[u] for u in truth["case_units"]] == truth["cases_deg"]


def _color_and_grey_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    hues = torch.arange(0.0, 360.0, 30.0)
    colours = torch.stack([0.5 + 0.3 * planted.chroma_vector(float(h)) for h in hues]).float()
    colour_images = torch.cat(
        [
            stimuli.blobs(torch.full((12,), 2.0), color=colours, background=(0.5, 0.5, 0.5), size=size),
            stimuli.solid(colours, size=size),
        ]
    )
    g = torch.Generator().manual_seed(3)
    noise = torch.rand(8, 1, size, size, generator=g).expand(8, 3, size, size)
    grey_images = torch.cat(
        [
            noise,
            stimuli.gratings(torch.arange(0.0, 180.0, 30.0), 0.2, size=size),
            stimuli.edges(torch.arange(0.0, 360.0, 45.0), size=size),
        ]
    )
    return colour_images, grey_images


@pytest.mark.parametrize("specialized", [True, False])
def test_branch_block_colour_units_respond_to_colour_not_grey(specialized):
    pm = planted.branch_block(specialized=specialized, seed=0)
    colour_images, grey_images = _color_and_grey_images(32)
    with torch.no_grad():
        on_colour = run_with_cache(pm.model, colour_images, ["block"])["block"].amax(dim=(0, 2, 3))
        on_grey = run_with_cache(pm.model, grey_images, ["block"])["block"].amax(dim=(0, 2, 3))
    colour_units = pm.truth["categories"]["color"]
    bw_units = pm.truth["categories"]["black_and_white"]
    assert len(colour_units) == 8 and sorted(colour_units + bw_units) == list(range(64))
    assert (on_colour[colour_units] > 0.05).all()
    assert on_grey[colour_units].max() < 1e-5
    assert (on_grey[bw_units] > 0.01).all()


def test_branch_block_placement():
    specialised = planted.branch_block(specialized=True)
    assert specialised.truth["branches"] == {"1x1": (0, 16), "3x3": (16, 40), "5x5": (40, 52), "pool": (52, 64)}
    assert specialised.truth["categories"]["color"] == list(range(40, 48))
    assert specialised.truth["branch_of_category"] == {"color": "5x5"}
    control = [planted.branch_block(specialized=False, seed=s).truth["categories"]["color"] for s in (0, 0, 1)]
    assert control[0] == control[1] != control[2]  # seeded, and the seed matters
    assert control[0] != list(range(40, 48))
    found = cv.hooks.branches(specialised.model, "block")
    assert [(b.name, b.start, b.stop) for b in found] == [(n, *r) for n, r in specialised.truth["branches"].items()]


def test_registry_and_model_conventions():
    assert set(planted.MODELS) == set(planted.PLANTED)
    available = cv.models.available_models()
    assert all(name in available for name in planted.MODELS)
    model = cv.models.load("planted_curves", n_orientations=16)
    assert isinstance(model, torch.nn.Module) and model.truth == planted.curve_circuit(16).truth
    assert len(model.truth["curves"]["units"]) == 16
    for factory in planted.PLANTED.values():
        built = factory()
        model, truth = built.model, built.truth
        names = layer_names(model)
        for family in truth.values():
            if isinstance(family, Mapping) and "layer" in family:
                assert family["layer"] in names
        assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())
        size = model.input_size
        out = model(torch.full((1, 3, size, size), 0.5))
        assert out.shape[0] == 1 and torch.isfinite(out).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_orientations must be 4, 8 or 16"):
        planted.curve_circuit(6)
    with pytest.raises(ValueError, match="n_hues"):
        planted.hue_family(1)


def test_chroma_vectors_are_unit_and_orthogonal_to_grey():
    for hue in (0.0, 37.0, 120.0, 300.0):
        v = planted.chroma_vector(hue)
        assert math.isclose(float(v.norm()), 1.0, rel_tol=1e-12) and abs(float(v.sum())) < 1e-12
    green = torch.tensor([-1.0, 2.0, -1.0], dtype=torch.float64) / math.sqrt(6)
    assert torch.allclose(planted.chroma_vector(120.0), green)
