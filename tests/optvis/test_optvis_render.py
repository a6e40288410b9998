"""render: batched optimisation, determinism, model restored, errors before the first step."""

from __future__ import annotations

import pytest
import torch

from circuits_vision import hooks
from circuits_vision.optvis import NonFiniteError, RenderConfig, RenderInputError, objectives, param, render, transforms


def _render(model, objs, **kwargs):
    kwargs.setdefault("steps", 8)
    kwargs.setdefault("size", 20)
    kwargs.setdefault("progress", False)
    return render(model, objs, **kwargs)


def test_batched_render_shapes_and_improvement(tiny_net):
    result = _render(tiny_net, ["relu2:1", "relu2:4", "conv3:0"], steps=25)
    assert result.images.shape == (3, 3, 20, 20)
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert result.history.shape == (25, 3)
    assert result.objectives[0] == "Channel [relu2, 1]"
    # the losses go down: each channel's activation grows
    assert (result.history[-3:].mean(0) < result.history[:3].mean(0)).all()


def test_same_seed_gives_bit_identical_images(tiny_net):
    a = _render(tiny_net, ["relu2:1", "relu3:2"], seed=3)
    b = _render(tiny_net, ["relu2:1", "relu3:2"], seed=3)
    c = _render(tiny_net, ["relu2:1", "relu3:2"], seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert not torch.allclose(a.images, c.images)


def test_each_image_is_optimised_as_if_alone(tiny_net):
    together = _render(tiny_net, ["relu2:1", "relu3:2", "conv1:0"])
    chunked = _render(tiny_net, ["relu2:1", "relu3:2", "conv1:0"], batch_size=1)
    # same per-image generators: chunking changes nothing but float rounding in batched convs
    # (which Adam's early, nearly sign-like steps can amplify a little)
    moved = (together.images - _render(tiny_net, ["relu2:1", "relu3:2", "conv1:0"], steps=1).images).abs().amax()
    assert (together.images - chunked.images).abs().amax() < 0.02 * moved
    assert torch.allclose(together.history, chunked.history, atol=1e-3)


def test_model_is_restored(tiny_net):
    tiny_net.train()
    tiny_net.conv2.weight.requires_grad_(True)
    tiny_net.conv1.weight.requires_grad_(False)
    _render(tiny_net, ["relu2:1"], steps=3, preset="lucent", size=16)
    _render(tiny_net, ["relu2:1"], steps=3)
    assert tiny_net.training and tiny_net.relu1.training
    assert tiny_net.conv2.weight.requires_grad and not tiny_net.conv1.weight.requires_grad
    assert tiny_net.conv2.weight.is_contiguous()
    assert tiny_net.relu2.inplace
    assert all(not m._forward_hooks for m in tiny_net.modules())


def test_weights_are_frozen_and_model_in_eval_during_render(tiny_net):
    seen = []

    def probe(T):
        seen.append((tiny_net.training, tiny_net.conv1.weight.requires_grad))
        return -T("relu2")[:, 0].mean()

    tiny_net.train()
    _render(tiny_net, [objectives.Objective(probe, layers=["relu2"])], steps=2)
    assert seen == [(False, False), (False, False)]


def test_forward_stops_at_the_deepest_layer_needed(tiny_net):
    calls = []
    handle = tiny_net.conv3.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        _render(tiny_net, ["relu2:0", "conv1:3"], steps=3)
    finally:
        handle.remove()
    assert calls == []


def test_unknown_layer_fails_before_the_first_step_with_close_names(tiny_net):
    steps = []
    with pytest.raises(hooks.UnknownLayerError, match="relu2"):
        _render(tiny_net, ["relu22:0"], optimizer=lambda p: steps.append(1) or torch.optim.Adam(p))
    assert steps == []


def test_channel_past_the_width_names_the_width(tiny_net):
    with pytest.raises(IndexError, match=r"has 16 channels \(0..15\), got 16"):
        _render(tiny_net, ["relu1:0", "relu2:16"])


def test_too_small_image_says_the_minimum(tiny_net):
    # conv 3 -> conv 3 -> pool 2 -> conv 3 needs 10 px; the lucid transforms add 12 px
    with pytest.raises(RenderInputError, match=r"at least 10x10; use size >= -2|at least 10x10"):
        _render(tiny_net, ["relu3:0"], size=2, transforms=[transforms.jitter(1)])
    with pytest.raises(RenderInputError, match=r"needs at least 10x10; use size >= 11"):
        _render(tiny_net, ["relu3:0"], size=8, transforms=[transforms.jitter(1)])


def test_nan_stops_with_step_and_objective(tiny_net):
    state = {"calls": 0}

    def explodes_at_step_3(T):
        state["calls"] += 1
        value = -T("relu2")[:, 0].mean()
        return value * float("nan") if state["calls"] == 3 else value

    objs = ["relu2:1", objectives.Objective(explodes_at_step_3, "boom", "Boom", layers=["relu2"])]
    with pytest.raises(NonFiniteError, match=r"step 3: the objective value of objective 1 \(Boom\)"):
        _render(tiny_net, objs)


def test_thresholds_snapshot_the_images(tiny_net):
    result = _render(tiny_net, ["relu2:1"], steps=6, thresholds=(2, 6))
    assert sorted(result.snapshots) == [2, 6]
    assert torch.equal(result.snapshots[6], result.images)
    assert not torch.equal(result.snapshots[2], result.images)
    with pytest.raises(ValueError, match="thresholds"):
        _render(tiny_net, ["relu2:1"], steps=6, thresholds=(7,))


def test_images_per_objective_with_diversity(tiny_net):
    diverse = objectives.channel("relu2", 3) - 10 * objectives.diversity("relu2")
    result = _render(tiny_net, [diverse, "relu3:1"], images_per_objective=2, steps=4)
    assert result.images.shape == (4, 3, 20, 20)
    assert result.history.shape == (4, 2)
    # a lone diversity term is zero, so the history row is the 2-image objective value
    assert torch.isfinite(result.history).all()


def test_batch_argument_targets_one_image_of_the_objective(tiny_net):
    only_second = objectives.channel("relu2", 3, batch=1)
    result = _render(tiny_net, [only_second], images_per_objective=2, steps=4, redirect_relu=None)
    # image 0 gets no gradient: Adam leaves it at its start, image 1 moves
    fresh = _render(tiny_net, [only_second], images_per_objective=2, steps=1, redirect_relu=None)
    assert torch.allclose(result.images[0], fresh.images[0], atol=1e-6)
    assert not torch.allclose(result.images[1], fresh.images[1], atol=1e-4)


@pytest.mark.parametrize("kind", ["pixel", "cppn", param.FFT(decay_power=1.5), param.FFT(alpha=True)])
def test_other_parameterizations(tiny_net, kind):
    result = _render(tiny_net, ["relu2:1", "relu2:2"], param=kind, steps=3)
    channels = 4 if isinstance(kind, param.FFT) and kind.alpha else 3
    assert result.images.shape == (2, channels, 20, 20)


def test_lucent_style_param_function(tiny_net):
    result = _render(tiny_net, ["relu2:1", "relu2:2"], param=lambda: param.image(18, batch=2), steps=2)
    assert result.images.shape == (2, 3, 18, 18)
    with pytest.raises(ValueError, match="made 1 images"):
        _render(tiny_net, ["relu2:1", "relu2:2"], param=lambda: param.image(18), steps=2)


def test_sequential_transforms_and_lucent_preset(tiny_net, make_net):
    result = _render(tiny_net, ["relu2:1"], transforms=[transforms.pad(2), transforms.jitter(2)], steps=2)
    assert result.images.shape == (1, 3, 20, 20)
    lucent = _render(make_net(1), ["relu2:1", "relu3:0"], preset="lucent", steps=3, size=16)
    assert lucent.images.shape == (2, 3, 16, 16)


def test_fused_matches_unfused_pipeline(tiny_net):
    a = _render(tiny_net, ["relu2:1", "relu3:2"], config=RenderConfig(fused=True))
    b = _render(
        tiny_net, ["relu2:1", "relu3:2"], config=RenderConfig(fused=False)
    )  # sequential transforms, other draws
    assert a.images.shape == b.images.shape
    with pytest.raises(ValueError, match="fused=True needs"):
        _render(tiny_net, ["relu2:1"], config=RenderConfig(fused=True), param="cppn")


def test_channels_last_and_precision_switches(tiny_net):
    a = _render(tiny_net, ["relu2:1"], config=RenderConfig(channels_last=True, autocast=False))
    b = _render(tiny_net, ["relu2:1"], config=RenderConfig(channels_last=False, autocast=False))
    assert torch.allclose(a.images, b.images, atol=1e-4)
    c = _render(tiny_net, ["relu2:1"], config=RenderConfig(autocast="bf16"), steps=3)
    assert torch.isfinite(c.images).all()


def test_engine_knobs_live_in_a_frozen_render_config(tiny_net):
    import dataclasses
    import inspect

    knobs = {"channels_last", "autocast", "fused", "memory_budget", "cuda_graphs"}
    assert not knobs & set(inspect.signature(render).parameters)
    assert {f.name for f in dataclasses.fields(RenderConfig)} == knobs - {"cuda_graphs"}
    config = RenderConfig(autocast=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.fused = True
    assert (
        config.precision == "fp32"
        and RenderConfig().precision == "tf32"
        and RenderConfig(autocast=True).precision == "bf16"
    )
    for bad, error in [
        ({"autocast": "fp16"}, ValueError),
        ({"fused": "yes"}, TypeError),
        ({"channels_last": None}, TypeError),
        ({"memory_budget": 0}, ValueError),
        ({"memory_budget": True}, ValueError),
    ]:
        with pytest.raises(error, match="RenderConfig"):
            RenderConfig(**bad)
    with pytest.raises(TypeError, match="config must be a RenderConfig, got dict"):
        _render(tiny_net, ["relu2:1"], config={"fused": True})


def test_plain_function_objective_layers_are_discovered(tiny_net):
    calls = []
    handle = tiny_net.conv3.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        result = _render(tiny_net, [lambda T: -T("relu2")[:, 2].mean()], steps=2)
    finally:
        handle.remove()
    assert calls == [] and result.history.shape == (2, 1)


def test_vector_arguments_must_match_the_layer_width(tiny_net):
    with pytest.raises(ValueError, match=r"`direction` has 5 entries but layer 'relu2' has 16 channels"):
        _render(tiny_net, [objectives.direction("relu2", torch.ones(5))])
    result = _render(
        tiny_net,
        [objectives.direction("relu2", torch.ones(16)), objectives.channel_weight("relu1", torch.ones(8))],
        steps=2,
    )
    assert result.history.shape == (2, 2)


def test_nan_gradient_in_a_later_chunk_names_its_objective(tiny_net):
    def nan_gradient(T):
        image = T("input")
        return -T("relu2")[:, 0].mean() + (image - image.detach()).sqrt().sum() * 0  # d/dx sqrt(0) = inf

    objs = ["relu2:1", "relu2:2", objectives.Objective(nan_gradient, "sqrt", "Sqrt", layers=["relu2"])]
    with pytest.raises(NonFiniteError, match=r"step 1: the gradient of objective 2 \(Sqrt\)"):
        _render(tiny_net, objs, batch_size=2)


def test_memory_budget_picks_the_batch_size(tiny_net):
    from circuits_vision.optvis._batching import bytes_per_image, choose_batch_size

    small, large = (
        bytes_per_image(tiny_net, ["relu2"], 20, torch.device("cpu")),
        bytes_per_image(tiny_net, ["relu2"], 40, torch.device("cpu")),
    )
    assert 0 < small < large
    assert choose_batch_size(tiny_net, ["relu2"], 20, 1, 5, torch.device("cpu"), memory_budget=2 * small) == 2
    assert choose_batch_size(tiny_net, ["relu2"], 20, 2, 6, torch.device("cpu"), memory_budget=3 * small) == 2
    assert choose_batch_size(tiny_net, ["relu2"], 20, 1, 5, torch.device("cpu"), memory_budget=10**12) == 5
    # a budget for one image at a time renders in chunks of one, exactly like batch_size=1
    objs = ["relu2:1", "relu2:2", "relu2:3"]
    assert torch.equal(
        _render(tiny_net, objs, config=RenderConfig(memory_budget=1), steps=3).images,
        _render(tiny_net, objs, batch_size=1, steps=3).images,
    )
