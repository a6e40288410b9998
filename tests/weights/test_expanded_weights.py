"""Expanded weights on tiny nets: hand-computed sums, residual blocks, BatchNorm, errors."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from circuits_vision.hooks import UnknownLayerError
from circuits_vision.ops import _reference
from circuits_vision.weights import expand, expanded_weights, linearized
from circuits_vision.weights.gradient import expanded_weights_by_gradient


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))
                m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
    return model.double().eval()


class TinyLinear(nn.Module):
    """input -> conv1 (2x2, stride 2) -> ReLU -> conv2 (2x2, padding 1) -> ReLU -> conv3 (1x1)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Identity()
        self.conv1 = nn.Conv2d(2, 3, 2, stride=2, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 2, 2, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(2, 4, 1)

    def forward(self, x):
        return self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(self.inp(x))))))


def test_tiny_linear_net_equals_hand_computed_sum():
    model = _seeded(TinyLinear(), 0)
    w1, w2, w3 = model.conv1.weight, model.conv2.weight, model.conv3.weight
    # E[o, i, t] = sum_{m2, m1} sum_{t = 2*v + u} w3[o, m2] * w2[m2, m1, v] * w1[m1, i, u]  (per axis)
    want = torch.zeros(4, 2, 4, 4, dtype=torch.float64)
    for o, i, m2, m1, vy, vx, uy, ux in itertools.product(
        range(4), range(2), range(2), range(3), range(2), range(2), range(2), range(2)
    ):
        want[o, i, 2 * vy + uy, 2 * vx + ux] += w3[o, m2, 0, 0] * w2[m2, m1, vy, vx] * w1[m1, i, uy, ux]
    got = expand(model, "inp", "conv3")
    torch.testing.assert_close(got.weights, want, rtol=1e-12, atol=1e-12)
    # conv2's padding of 1 sits at stride 2 on the input: the window starts 2 pixels before 2*y
    assert got.stride == (2, 2) and got.offset == (2, 2)
    # the twin gives the same numbers; the 1x1 alone is just its weight
    torch.testing.assert_close(expanded_weights(model, "inp", "conv3", compose=_reference.compose_kernels), want)
    torch.testing.assert_close(expanded_weights(model, "relu2", "conv3"), w3)


def test_tiny_linear_net_matches_the_linearised_network_output():
    """conv(input, E, stride, offset) reproduces the linearised network (minus its bias) away from borders."""
    model = _seeded(TinyLinear(), 1)
    e = expand(model, "inp", "conv3")
    x = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad(), linearized(model):
        full, zero = model(x), model(torch.zeros_like(x))
    via_kernel = F.conv2d(F.pad(x, (e.offset[1], 0, e.offset[0], 0)), e.weights, stride=e.stride)
    rows = min(via_kernel.shape[2], full.shape[2]) - 1  # last row/col touch the bottom/right border
    torch.testing.assert_close(
        via_kernel[..., 1:rows, 1:rows], (full - zero)[..., 1:rows, 1:rows], rtol=1e-10, atol=1e-10
    )


