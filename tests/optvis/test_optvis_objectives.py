"""Objectives: lucent's names and values, algebra, batch selection, layer bookkeeping."""

from __future__ import annotations

import pytest
import torch

from circuits_vision.optvis import objectives as obj


def _activations(seed=0, batch=4):
    generator = torch.Generator().manual_seed(seed)
    acts = {
        "mixed3a": torch.randn(batch, 16, 7, 7, generator=generator),
        "conv2d2": torch.randn(batch, 8, 9, 9, generator=generator).relu(),
        "input": torch.rand(batch, 3, 12, 12, generator=generator),
    }
    return acts, acts.__getitem__


def test_channel_and_neuron_values():
    acts, T = _activations()
    assert obj.channel("mixed3a", 5)(T).item() == pytest.approx(-acts["mixed3a"][:, 5].mean().item())
    assert obj.neuron("mixed3a", 5)(T).item() == pytest.approx(-acts["mixed3a"][:, 5, 3, 3].mean().item())
    assert obj.neuron("mixed3a", 5, x=1, y=4)(T).item() == pytest.approx(-acts["mixed3a"][:, 5, 4, 1].mean().item())


def test_batch_selects_one_image():
    acts, T = _activations()
    assert obj.channel("mixed3a", 2, batch=3)(T).item() == pytest.approx(-acts["mixed3a"][3, 2].mean().item())
    assert obj.L1(batch=1)(T).item() == pytest.approx(acts["input"][1].abs().sum().item(), rel=1e-6)


def test_algebra():
    acts, T = _activations()
    a, b = obj.channel("mixed3a", 1), obj.channel("conv2d2", 2)
    va, vb = a(T).item(), b(T).item()
    assert (a + b)(T).item() == pytest.approx(va + vb)
    assert (a - 2 * b)(T).item() == pytest.approx(va - 2 * vb)
    assert (a / 4)(T).item() == pytest.approx(va / 4)
    assert (-a)(T).item() == pytest.approx(-va)
    assert (1 + a)(T).item() == pytest.approx(1 + va)
    assert (a * b)(T).item() == pytest.approx(va * vb)
    assert obj.Objective.sum([a, b, "mixed3a:3"])(T).item() == pytest.approx(
        va + vb + obj.channel("mixed3a", 3)(T).item()
    )
    combined = a - 1e2 * obj.diversity("mixed3a") + obj.L1()
    assert combined.layers == ("mixed3a",)  # "input" is no model layer
    assert set((a + b).layers) == {"mixed3a", "conv2d2"}
    assert (a + b).channels == (("mixed3a", 1), ("conv2d2", 2))
    assert "Channel [mixed3a, 1]" in (a + b).description


def test_string_objectives():
    spec = obj.as_objective("mixed4a:476")
    assert spec.name == "channel" and spec.channels == (("mixed4a", 476),)
    assert obj.as_objective(" layer1.0.conv1 : 3 ").channels == (("layer1.0.conv1", 3),)
    with pytest.raises(ValueError, match="layer:channel"):
        obj.as_objective("mixed4a")
    wrapped = obj.as_objective(lambda T: T("mixed3a").sum())
    assert wrapped.layers is None


def test_direction_neuron_cossim_is_the_projection_times_a_cosine_power_at_one_position():
    acts, T = _activations()
    direction = torch.randn(16, generator=torch.Generator().manual_seed(3))
    a = acts["mixed3a"][:, :, 3, 3]
    dot = a @ (direction / direction.norm())
    cos = torch.nn.functional.cosine_similarity(a, direction[None], dim=1)
    expected = -(dot * cos.clamp_min(0.1) ** 4).mean()
    assert obj.direction_neuron_cossim("mixed3a", direction)(T).item() == pytest.approx(expected.item(), rel=1e-3)
    at = acts["mixed3a"][1:2, :, 5, 1]
    one = at @ (direction / direction.norm())
    expected = -(one * (one / at.norm()).clamp_min(0.1) ** 2).mean()
    value = obj.direction_neuron_cossim("mixed3a", direction, x=1, y=5, cossim_pow=2, batch=1)(T)
    assert value.item() == pytest.approx(expected.item(), rel=1e-3)
    # scaling the direction changes nothing; the activation along it counts once, not squared
    assert obj.direction_neuron_cossim("mixed3a", 5 * direction)(T).item() == pytest.approx(
        obj.direction_neuron_cossim("mixed3a", direction)(T).item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="cossim_pow"):
        obj.direction_neuron_cossim("mixed3a", direction, cossim_pow=-1)


def test_penalties():
    acts, T = _activations()
    image = acts["input"]
    assert obj.L2(constant=0.5)(T).item() == pytest.approx(((image - 0.5) ** 2).sum().add(1e-6).sqrt().item(), rel=1e-6)
    tv = (image[..., 1:, :] - image[..., :-1, :]).abs().sum() + (image[..., 1:] - image[..., :-1]).abs().sum()
    assert obj.total_variation()(T).item() == pytest.approx(tv.item(), rel=1e-6)
    assert obj.deepdream("mixed3a")(T).item() == pytest.approx(-(acts["mixed3a"] ** 2).mean().item(), rel=1e-6)
    assert obj.class_logit("conv2d2", 1)(T).item() == pytest.approx(
        -acts["conv2d2"][:, 1].mean((1, 2)).sum().item(), rel=1e-6
    )


def test_diversity_is_zero_for_one_image_and_negative_for_similar_images():
    acts, T = _activations(batch=1)
    assert obj.diversity("mixed3a")(T).item() == 0.0
    same = torch.ones(3, 4, 5, 5)
    assert obj.diversity("x")(lambda name: same).item() == pytest.approx(-2.0)  # -(n-1) for identical images


LUCENT_CASES = [
    ("channel", ("mixed3a", 4), {}),
    ("channel", ("mixed3a", 4), {"batch": 2}),
    ("neuron", ("mixed3a", 7), {}),
    ("neuron", ("mixed3a", 7), {"x": 2, "y": 5, "batch": 1}),
    ("direction", ("mixed3a", "DIR16"), {}),
    ("direction_neuron", ("mixed3a", "DIR16"), {"batch": 0}),
    ("channel_weight", ("mixed3a", "DIR16"), {}),
    ("neuron_weight", ("mixed3a", "DIR16"), {"x": 1, "y": 1}),
    ("localgroup_weight", ("conv2d2", "DIR8"), {"x": 2, "y": 3, "wx": 3, "wy": 2}),
    ("diversity", ("mixed3a",), {}),
    ("alignment", ("conv2d2",), {}),
    ("channel_interpolate", ("mixed3a", 1, "conv2d2", 3), {}),
    ("blur_input_each_step", (), {}),
]


@pytest.mark.needs_lucent
@pytest.mark.parametrize("name,args,kwargs", LUCENT_CASES)
def test_values_equal_lucents(name, args, kwargs):
    from lucent.optvis import objectives as lucent_objectives

    _, T = _activations(seed=7, batch=6)
    generator = torch.Generator().manual_seed(1)
    directions = {"DIR16": torch.randn(16, generator=generator), "DIR8": torch.randn(8, generator=generator)}
    args = tuple(directions.get(a, a) if isinstance(a, str) else a for a in args)
    ours = getattr(obj, name)(*args, **kwargs)(T)
    theirs = getattr(lucent_objectives, name)(*args, **kwargs)(T)
    assert ours.item() == pytest.approx(float(theirs), rel=1e-5, abs=1e-5)
