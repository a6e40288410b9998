"""The configurable InceptionV1-style builder (InceptionSpec -> InceptionNet)."""

from __future__ import annotations

import pytest
import torch
from support import devices

from circuits_vision.models.inception import (
    BlockSpec,
    ConvSpec,
    InceptionNet,
    InceptionSpec,
    LRNSpec,
    MaxPoolSpec,
    Preprocess,
)


def small_spec(**changes) -> InceptionSpec:
    fields = dict(
        stem=[
            ConvSpec("conv2d0", 8, 7, stride=2),
            MaxPoolSpec("maxpool0"),
            LRNSpec("localresponsenorm0"),
            ConvSpec("conv2d1", 8, 1),
            ConvSpec("conv2d2", 12, 3),
            MaxPoolSpec("maxpool1"),
        ],
        blocks=[
            BlockSpec("mixed3a", 4, 4, 6, 2, 3, 3),
            BlockSpec("mixed3b", 5, 4, 7, 2, 4, 2),
            BlockSpec("mixed4a", 3, 2, 4, 2, 2, 2),
        ],
        pools_after={"mixed3b": "maxpool4"},
        num_classes=10,
        preprocess=Preprocess(scale=2.0, offset=-1.0),
        input_size=64,
    )
    fields.update(changes)
    return InceptionSpec(**fields)


def test_small_spec_builds_named_layers_and_runs():
    model = InceptionNet(small_spec())
    names = [name for name, _ in model.named_modules() if name]
    for name in (
        "conv2d0_pre_relu_conv",
        "localresponsenorm0",
        "mixed3a_5x5_bottleneck_pre_relu_conv",
        "mixed3b_pool",
        "mixed3b_pre_relu",
        "maxpool4",
        "mixed4a",
        "avgpool0",
        "softmax2_pre_activation_matmul",
        "softmax2",
    ):
        assert name in names
    assert names.index("mixed3b") < names.index("maxpool4") < names.index("mixed4a_1x1_pre_relu_conv")
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 10)
    torch.testing.assert_close(out.sum(1), torch.ones(2))
    assert model.branch_ranges("mixed3b") == {"1x1": (0, 5), "3x3": (5, 12), "5x5": (12, 16), "pool_reduce": (16, 18)}


def test_block_output_is_the_branch_relus_in_order():
    model = InceptionNet(small_spec(num_classes=None))
    seen = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
        for name in ("mixed3a_1x1", "mixed3a_3x3", "mixed3a_5x5", "mixed3a_pool_reduce", "mixed3a")
    ]
    try:
        out = model(torch.rand(1, 3, 32, 32))
    finally:
        for hook in hooks:
            hook.remove()
    branches = ("mixed3a_1x1", "mixed3a_3x3", "mixed3a_5x5", "mixed3a_pool_reduce")
    expected = torch.cat([seen[name] for name in branches], 1)
    assert torch.equal(seen["mixed3a"], expected)
    # mixed4a: 1x1 3 + 3x3 4 + 5x5 2 + pool 2 channels, at 32 px / 16 (conv2d0, maxpool0, maxpool1, maxpool4).
    assert out.shape == (1, 11, 2, 2)


def test_tf_same_shapes_at_odd_sizes():
    model = InceptionNet(small_spec(num_classes=None))
    sizes = {}
    hooks = [
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[-2:])))
        for n in ("conv2d0", "maxpool0", "maxpool1", "maxpool4")
    ]
    try:
        model(torch.rand(1, 3, 75, 75))
    finally:
        for hook in hooks:
            hook.remove()
    # TensorFlow "SAME": every stride-2 layer gives ceil(size / 2).
    assert sizes == {"conv2d0": (38, 38), "maxpool0": (19, 19), "maxpool1": (10, 10), "maxpool4": (5, 5)}


def test_preprocess_per_channel_and_global_pool_head():
    spec = small_spec(preprocess=Preprocess.imagenet(), softmax_name=None)
    model = InceptionNet(spec)
    x = torch.rand(1, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.preprocess(x), (x - mean) / std)
    assert "_preprocess_scale" not in model.state_dict()  # not a weight
    assert model(torch.rand(1, 3, 48, 48)).shape == (1, 10)  # global average: any size works
    assert not hasattr(model, "softmax2")


def test_replaced_modules_take_effect():
    model = InceptionNet(small_spec(num_classes=None))
    x = torch.rand(1, 3, 32, 32)
    assert model(x).shape == (1, 11, 2, 2)

    class FirstOnly(torch.nn.Module):
        def forward(self, *tensors):
            return tensors[0]

    model.mixed4a = FirstOnly()  # modules are looked up by name at forward time
    assert model(x).shape == (1, 3, 2, 2)  # only mixed4a_1x1's 3 channels


def test_bad_specs_are_rejected_clearly():
    with pytest.raises(ValueError, match="more than once: \\['mixed3a'\\]"):
        InceptionNet(small_spec(blocks=[BlockSpec("mixed3a", 1, 1, 1, 1, 1, 1)] * 2))
    with pytest.raises(ValueError, match="pools_after names blocks that are not in the spec: \\['mixed9z'\\]"):
        InceptionNet(small_spec(pools_after={"mixed9z": "maxpool9"}))
    with pytest.raises(ValueError, match="unknown LRN kind 'caffe'"):
        InceptionNet(small_spec(stem=[LRNSpec("localresponsenorm0", "caffe")]))
    with pytest.raises(ValueError, match="needs 3 values"):
        InceptionNet(small_spec(preprocess=Preprocess(scale=(1.0, 2.0))))


@pytest.mark.parametrize("device", devices())
def test_runs_on_the_inputs_device(device):
    model = InceptionNet(small_spec(preprocess=Preprocess.imagenet()))
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        actual = model.to(device)(x.to(device))
    assert actual.device.type == device
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-4, atol=1e-5)
