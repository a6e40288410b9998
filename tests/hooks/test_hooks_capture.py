"""run_with_cache (values, order, truncation, gradients, clean-up), hooked, layer_shape, check_channel."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from circuits_vision.hooks import (
    check_channel,
    eval_mode,
    get_layer,
    hooked,
    layer_shape,
    probe_input,
    run_with_cache,
)


def image(size: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


class CallCounter:
    """Counts forward calls of named layers through forward hooks of their own."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.counts = dict.fromkeys(names, 0)
        self._hooks = {name: self._counter(name) for name in names}
        self._context = hooked(model, self._hooks)

    def _counter(self, name):
        def count(module, inputs, output):
            self.counts[name] += 1

        return count

    def __enter__(self):
        self._context.__enter__()
        return self.counts

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


def googlenet_prefix(model, x):
    """torchvision GoogLeNet by hand, up to inception3a (weights=None: no input transform)."""
    x = model.maxpool2(model.conv3(model.conv2(model.maxpool1(model.conv1(x)))))
    return x, model.inception3a(x)


def test_cached_outputs_equal_a_manual_forward(tiny_net):
    x = image(16, batch=2)
    cache = run_with_cache(tiny_net, x, ["join", "conv", "left", "fc"])
    assert list(cache) == ["join", "conv", "left", "fc"]
    conv = tiny_net.conv(x)
    hidden = tiny_net.relu(conv)
    joined = torch.cat([tiny_net.left(hidden), tiny_net.right(hidden)], 1)
    assert torch.equal(cache["conv"], conv)
    assert torch.equal(cache["left"], tiny_net.left(hidden))
    assert torch.equal(cache["join"], joined)
    assert torch.equal(cache["fc"], tiny_net(x))
    assert cache["join"].shape == (2, 10, 16, 16)


def test_googlenet_cache_matches_manual_prefix_and_keeps_alias_keys(googlenet):
    x = image(64)
    cache = run_with_cache(googlenet, x, ["inception3a_branch2_1", "inception3a", "maxpool2"])
    assert list(cache) == ["inception3a_branch2_1", "inception3a", "maxpool2"]
    with torch.no_grad():
        pooled, mixed = googlenet_prefix(googlenet, x)
        branch = googlenet.inception3a.branch2(pooled)
    assert torch.equal(cache["maxpool2"], pooled)
    assert torch.equal(cache["inception3a"], mixed)
    assert torch.equal(cache["inception3a_branch2_1"], branch)
    assert torch.equal(cache["inception3a"][:, 64:192], branch)


def test_truncation_stops_googlenet_after_inception3a(googlenet):
    x = image(64)
    watched = ["inception3a", "inception3b", "inception5b", "fc"]
    with CallCounter(googlenet, watched) as counts:
        run_with_cache(googlenet, x, ["inception3a"])
    assert counts == {"inception3a": 1, "inception3b": 0, "inception5b": 0, "fc": 0}
    with CallCounter(googlenet, watched) as counts:
        full = run_with_cache(googlenet, x, ["inception3a"], truncate=False)
    assert counts == {"inception3a": 1, "inception3b": 1, "inception5b": 1, "fc": 1}
    assert torch.equal(full["inception3a"], run_with_cache(googlenet, x, "inception3a")["inception3a"])


def test_truncation_stops_after_the_deepest_requested_layer_whatever_the_order(googlenet):
    with CallCounter(googlenet, ["inception4a", "inception4b", "inception5b"]) as counts:
        cache = run_with_cache(googlenet, image(64), ["inception4a", "conv1", "inception3b"])
    assert counts == {"inception4a": 1, "inception4b": 0, "inception5b": 0}
    assert [tuple(v.shape[1:2]) for v in cache.values()] == [(512,), (64,), (480,)]


def test_truncation_stops_inceptionv1_after_mixed3a(inception_v1):
    x = image(96)
    with CallCounter(inception_v1, ["mixed3a", "mixed3b", "mixed4a", "mixed5b", "softmax2"]) as counts:
        cache = run_with_cache(inception_v1, x, ["mixed3a"])
    assert counts == {"mixed3a": 1, "mixed3b": 0, "mixed4a": 0, "mixed5b": 0, "softmax2": 0}
    assert cache["mixed3a"].shape == (1, 256, 12, 12)
    branches = ["mixed3a_1x1", "mixed3a_3x3", "mixed3a_5x5", "mixed3a_pool_reduce"]
    with CallCounter(inception_v1, ["mixed3a", "mixed3b"]) as counts:
        parts = run_with_cache(inception_v1, x, branches)
    assert counts == {"mixed3a": 0, "mixed3b": 0}  # the branches are done before their Concat runs
    assert [p.shape[1] for p in parts.values()] == [64, 128, 32, 32]
    assert torch.equal(cache["mixed3a"], torch.cat(list(parts.values()), 1))