class ResidualNet(nn.Module):
    """stem -> [conv3x3 s2 -> BN -> ReLU6 -> conv3x3 -> BN] + [conv1x1 s2 -> BN] -> ReLU, like a ResNet block."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.relu0 = nn.ReLU()
        self.conv1, self.bn1, self.relu1 = (
            nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU6(),
        )
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.down = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        x = self.relu0(self.stem(x))
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.down(x))


def test_residual_block_with_batchnorm_equals_gradient_of_linearised_model():
    model = _seeded(ResidualNet(), 3)
    e = expand(model, "relu0", "relu2")
    assert e.weights.shape == (6, 4, 7, 7) and e.stride == (2, 2) and e.offset == (3, 3)
    want = expanded_weights_by_gradient(model, "relu0", "relu2", e, range(6), input_size=16)
    torch.testing.assert_close(e.weights, want, rtol=1e-10, atol=1e-12)


def test_batchnorm_scale_and_shortcut_by_hand():
    model = _seeded(ResidualNet(), 4)
    e = expanded_weights(model, "relu0", "down")
    bn = model.down[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(e, model.down[0].weight * scale[:, None, None, None], rtol=1e-12, atol=1e-12)
    # in the sum the shortcut lands on the centre tap of the 7x7 window (offset 3 vs 0)
    total = expanded_weights(model, "relu0", "relu2")
    main = expanded_weights(model, "relu0", "bn2")
    torch.testing.assert_close(total[:, :, 3, 3], main[:, :, 3, 3] + e[:, :, 0, 0])
    torch.testing.assert_close(total[:, :, 0, 0], main[:, :, 0, 0])


def test_torchvision_basic_block():
    torchvision = pytest.importorskip("torchvision")
    block = torchvision.models.resnet.BasicBlock(
        4, 8, stride=2, downsample=nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    )
    model = _seeded(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), block), 5)
    e = expand(model, "0", "1")
    want = expanded_weights_by_gradient(model, "0", "1", e, [0, 3, 7], input_size=16)
    torch.testing.assert_close(e.weights[[0, 3, 7]], want, rtol=1e-10, atol=1e-12)


class PoolNet(nn.Module):
    """Concat of a max-pooled branch (TF-style -inf padding) and a conv branch; a TF-LRN-like scale."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(3, 2)
        self.conv1 = nn.Conv2d(4, 2, 3, stride=2)
        self.norm = _HalvingNorm()

    def forward(self, x):
        x = self.conv0(x)
        pooled = self.pool(F.pad(x, (0, 1, 0, 1), value=float("-inf")))
        branch = self.conv1(F.pad(x, (1, 1, 1, 1)))
        return self.norm(torch.cat([pooled, branch], 1))


class _HalvingNorm(nn.Module):
    def forward(self, x):
        return x / (1 + x.abs())  # not linear; its slope at 0 is 1 ... declared as 0.5 to test the scale

    def linear_approximation(self) -> float:
        return 0.5


def test_maxpool_as_average_pool_concat_and_linear_approximation():
    model = _seeded(PoolNet(), 6)
    e = expand(model, "conv0", "norm")
    # pool windows start at 2*y (no pixel padded before), conv windows one pixel earlier: aligned in a 4x4
    assert e.weights.shape == (6, 4, 4, 4) and e.stride == (2, 2) and e.offset == (1, 1)
    box = 0.5 / 9 * torch.eye(4, dtype=torch.float64)[:, :, None, None].expand(4, 4, 3, 3)
    torch.testing.assert_close(e.weights[:4], F.pad(box, (1, 0, 1, 0)))
    torch.testing.assert_close(e.weights[4:], F.pad(0.5 * model.conv1.weight, (0, 1, 0, 1)))
    want = expanded_weights_by_gradient(model, "conv0", "norm", e, range(6), input_size=16)
    torch.testing.assert_close(e.weights, want, rtol=1e-10, atol=1e-12)
    center = expanded_weights(model, "conv0", "pool", maxpool="center")
    torch.testing.assert_close(
        center, torch.eye(4, dtype=torch.float64)[:, :, None, None] * F.pad(torch.ones(1, 1), (1, 1, 1, 1))
    )


def test_source_channels_and_crop():
    model = _seeded(TinyLinear(), 7)
    full = expand(model, "inp", "conv3")
    part = expand(model, "inp", "conv3", source_channels=[1])
    torch.testing.assert_close(part.weights, full.weights[:, [1]])
    cropped = expand(model, "inp", "conv3", crop=2)
    torch.testing.assert_close(cropped.weights, full.weights[:, :, 1:3, 1:3])
    assert cropped.offset == (1, 1)
    with pytest.raises(ValueError, match="crop=5 is larger than the expanded kernel"):
        expanded_weights(model, "inp", "conv3", crop=5)
    with pytest.raises(IndexError, match="has 2 channels"):
        expanded_weights(model, "inp", "conv3", source_channels=[2])


def test_errors_name_the_problem():
    model = _seeded(TinyLinear(), 8)
    with pytest.raises(UnknownLayerError, match="conv2"):
        expanded_weights(model, "inp", "conv_2")
    with pytest.raises(ValueError, match="does not depend on layer 'conv3'"):
        expanded_weights(model, "conv3", "conv1")
    with pytest.raises(ValueError, match="maxpool must be one of"):
        expanded_weights(model, "inp", "conv3", maxpool="max")

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)
            self.gate = nn.Sigmoid()

        def forward(self, x):
            return self.gate(self.conv(x))

    with pytest.raises(ValueError, match=r"cannot pass layer 'gate' \(Sigmoid\)"):
        expanded_weights(Gated(), "conv", "gate")


