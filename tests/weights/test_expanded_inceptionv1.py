"""Expanded weights of InceptionV1 (random weights) equal gradients in the linearised model."""

from __future__ import annotations

import copy

import pytest
import torch

from circuits_vision.models import inceptionv1
from circuits_vision.ops import _reference
from circuits_vision.weights import expand, expanded_weights
from circuits_vision.weights.gradient import expanded_weights_by_gradient

# A few source channels keep each expansion cheap (its cost scales with them); the gradient is
# compared on all source channels restricted to these.
SOURCE_CHANNELS = [0, 37, 101]


@pytest.fixture(scope="module")
def model():
    return inceptionv1(generator=torch.Generator().manual_seed(0)).double()


@pytest.mark.parametrize(
    "source,target,shape,stride",
    [
        ("conv2d2", "mixed3a", (256, 11, 11), (2, 2)),  # max pool 3x3/2 then the 5x5 branch: 2*4 + 3
        ("mixed3a", "mixed3b", (480, 5, 5), (1, 1)),
        ("conv2d2", "mixed3b", (480, 19, 19), (2, 2)),
        ("mixed3b", "mixed4a", (508, 11, 11), (2, 2)),  # across the stride-2 max pool maxpool4
    ],
)
def test_equals_gradient_of_centre_unit(model, source, target, shape, stride):
    e = expand(model, source, target, source_channels=SOURCE_CHANNELS)
    assert (e.weights.shape[0], *e.weights.shape[2:]) == shape and e.weights.shape[1] == len(SOURCE_CHANNELS)
    assert e.stride == stride
    channels = [0, shape[0] // 2, shape[0] - 1]  # first/middle/last: the 1x1 branch, a middle one, pool_reduce
    grads = expanded_weights_by_gradient(model, source, target, e, channels, input_size=128)
    want = grads[:, SOURCE_CHANNELS]
    assert want.abs().max() > 1e-4  # the comparison is not between zeros
    torch.testing.assert_close(e.weights[channels], want, rtol=1e-9, atol=1e-12)


def test_op_and_twin_agree_in_float32(model):
    model32 = copy.deepcopy(model).float()
    ours = expanded_weights(model32, "mixed3a", "mixed3b", source_channels=SOURCE_CHANNELS)
    twin = expanded_weights(
        model32, "mixed3a", "mixed3b", source_channels=SOURCE_CHANNELS, compose=_reference.compose_kernels
    )
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, twin, rtol=1e-5, atol=1e-7)
    exact = expanded_weights(model32, "mixed3a", "mixed3b", source_channels=SOURCE_CHANNELS, dtype=torch.float64)
    torch.testing.assert_close(ours.double(), exact, rtol=1e-4, atol=1e-6)


def test_conv2d2_to_mixed4a_shape(model):
    e = expand(model, "conv2d2", "mixed4a", source_channels=[5])
    # maxpool1 3 -> mixed3a 5x5 (+8) -> mixed3b 5x5 (+8) -> maxpool4 (+4) -> mixed4a 5x5 at stride 4 (+16)
    assert tuple(e.weights.shape) == (508, 1, 39, 39)
    assert e.stride == (4, 4)


def test_layer_errors(model):
    with pytest.raises(KeyError, match="mixed3b"):
        expanded_weights(model, "mixed3a", "mixed3bb")
    with pytest.raises(ValueError, match="does not depend on layer 'mixed4a'"):
        expanded_weights(model, "mixed4a", "mixed3b")


def test_last_block_to_logits_through_the_pool_and_flatten(model):
    """avgpool0 (7x7) -> flatten -> the linear layer: one 7x7 kernel per logit, the gradient's."""
    e = expand(model, "mixed5b", "softmax2_pre_activation_matmul", source_channels=[0, 500])
    assert tuple(e.weights.shape) == (1008, 2, 7, 7) and e.offset == (0, 0)
    want = expanded_weights_by_gradient(
        model, "mixed5b", "softmax2_pre_activation_matmul", e, [0, 1007], input_size=224
    )
    assert want.abs().max() > 1e-5
    torch.testing.assert_close(e.weights[[0, 1007]], want[:, [0, 500]], rtol=1e-9, atol=1e-15)
    linear = model.softmax2_pre_activation_matmul.weight.detach()
    torch.testing.assert_close(e.weights[:, :, 3, 3], linear[:, [0, 500]] / 49)


def test_deep_pair_in_float32_matches_float64(model):
    """conv2d2 -> mixed4a crosses both max pools (kept aside as shared taps until the 1x1 reductions)
    and composes by oneDNN convolution in float32; float64 takes the tap-loop path."""
    model32 = copy.deepcopy(model).float()
    ours = expanded_weights(model32, "conv2d2", "mixed4a", source_channels=[5, 77])
    exact = expanded_weights(model, "conv2d2", "mixed4a", source_channels=[5, 77])
    assert ours.dtype == torch.float32 and exact.abs().max() > 1e-6
    torch.testing.assert_close(ours.double(), exact, rtol=1e-4, atol=1e-5 * float(exact.abs().max()))
    twin = expanded_weights(model32, "conv2d2", "mixed4a", source_channels=[5, 77], compose=_reference.compose_kernels)
    torch.testing.assert_close(ours, twin, rtol=1e-4, atol=1e-5 * float(exact.abs().max()))


def test_branches_that_do_not_read_the_source_are_zero(model):
    """From the 3x3 bottleneck of mixed3a, only mixed3a's 3x3 branch (channels 64..191) has weights."""
    e = expand(model, "mixed3a_3x3_bottleneck_pre_relu_conv", "mixed3a")
    assert tuple(e.weights.shape) == (256, 96, 3, 3)
    assert e.weights[:64].abs().max() == 0 and e.weights[192:].abs().max() == 0
    grads = expanded_weights_by_gradient(
        model, "mixed3a_3x3_bottleneck_pre_relu_conv", "mixed3a", e, [70, 150], input_size=64
    )
    torch.testing.assert_close(e.weights[[70, 150]], grads, rtol=1e-9, atol=1e-12)