def test_gradients_flow_from_cached_outputs_to_the_input(googlenet):
    x = image(64).requires_grad_(True)
    cache = run_with_cache(googlenet, x, ["inception3a"])
    assert cache["inception3a"].requires_grad
    (grad,) = torch.autograd.grad(cache["inception3a"].square().sum(), x)
    x_manual = x.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(googlenet_prefix(googlenet, x_manual)[1].square().sum(), x_manual)
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)


def test_gradients_flow_through_inceptionv1_truncated_forward(inception_v1):
    x = image(64).requires_grad_(True)
    loss = run_with_cache(inception_v1, x, ["mixed3b"])["mixed3b"][:, 379].mean()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_no_grad_gives_outputs_without_graph(tiny_net):
    with torch.no_grad():
        cache = run_with_cache(tiny_net, image(8).requires_grad_(True), ["conv"])
    assert not cache["conv"].requires_grad


class Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 2, 1)
        self.second = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        y = self.second(self.first(x))
        if y.shape[-1] == 3:
            raise RuntimeError("odd input")
        return y


def test_hooks_are_removed_when_the_forward_raises():
    model = Exploding()
    with pytest.raises(RuntimeError, match="odd input"):
        run_with_cache(model, image(3), ["second"], truncate=False)
    with pytest.raises(RuntimeError, match="odd input"):
        run_with_cache(model, image(3), ["first", "second"], truncate=False)
    # A leftover truncation hook would stop this forward early (model(x) would return None).
    with CallCounter(model, ["second"]) as counts:
        out = model(image(4))
    assert out.shape == (1, 2, 4, 4) and counts == {"second": 1}


def test_hooks_are_removed_after_a_truncated_forward(googlenet):
    x = image(64)
    run_with_cache(googlenet, x, ["inception3a"])
    with CallCounter(googlenet, ["fc"]) as counts:
        logits = googlenet(x)
    assert logits.shape == (1, 1000) and counts == {"fc": 1}


def test_unknown_layer_raises_before_running(googlenet):
    with CallCounter(googlenet, ["conv1"]) as counts, pytest.raises(KeyError, match="inception3a"):
        run_with_cache(googlenet, image(64), ["conv1", "inception3z"])
    assert counts == {"conv1": 0}


def test_layer_that_never_runs_is_reported_or_left_out(googlenet):
    with pytest.raises(RuntimeError, match=r"\['aux1.fc2'\].*did not run"):
        run_with_cache(googlenet, image(32), ["conv1", "aux1.fc2"])
    cache = run_with_cache(googlenet, image(32), ["aux1.fc2", "conv1", "fc"], allow_missing=True)
    assert list(cache) == ["conv1", "fc"]
    assert cache["fc"].shape == (1, 1000)


def test_output_changed_in_place_later_is_returned_as_computed(resnet50):
    """torchvision ResNet's ReLU(inplace=True) overwrites bn1's output after its hook ran."""
    x = image(64)
    cache = run_with_cache(resnet50, x, ["bn1", "layer1.0.bn1", "layer1"])
    with torch.no_grad():
        bn1 = resnet50.bn1(resnet50.conv1(x))
        block_bn1 = resnet50.layer1[0].bn1(resnet50.layer1[0].conv1(resnet50.maxpool(torch.relu(bn1))))
    assert (bn1 < 0).any() and (block_bn1 < 0).any()
    assert torch.equal(cache["bn1"], bn1)
    assert torch.equal(cache["layer1.0.bn1"], block_bn1)
    assert torch.equal(cache["layer1"], resnet50.layer1(resnet50.maxpool(torch.relu(bn1))))


def test_in_place_changes_under_inference_mode_do_not_leak_into_the_cache(resnet50):
    x = image(32)
    with torch.inference_mode():
        cache = run_with_cache(resnet50, x, ["bn1", "maxpool"])
        bn1 = resnet50.bn1(resnet50.conv1(x))
    assert (bn1 < 0).any()
    assert torch.equal(cache["bn1"], bn1)


def test_module_called_twice_is_captured_at_its_first_call(resnet50):
    """Bottleneck calls its one `relu` three times; the first call follows bn1."""
    x = image(32)
    with torch.no_grad():
        truncated = run_with_cache(resnet50, x, ["layer1.0.relu", "layer1.0.bn1"])
        with pytest.warns(UserWarning, match="ran more than once"):
            full = run_with_cache(resnet50, x, ["layer1.0.relu", "layer1.0.bn1"], truncate=False)
    assert torch.equal(truncated["layer1.0.relu"], torch.relu(truncated["layer1.0.bn1"]))
    assert torch.equal(full["layer1.0.relu"], truncated["layer1.0.relu"])


def test_hooked_replaces_outputs_and_removes_its_hooks(tiny_net):
    x = image(8)
    clean = tiny_net(x)
    with hooked(tiny_net, {"left": lambda module, inputs, output: torch.zeros_like(output)}) as model:
        assert model is tiny_net
        cache = run_with_cache(tiny_net, x, ["join", "right"])
        ablated = tiny_net(x)
    assert torch.equal(cache["join"][:, :4], torch.zeros(1, 4, 8, 8))
    assert torch.equal(cache["join"][:, 4:], cache["right"])
    assert not torch.equal(ablated, clean)
    assert torch.equal(tiny_net(x), clean)


