"""render's input handling: fixed-size heads, positions, batch indices, dtypes, array-likes, sizes,
whole layers, units that never activate, and clear early errors for bad arguments."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from circuits_vision import hooks
from circuits_vision.analysis import tuning
from circuits_vision.optvis import (
    RenderConfig,
    RenderInputError,
    RenderTooLargeError,
    _batching,
    objectives,
    render,
    transforms,
)


def _render(model, objs, **kwargs):
    kwargs.setdefault("steps", 3)
    kwargs.setdefault("size", 20)
    kwargs.setdefault("progress", False)
    return render(model, objs, **kwargs)


class FixedHead(nn.Module):
    """conv 3x3 -> relu -> flatten -> linear: only 16x16 images reach ``fc`` (as InceptionV1's logits)."""

    input_size = 16

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 14 * 14, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("preset", ["lucid", "lucent"])
def test_fixed_head_keeps_its_input_size_under_the_default_transforms(preset):
    result = _render(FixedHead(), "fc:3", size=16, preset=preset)
    assert result.images.shape == (1, 3, 16, 16)
    assert torch.isfinite(result.history).all() and result.history[-1, 0] < result.history[0, 0]
    # smaller and larger renders are padded / cropped to 16 px too
    assert _render(FixedHead(), "fc:3", size=12).images.shape == (1, 3, 12, 12)
    assert _render(FixedHead(), "fc:3", size=(24, 20), transforms=None).images.shape == (1, 3, 24, 20)
    assert _render(FixedHead(), "fc:3", size=12, param="cppn").images.shape == (1, 3, 12, 12)


def test_fixed_head_with_own_transforms_says_why_and_how():
    with pytest.raises(
        RenderInputError, match=r"only from 16x16-px images \(a head of fixed size\).*18x18.*crop_or_pad_to\(16, 16\)"
    ):
        _render(FixedHead(), "fc:3", size=16, transforms=[transforms.pad(1, mode="constant")])
    # the named fix works
    fixed = [transforms.pad(1, mode="constant"), transforms.crop_or_pad_to(16)]
    assert _render(FixedHead(), "fc:3", size=16, transforms=fixed).images.shape == (1, 3, 16, 16)


def test_too_small_model_still_gets_the_minimum_size(tiny_net):
    with pytest.raises(RenderInputError, match=r"at least 10x10"):
        _render(tiny_net, ["relu3:0"], size=4, transforms=[])


def test_positions_outside_the_map_fail_before_the_first_step(tiny_net):
    height, width = hooks.layer_shape(tiny_net, "relu3", 32)[1:]  # lucid transforms: 20 + 12 = 32 px
    assert (height, width) == (12, 12)
    for x, y in [(50, 50), (-1, None), (width, None), (None, height)]:
        axis, value = ("x", x) if x is not None else ("y", y)
        with pytest.raises(
            IndexError, match=rf"{axis}={value} is outside layer 'relu3', whose map is 12x12.*valid {axis}: 0\.\.11"
        ):
            _render(tiny_net, objectives.neuron("relu3", 0, x=x, y=y))
    assert _render(tiny_net, objectives.neuron("relu3", 0, x=width - 1, y=0)).history.shape == (3, 1)
    with pytest.raises(IndexError, match=r"valid x: 0\.\.10 for a window of 2"):
        _render(tiny_net, objectives.localgroup_weight("relu3", x=11, y=0, wx=2))
    with pytest.raises(TypeError, match="x must be an int"):
        objectives.neuron("relu3", 0, x=1.5)


def test_batch_indices_outside_the_objectives_images_fail_before_the_first_step(tiny_net):
    with pytest.raises(IndexError, match=r"batch=5.*images_per_objective=2 image\(s\), so batch must be in 0\.\.1"):
        _render(tiny_net, objectives.channel("relu3", 0, batch=5), images_per_objective=2)
    with pytest.raises(IndexError, match=r"batch must be in 0\.\.0"):
        _render(tiny_net, objectives.channel("relu3", 0, batch=-1))
    combined = objectives.channel("relu3", 0, batch=1) - objectives.diversity("relu3")
    assert _render(tiny_net, combined, images_per_objective=2).images.shape == (2, 3, 20, 20)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_render_runs_in_the_models_dtype(make_net, dtype):
    reference = _render(make_net(0), ["relu3:0", "relu2:1"])
    model = make_net(0).to(dtype)
    result = _render(model, ["relu3:0", "relu2:1"])
    assert result.images.dtype == torch.float32 and 0 <= result.images.min() and result.images.max() <= 1
    assert all(p.dtype == dtype for p in model.parameters())  # the model is left as it was
    tolerance = {torch.float64: 1e-4, torch.bfloat16: 0.1, torch.float16: 0.02}[dtype]
    assert torch.allclose(result.history, reference.history, rtol=tolerance, atol=tolerance)


def test_array_likes_are_accepted(tiny_net):
    direction = np.random.default_rng(0).standard_normal(12)
    result = _render(tiny_net, objectives.direction("relu3", direction))
    assert result.history.shape == (3, 1)
    assert _render(tiny_net, objectives.channel_weight("relu3", list(direction))).history.shape == (3, 1)
    with pytest.raises(ValueError, match="has 12 entries but layer 'relu2' has 16 channels"):
        _render(tiny_net, objectives.direction("relu2", direction))

    images = np.random.default_rng(1).random((2, 3, 20, 20))  # float64 in [0, 1]
    expected = hooks.run_with_cache(tiny_net, torch.as_tensor(images, dtype=torch.float32), ["relu2"])["relu2"]
    assert torch.allclose(hooks.run_with_cache(tiny_net, images, ["relu2"])["relu2"], expected)
    responses = tuning.unit_responses(tiny_net, "relu2", images, [0, 3])
    assert torch.allclose(responses, expected[:, [0, 3], expected.shape[2] // 2, expected.shape[3] // 2])


def test_images_outside_zero_one_are_refused(tiny_net):
    images = (np.random.default_rng(1).random((2, 3, 20, 20)) * 255).astype(np.uint8)
    with pytest.raises(TypeError, match=r"uint8 \(0-255\).*/ 255"):
        hooks.run_with_cache(tiny_net, images, ["relu2"])
    with pytest.raises(TypeError, match=r"uint8"):
        tuning.unit_responses(tiny_net, "relu2", torch.as_tensor(images), [0])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*divide by 255"):
        tuning.unit_responses(tiny_net, "relu2", images.astype(np.float32), [0])


def test_non_square_sizes(tiny_net):
    fused = _render(tiny_net, ["relu3:0", "relu2:1"], size=(16, 24))
    assert fused.images.shape == (2, 3, 16, 24)
    sequential = _render(tiny_net, ["relu3:0"], size=(24, 16), transforms=[transforms.pad(2), transforms.jitter(2)])
    assert sequential.images.shape == (1, 3, 24, 16)
    lucent = _render(tiny_net, ["relu3:0"], size=(16, 24), preset="lucent")
    assert lucent.images.shape == (1, 3, 16, 24)
    with pytest.raises(ValueError, match=r"int or \(height, width\)"):
        _render(tiny_net, ["relu3:0"], size=(16, 24, 3))


def test_a_bare_layer_name_renders_every_channel(tiny_net):
    result = _render(tiny_net, "relu3")
    assert result.images.shape == (12, 3, 20, 20)
    assert result.objectives == [f"Channel [relu3, {c}]" for c in range(12)]
    listed = _render(tiny_net, [f"relu3:{c}" for c in range(12)])
    assert torch.equal(result.images, listed.images)  # the same render as naming every channel
    with pytest.raises(hooks.UnknownLayerError):
        _render(tiny_net, "relu9")


def test_units_that_never_activate_are_flagged(make_net):
    model = make_net(0)
    with torch.no_grad():
        model.conv3.bias[0] = -100.0  # relu3:0 can never turn on
    result = _render(model, ["relu3:0", "relu3:1"], steps=20)
    assert (result.history[:, 0] == 0).all()
    assert result.never_active.tolist() == [True, False]


def test_bad_arguments_fail_before_the_first_step(tiny_net, monkeypatch):
    with pytest.raises(TypeError, match="needs an nn.Module as model, got NoneType"):
        render(None, "relu3:0")
    for name, value in [("batch_size", 0), ("steps", -4), ("steps", 0), ("images_per_objective", 0)]:
        with pytest.raises(ValueError, match=rf"{name} must be >= 1, got {value}"):
            _render(tiny_net, "relu3:0", **{name: value})
    with pytest.raises(ValueError, match=r"memory_budget must be >= 1, got -1"):
        RenderConfig(memory_budget=-1)
    with pytest.raises(TypeError, match="steps must be an int, got float: 2.5"):
        _render(tiny_net, "relu3:0", steps=2.5)
    with pytest.raises(TypeError, match=r"render needs objectives"):
        _render(tiny_net, None)
    vector = objectives.Objective(lambda T: -T("relu3")[:, 0].mean(dim=(1, 2)), "vector", layers=["relu3"])
    with pytest.raises(TypeError, match=r"must return a scalar.*shape \(2,\).*\.mean\(\) or \.sum\(\)"):
        _render(tiny_net, vector, images_per_objective=2)


def test_huge_renders_are_refused_with_the_estimate_before_allocating(tiny_net, monkeypatch):
    monkeypatch.setattr(_batching, "available_memory", lambda device: 16 * 2**30)
    with pytest.raises(RenderTooLargeError, match=r"size=\(20000, 20000\) needs about \d+\.\d GiB.*16\.0 GiB free"):
        _render(tiny_net, "relu3:0", size=20000)
    with pytest.raises(RenderTooLargeError):
        _render(nn.Sequential(OrderedDict(net=tiny_net)), "net:0", size=(20000, 3000))