def test_linearized_is_undone_after_the_block():
    model = _seeded(PoolNet(), 9)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    before = model(x)
    with linearized(model):
        inside = model(x)
        assert torch.relu(torch.tensor([-1.0])).item() == 0.0  # code outside the model's forward is untouched
    torch.testing.assert_close(model(x), before)
    assert not torch.allclose(inside, before)
    assert "forward" not in vars(model.norm)


def test_differentiable_keeps_the_graph_to_the_weights():
    model = _seeded(TinyLinear(), 11)
    assert not expanded_weights(model, "inp", "conv3").requires_grad  # default: plain numbers
    grads = []
    for compose in (None, _reference.compose_kernels):
        model.zero_grad()
        kwargs = {} if compose is None else {"compose": compose}
        (expanded_weights(model, "inp", "conv3", differentiable=True, **kwargs) ** 2).sum().backward()
        grads.append([p.grad.clone() for p in (model.conv1.weight, model.conv2.weight, model.conv3.weight)])
    assert grads[0][0].abs().max() > 0
    for ours, twin in zip(*grads):
        torch.testing.assert_close(ours, twin, rtol=1e-10, atol=1e-12)


class FunctionalNet(nn.Module):
    """Pools, ReLUs and arithmetic written as functions in forward, not modules."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(2, 3, 3)
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.out = nn.Identity()

    def forward(self, x):
        x = torch.relu(self.conv0(x))
        pooled = F.max_pool2d(x, 2) * 2.0
        smooth = F.avg_pool2d(x, 2, stride=2)
        return self.out(F.relu(self.conv1(pooled) - smooth / 4 + 1.0))


def test_functional_layers_and_arithmetic():
    model = _seeded(FunctionalNet(), 12)
    e = expand(model, "conv0", "out")
    assert e.weights.shape == (3, 3, 6, 6) and e.stride == (2, 2) and e.offset == (2, 2)
    want = expanded_weights_by_gradient(model, "conv0", "out", e, range(3), input_size=20)
    torch.testing.assert_close(e.weights, want, rtol=1e-10, atol=1e-12)


class FunctionalReluNet(nn.Module):
    """Every spelling of ReLU in a forward: the recording stands in shapes for them on meta tensors."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 4, 3)
        self.conv1 = nn.Conv2d(4, 5, 3)
        self.conv2 = nn.Conv2d(5, 3, 3)

    def forward(self, x):
        x = F.relu(self.conv0(x))
        y = torch.relu(self.conv1(x))
        y.relu_()
        y = F.relu(y, inplace=True)
        return self.conv2(F.relu(y.relu(), False))


def test_functional_relus_are_recorded_as_identities():
    model = _seeded(FunctionalReluNet(), 6)
    e = expand(model, "conv0", "conv2")
    assert tuple(e.weights.shape) == (3, 4, 5, 5)
    want = expanded_weights_by_gradient(model, "conv0", "conv2", e, [0, 2], input_size=16)
    torch.testing.assert_close(e.weights[[0, 2]], want, rtol=1e-10, atol=1e-12)


def test_half_precision_models_get_float32_weights():
    model = _seeded(TinyLinear(), 11)
    for low in (torch.bfloat16, torch.float16):
        rounded = copy.deepcopy(model).to(low)
        got = expanded_weights(rounded, "inp", "conv3")
        assert got.dtype == torch.float32
        # the same numbers as the rounded weights composed in float64
        want = expanded_weights(copy.deepcopy(rounded).double(), "inp", "conv3")
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        expanded_weights(model, "inp", "conv3", dtype=torch.float16)


def test_source_channel_selections_that_are_empty_or_not_integers_are_named():
    model = _seeded(TinyLinear(), 12)
    with pytest.raises(
        ValueError, match="source_channels is empty: pass at least one channel of layer 'inp' \\(0..1\\)"
    ):
        expanded_weights(model, "inp", "conv3", source_channels=[])
    with pytest.raises(TypeError, match="integer channel indices"):
        expanded_weights(model, "inp", "conv3", source_channels=[0.5])
    with pytest.raises(TypeError, match="integer channel indices"):
        expanded_weights(model, "inp", "conv3", source_channels=[True])
    full = expanded_weights(model, "inp", "conv3")
    torch.testing.assert_close(
        expanded_weights(model, "inp", "conv3", source_channels=torch.tensor([1, 0])), full[:, [1, 0]]
    )
