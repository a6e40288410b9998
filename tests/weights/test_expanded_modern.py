"""Expanded weights through the layers of newer nets: Hardswish, GELU, SiLU, LayerNorm, adaptive average
pooling, channels-last blocks, layer scales and the pool -> classifier step.

Each small block is held to the gradients of the linearised model (the definition), and the
approximations themselves to hand-computed kernels."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from circuits_vision.weights import expand, expanded_weights, linearized
from circuits_vision.weights.gradient import expanded_weights_by_gradient

torchvision = pytest.importorskip("torchvision")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seeded(model: nn.Module, seed: int, size: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    model.input_size = size
    return model.double().eval()


def _matches_gradient(model, source, target, channels):
    e = expand(model, source, target)
    want = expanded_weights_by_gradient(model, source, target, e, channels, input_size=model.input_size)
    assert float(want.abs().max()) > 1e-3  # the gradient is not trivially zero
    torch.testing.assert_close(e.weights[channels], want, rtol=1e-9, atol=1e-12)
    return e


# ------------------------------------------------------------------------------------ torchvision blocks


def test_mobilenet_v3_stem_and_blocks_with_hardswish():
    features = torchvision.models.mobilenet_v3_small().features
    # stem: conv -> BN -> Hardswish; blocks 2, 3: expand / depthwise / project with ReLU and a residual
    model = _seeded(
        nn.Sequential(copy.deepcopy(features[0]), copy.deepcopy(features[2]), copy.deepcopy(features[3])), 0, 48
    )
    e = _matches_gradient(model, "0.0", "2", [0, 5, 23])
    assert e.weights.shape == (24, 16, 7, 7) and e.stride == (2, 2)


def test_convnext_block_layernorm_gelu_and_layer_scale():
    from torchvision.models.convnext import CNBlock

    block = CNBlock(96, layer_scale=1e-6, stochastic_depth_prob=0.0)  # convnext_tiny's first stage block
    model = _seeded(nn.Sequential(nn.Conv2d(3, 96, 4, stride=4), block), 1, 64)
    with torch.no_grad():  # distinct per-channel layer scales, so using them (or not) shows
        block.layer_scale.copy_(torch.linspace(0.1, 1.0, 96, dtype=torch.float64).view(96, 1, 1))
    e = _matches_gradient(model, "0", "1", [0, 50, 95])
    assert e.weights.shape == (96, 96, 7, 7) and e.offset == (3, 3)
    # the residual lands on the centre tap: the block's weights plus the identity
    inner = expanded_weights(model, "0", "1.block")
    scaled = inner * block.layer_scale.detach().view(96, 1, 1, 1)
    torch.testing.assert_close(
        e.weights - scaled, torch.eye(96, dtype=torch.float64)[:, :, None, None] * F.pad(torch.ones(1, 1), (3, 3, 3, 3))
    )


def test_convnext_downsampling_layernorm2d():
    from torchvision.models.convnext import LayerNorm2d

    downsample = nn.Sequential(
        LayerNorm2d(96, eps=1e-6), nn.Conv2d(96, 192, kernel_size=2, stride=2)
    )  # convnext_tiny's
    model = _seeded(nn.Sequential(nn.Conv2d(3, 96, 4, stride=4), downsample), 2, 64)
    e = _matches_gradient(model, "0", "1", [0, 100, 191])
    assert e.weights.shape == (192, 96, 2, 2) and e.stride == (2, 2)


def test_pooling_to_classifier_heads():
    from torchvision.models.convnext import LayerNorm2d

    convnext_head = _seeded(
        nn.Sequential(
            nn.Conv2d(3, 96, 4, stride=4),
            nn.AdaptiveAvgPool2d(1),
            LayerNorm2d(96, eps=1e-6),
            nn.Flatten(1),
            nn.Linear(96, 10),
        ),
        3,
        32,
    )
    e = _matches_gradient(convnext_head, "0", "4", [0, 9])
    assert e.weights.shape == (10, 96, 8, 8) and e.stride == (8, 8)  # one tap per position of the 8x8 map
    mobilenet_head = _seeded(
        nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.Hardswish(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(16, 8),
            nn.Hardswish(),
            nn.Dropout(0.2),
            nn.Linear(8, 5),
        ),
        4,
        32,
    )
    _matches_gradient(mobilenet_head, "1", "7", [0, 4])


def test_whole_mobilenet_v3_last_features_to_logits():
    model = torchvision.models.mobilenet_v3_small().eval()
    e = expand(model, "features.12", "classifier.3")
    assert e.weights.shape == (1000, 576, 7, 7) and e.stride == (7, 7) and e.offset == (0, 0)
    # avgpool -> Linear -> Hardswish -> Dropout -> Linear: every tap is the same W2 @ W1 / 49
    w1, w2 = model.classifier[0].weight.detach(), model.classifier[3].weight.detach()
    torch.testing.assert_close(e.weights[:, :, 3, 3], (w2 @ w1) / 49, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(e.weights[:, :, 0, 6], e.weights[:, :, 3, 3])


# -------------------------------------------------------------------------- the approximations by hand


class _Functional(nn.Module):
    """conv1 -> F.gelu -> F.silu -> F.hardswish -> conv2 -> channels-last LayerNorm -> mean over H, W."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(2, 4, 3), nn.Conv2d(4, 3, 1)
        self.norm = nn.LayerNorm(3)
        self.out = nn.Identity()

    def forward(self, x):
        x = self.conv2(F.hardswish(F.silu(F.gelu(self.conv1(x)))))
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.out(x.mean((2, 3)))