def test_hooked_removes_hooks_on_error(tiny_net):
    calls = []
    with pytest.raises(ValueError, match="inside"):
        with hooked(tiny_net, {"conv": lambda m, i, o: calls.append(1)}):
            tiny_net(image(8))
            raise ValueError("inside")
    tiny_net(image(8))
    assert calls == [1]


def test_sequential_models_cache_equals_slicing_them(alexnet, vgg16):
    x = image(64)
    with CallCounter(vgg16, ["features.5", "features.30", "classifier"]) as counts:
        cache = run_with_cache(vgg16, x, ["features_4", "features.1"])
    assert counts == {"features.5": 0, "features.30": 0, "classifier": 0}
    with torch.no_grad():
        assert torch.equal(cache["features_4"], vgg16.features[:5](x))
        conv = alexnet.features[0](x)
    # features.1 is ReLU(inplace=True): vgg16's capture of it, and alexnet's conv before its in-place ReLU
    assert torch.equal(cache["features.1"], torch.relu(vgg16.features[0](x)))
    assert torch.equal(run_with_cache(alexnet, x, ["features.0", "features.2"])["features.0"], conv)


def test_layer_shape_of_many_models(inception_v1, alexnet, vgg16, resnet50, googlenet, tiny_net):
    assert layer_shape(inception_v1, "mixed3b") == (480, 28, 28)  # at the model's input_size, 224
    assert layer_shape(inception_v1, "mixed4a", input_size=64) == (508, 4, 4)
    assert layer_shape(alexnet, "features.0", 64) == (64, 15, 15)
    assert layer_shape(alexnet, "features_3", 64) == (192, 7, 7)
    assert layer_shape(vgg16, "features.28", 64) == (512, 4, 4)
    assert layer_shape(resnet50, "layer2", (64, 96)) == (512, 8, 12)
    assert layer_shape(googlenet, "inception4a", 64) == (512, 4, 4)
    assert layer_shape(tiny_net, "join", 8) == (10, 8, 8)
    assert layer_shape(tiny_net, "fc", 8) == (5,)


def test_layer_shape_is_cached_per_model_and_size(tiny_net):
    with CallCounter(tiny_net, ["conv"]) as counts:
        assert layer_shape(tiny_net, "right", 6) == (6, 6, 6)
        assert layer_shape(tiny_net, "right", 6) == (6, 6, 6)
        assert counts["conv"] == 1
        assert layer_shape(tiny_net, "right", 10) == (6, 10, 10)
        assert counts["conv"] == 2


def test_layer_shape_probe_keeps_training_mode_and_batchnorm_stats(resnet50):
    model = resnet50.train()
    try:
        stats = model.bn1.running_mean.clone()
        assert layer_shape(model, "layer1", 32) == (256, 8, 8)
        assert model.training and model.bn1.training
        assert torch.equal(model.bn1.running_mean, stats)
    finally:
        model.eval()


def test_shape_cache_does_not_keep_models_alive():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert layer_shape(model, "0", 8) == (4, 6, 6)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_check_channel_names_the_layer_width(inception_v1):
    check_channel(inception_v1, "mixed3b", 0)
    check_channel(inception_v1, "mixed3b", 479)
    with pytest.raises(IndexError) as info:
        check_channel(inception_v1, "mixed3b", 480)
    assert str(info.value) == "layer 'mixed3b' has 480 channels (0..479), got 480"
    with pytest.raises(IndexError, match=r"layer 'mixed3b' has 480 channels \(0..479\), got -1"):
        check_channel(inception_v1, "mixed3b", -1)
    with pytest.raises(TypeError, match="must be an int"):
        check_channel(inception_v1, "mixed3b", 1.0)


def test_probe_uses_the_models_input_channels():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU())
    assert layer_shape(model, "1", 10) == (3, 8, 8)
    assert get_layer(model, "1") is model[1]


def test_probe_input_shape_dtype_and_seeded_noise():
    model = nn.Sequential(nn.Conv2d(2, 3, 3)).double()
    zeros = probe_input(model, (5, 7))
    assert zeros.shape == (1, 2, 5, 7) and zeros.dtype == torch.float64 and not zeros.any()
    first = probe_input(model, 6, torch.Generator().manual_seed(1))
    again = probe_input(model, 6, torch.Generator().manual_seed(1))
    other = probe_input(model, 6, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() < 1


def test_eval_mode_restores_each_modules_own_mode_also_on_error():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.BatchNorm2d(3), nn.Dropout()))
    model[1][1].eval()  # mixed modes: only the dropout is in eval
    with pytest.raises(RuntimeError, match="inside"):
        with eval_mode(model):
            assert not any(module.training for module in model.modules())
            raise RuntimeError("inside")
    assert [module.training for module in model.modules()] == [True, True, True, True, False]
