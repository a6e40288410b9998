"""Layers: Concat, TensorFlow's and lucent's local response norms, TF "SAME" padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from support import devices

from circuits_vision.models.layers import (
    Concat,
    LocalResponseNormLucent,
    LocalResponseNormTF,
    pad_same,
    same_padding,
)


def tf_lrn_by_loops(x: torch.Tensor, depth_radius: int, bias: float, alpha: float, beta: float) -> torch.Tensor:
    """tf.nn.local_response_normalization written out: sqr_sum[d] = sum(x[d-r : d+r+1] ** 2) over the
    channels that exist, output = x / (bias + alpha * sqr_sum) ** beta."""
    n, channels, height, width = x.shape
    out = torch.empty_like(x)
    for d in range(channels):
        sqr_sum = torch.zeros(n, height, width, dtype=x.dtype)
        for c in range(max(0, d - depth_radius), min(channels, d + depth_radius + 1)):
            sqr_sum += x[:, c] ** 2
        out[:, d] = x[:, d] / (bias + alpha * sqr_sum) ** beta
    return out


def random_activations(shape, scale, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64) * scale


@pytest.mark.parametrize("channels", [1, 4, 13, 64])
def test_tf_lrn_matches_tensorflow_formula(channels):
    # Scale 60 makes alpha * sqr_sum ~ 1..10: the normalisation changes values substantially.
    x = random_activations((2, channels, 3, 5), scale=60.0)
    expected = tf_lrn_by_loops(x, depth_radius=5, bias=2.0, alpha=1e-4, beta=0.5)
    actual = LocalResponseNormTF()(x)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(actual, x / math.sqrt(2.0), rtol=1e-2)  # the squares do matter here


def test_tf_lrn_other_parameters_and_float32():
    x = random_activations((1, 9, 4, 4), scale=3.0, seed=1)
    expected = tf_lrn_by_loops(x, depth_radius=2, bias=1.0, alpha=0.3, beta=0.75)
    actual = LocalResponseNormTF(depth_radius=2, bias=1.0, alpha=0.3, beta=0.75)(x.float())
    torch.testing.assert_close(actual, expected.float(), rtol=1e-5, atol=1e-6)


def test_tf_lrn_edge_channels_see_a_truncated_window():
    # One large channel at the edge: channels within radius 5 of it are damped, channel 6 is not.
    x = torch.full((1, 12, 1, 1), 1e-3, dtype=torch.float64)
    x[0, 0] = 100.0
    y = LocalResponseNormTF()(x)[0, :, 0, 0]
    damped = 1e-3 / math.sqrt(2.0 + 1e-4 * (100.0**2 + 5e-6))
    assert y[5].item() == pytest.approx(damped, rel=1e-6)
    assert y[6].item() == pytest.approx(1e-3 / math.sqrt(2.0 + 1e-4 * 11e-6), rel=1e-9)


def test_lucent_lrn_equals_torch_local_response_norm():
    x = random_activations((2, 20, 3, 3), scale=80.0, seed=2).float()
    expected = F.local_response_norm(x, size=9, alpha=9.99999974738e-05, beta=0.5, k=1)
    torch.testing.assert_close(LocalResponseNormLucent()(x), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(LocalResponseNormTF()(x), expected, rtol=1e-2)


def test_linear_approximations_are_the_small_input_scale():
    x = random_activations((1, 16, 2, 2), scale=1e-4, seed=3)
    assert LocalResponseNormTF().linear_approximation() == pytest.approx(2.0**-0.5)
    assert LocalResponseNormLucent().linear_approximation() == pytest.approx(1.0)
    for lrn in (LocalResponseNormTF(), LocalResponseNormLucent()):
        torch.testing.assert_close(lrn(x), x * lrn.linear_approximation(), rtol=1e-7, atol=0)


def test_lrn_is_differentiable_and_rejects_non_4d():
    x = random_activations((1, 8, 2, 2), scale=30.0, seed=4).requires_grad_()
    assert torch.autograd.gradcheck(LocalResponseNormTF(), (x,))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        LocalResponseNormTF()(torch.zeros(8, 2, 2))
    with pytest.raises(ValueError, match="odd window"):
        LocalResponseNormLucent(size=4)


def test_concat_joins_channels_and_names_its_inputs():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 5, 4, 4)
    concat = Concat(["a", "b"])
    out = concat(a, b)
    assert out.shape == (2, 8, 4, 4)
    assert out[:, :3].sum() == 0 and out[:, 3:].sum() == 2 * 5 * 16
    assert concat.inputs == ("a", "b")


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 7, 2, (2, 3)),
        (112, 3, 2, (0, 1)),
        (75, 3, 2, (1, 1)),
        (150, 7, 2, (2, 3)),
        (28, 3, 1, (1, 1)),
        (28, 5, 1, (2, 2)),
        (28, 1, 1, (0, 0)),
        (7, 7, 1, (3, 3)),
        (1, 3, 2, (1, 1)),
    ],
)
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("size", range(5, 19))
def test_pad_same_gives_ceil_size_over_stride(size):
    x = torch.randn(1, 1, size, size + 1)
    for kernel, stride in ((7, 2), (3, 2), (3, 1), (5, 1)):
        y = F.max_pool2d(pad_same(x, kernel, stride, value=float("-inf")), kernel, stride)
        assert y.shape[-2:] == (math.ceil(size / stride), math.ceil((size + 1) / stride))
        assert torch.isfinite(y).all()  # padding never wins a max


def test_pad_same_returns_input_when_no_padding_needed():
    x = torch.randn(1, 2, 5, 5)
    assert pad_same(x, 1, 1) is x


@pytest.mark.parametrize("device", devices())
def test_lrns_agree_across_devices(device):
    x = random_activations((2, 24, 5, 5), scale=60.0, seed=5)
    expected = tf_lrn_by_loops(x, depth_radius=5, bias=2.0, alpha=1e-4, beta=0.5)
    torch.testing.assert_close(LocalResponseNormTF()(x.to(device)).cpu(), expected, rtol=1e-10, atol=1e-10)
    x32 = x.float().to(device)
    reference = F.local_response_norm(x32, size=9, alpha=9.99999974738e-05, beta=0.5, k=1)
    torch.testing.assert_close(LocalResponseNormLucent()(x32), reference, rtol=1e-5, atol=1e-5)