def test_activations_are_identities_and_layernorm_centres_the_channels():
    model = _seeded(_Functional(), 5, 6)
    w2 = model.conv2.weight.detach()[:, :, 0, 0]
    gamma = model.norm.weight.detach()
    centred = gamma[:, None] * (w2 - w2.mean(0, keepdim=True))  # gamma * (x - mean over channels)
    e = expand(model, "conv1", "norm")  # from conv1's output, through the activations
    torch.testing.assert_close(e.weights[:, :, 0, 0], centred, rtol=1e-12, atol=1e-12)
    # the spatial mean of the 4x4 map: each of the 6x6 input taps sums the kernel over the positions that reach it
    pooled = expanded_weights(model, "conv1", "out")
    assert pooled.shape == (3, 4, 4, 4)
    torch.testing.assert_close(pooled, centred[:, :, None, None].expand(3, 4, 4, 4) / 16, rtol=1e-12, atol=1e-12)
    _matches_gradient(model, "conv1", "out", [0, 2])


def test_linearized_model_is_linear_with_the_new_layers():
    model = _seeded(_Functional(), 6, 6)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64)
    with torch.no_grad(), linearized(model):
        f0, f1, f3 = model(torch.zeros_like(x)), model(x), model(3 * x)
    torch.testing.assert_close(f3 - f0, 3 * (f1 - f0), rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # and outside the block the model is its non-linear self again
        assert not torch.allclose(
            model(3 * x) - model(torch.zeros_like(x)), 3 * (model(x) - model(torch.zeros_like(x)))
        )


# ------------------------------------------------------------------------------------------ clear errors


def test_unsupported_steps_are_named():
    odd = _seeded(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(3)), 7, 12)  # a 10x10 map to 3x3
    with pytest.raises(
        ValueError, match="adaptive average pooling of a 10x10 map to 3x3: its windows differ by position"
    ):
        expanded_weights(odd, "0", "1")
    flat = _seeded(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(1), nn.Linear(4 * 4 * 4, 2)), 8, 6)
    with pytest.raises(ValueError, match="flatten of a 4x4 map"):
        expanded_weights(flat, "0", "2")
    gated = _seeded(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardsigmoid()), 9, 8)  # a gate outside squeeze-and-excitation
    with pytest.raises(ValueError, match=r"cannot pass layer '1' \(Hardsigmoid\)"):
        expanded_weights(gated, "0", "1")


# ------------------------------------------------------------------------------- squeeze-and-excitation


def test_squeeze_excitation_is_its_gate_at_a_zero_input():
    from torchvision.ops import SqueezeExcitation

    model = _seeded(
        nn.Sequential(nn.Identity(), nn.Conv2d(3, 8, 3), SqueezeExcitation(8, 4, scale_activation=nn.Hardsigmoid)),
        10,
        9,
    )
    se = model[2]
    with torch.no_grad():  # biases that put some of fc1 below zero, so the gate's real ReLU matters
        se.fc1.bias.copy_(torch.tensor([1.0, -1.0, 0.5, -0.5], dtype=torch.float64))
    hidden = se.fc1.bias.detach().clamp_min(0)  # fc1(0) = its bias, then the real ReLU
    gate = F.hardsigmoid(se.fc2.weight.detach()[:, :, 0, 0] @ hidden + se.fc2.bias.detach())
    assert 0.05 < float(gate.min()) and float(gate.max()) < 0.95  # on the gate's sloped part: a real scale
    e = expanded_weights(model, "0", "2")  # from the input: the conv's kernels, each scaled by its channel's gate
    torch.testing.assert_close(e, gate[:, None, None, None] * model[1].weight.detach(), rtol=1e-12, atol=1e-12)
    _matches_gradient(model, "0", "2", [0, 7])


def test_mobilenet_v3_blocks_with_squeeze_excitation():
    features = torchvision.models.mobilenet_v3_small().features
    model = _seeded(copy.deepcopy(features[:6]), 11, 160)  # blocks 1, 4, 5 have squeeze-and-excitation
    e = _matches_gradient(model, "0.0", "5", [0, 39])
    assert e.weights.shape == (40, 16, 63, 63) and e.stride == (8, 8)


def test_a_source_inside_a_channels_last_block_is_read_by_its_channels():
    from torchvision.models.convnext import CNBlock

    block = CNBlock(96, layer_scale=1e-6, stochastic_depth_prob=0.0)
    model = _seeded(
        nn.Sequential(nn.Conv2d(3, 96, 4, stride=4), block), 12, 64
    )  # block.2: LayerNorm on [N, 16, 16, 96]
    w1, w2 = block.block[3].weight.detach(), block.block[5].weight.detach()  # Linear 96 -> 384 -> 96
    torch.testing.assert_close(expanded_weights(model, "1.block.2", "1.block.3"), w1[:, :, None, None])
    torch.testing.assert_close(expanded_weights(model, "1.block.2", "1.block.5"), (w2 @ w1)[:, :, None, None])
    torch.testing.assert_close(
        expanded_weights(model, "1.block.2", "1.block.5", source_channels=[95, 0]), (w2 @ w1)[:, [95, 0], None, None]
    )
