"""branches / branch_of: channel ranges of concatenated layers, discovered by value."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
from torch import nn

from circuits_vision.hooks import Branch, NotABranchLayerError, branch_of, branches
from circuits_vision.models.layers import Concat

MIXED_LAYERS = ["mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed5a", "mixed5b"]


def published_branch_ranges() -> dict[str, dict[str, list[int]]]:
    facts = resources.files("circuits_vision") / "data" / "inceptionv1_circuits_facts.json"
    return json.loads(facts.read_text())["branch_ranges"]


def test_inceptionv1_mixed3b_branches(inception_v1):
    assert branches(inception_v1, "mixed3b", input_size=64) == [
        Branch("1x1", 0, 128, "mixed3b_1x1"),
        Branch("3x3", 128, 320, "mixed3b_3x3"),
        Branch("5x5", 320, 416, "mixed3b_5x5"),
        Branch("pool", 416, 480, "mixed3b_pool_reduce"),
    ]


def test_inceptionv1_branches_match_the_published_ranges(inception_v1):
    published = published_branch_ranges()
    assert sorted(published) == sorted(MIXED_LAYERS)
    for layer in MIXED_LAYERS:
        found = {b.name: [b.start, b.stop] for b in branches(inception_v1, layer, input_size=32)}
        assert found == published[layer], layer


def test_inceptionv1_pre_relu_concat_names_the_branch_convs(inception_v1):
    found = branches(inception_v1, "mixed4a_pre_relu", input_size=64)
    assert [(b.name, b.start, b.stop, b.module) for b in found] == [
        ("1x1", 0, 192, "mixed4a_1x1_pre_relu_conv"),
        ("3x3", 192, 396, "mixed4a_3x3_pre_relu_conv"),
        ("5x5", 396, 444, "mixed4a_5x5_pre_relu_conv"),
        ("pool", 444, 508, "mixed4a_pool_reduce_pre_relu_conv"),
    ]


def test_branch_of_inceptionv1_channels(inception_v1):
    # branch_of probes at the model's own input size (224): one forward up to mixed3b, then cached.
    assert branch_of(inception_v1, "mixed3b", 379) == Branch("5x5", 320, 416, "mixed3b_5x5")
    assert branch_of(inception_v1, "mixed3b", 0).name == "1x1"
    assert branch_of(inception_v1, "mixed3b", 319).name == "3x3"
    assert branch_of(inception_v1, "mixed3b", 479).name == "pool"
    with pytest.raises(IndexError, match=r"layer 'mixed3b' has 480 channels \(0..479\), got 480"):
        branch_of(inception_v1, "mixed3b", 480)


def test_torchvision_googlenet_branches_are_its_children(googlenet):
    assert branches(googlenet, "inception3a", input_size=64) == [
        Branch("branch1", 0, 64, "inception3a.branch1"),
        Branch("branch2", 64, 192, "inception3a.branch2"),
        Branch("branch3", 192, 224, "inception3a.branch3"),
        Branch("branch4", 224, 256, "inception3a.branch4"),
    ]
    found = branches(googlenet, "inception4e", input_size=64)
    assert [(b.name, b.start, b.stop) for b in found] == [
        ("branch1", 0, 256),
        ("branch2", 256, 576),
        ("branch3", 576, 704),
        ("branch4", 704, 832),
    ]


def test_non_concatenations_raise_with_the_branch_map_fix(googlenet, resnet50, alexnet):
    for model, layer in [(googlenet, "inception3a.branch2"), (resnet50, "layer1.0"), (alexnet, "features.3")]:
        with pytest.raises(NotABranchLayerError) as info:
            branches(model, layer, input_size=64)
        message = str(info.value)
        assert f"layer {layer!r}" in message and "not a concatenation" in message
        assert "branch map {branch_name: (start, stop)}" in message and "branch_map=" in message


class Grouped(nn.Module):
    """An AlexNet-style grouped convolution: two groups of 48 channels, one layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 3)
        self.conv2 = nn.Conv2d(96, 96, 3, groups=2)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def test_grouped_convolution_is_not_a_concatenation():
    model = Grouped()
    with pytest.raises(NotABranchLayerError) as info:
        branches(model, "conv2", input_size=16)
    message = str(info.value)
    assert "groups=2" in message
    assert "branch_map={'group0': (0, 48), 'group1': (48, 96)}" in message
    assert isinstance(info.value, ValueError)


def test_explicit_branch_map_is_checked_against_the_layer_width():
    model = Grouped()
    mapping = {"right": (48, 96), "left": (0, 48)}
    found = branches(model, "conv2", branch_map=mapping, input_size=16)
    assert found == [Branch("left", 0, 48, ""), Branch("right", 48, 96, "")]
    assert branch_of(model, "conv2", 50, branch_map=mapping).name == "right"
    with pytest.raises(ValueError, match=r"'wide'.*\(40, 100\).*96 channels"):
        branches(model, "conv2", branch_map={"wide": (40, 100)}, input_size=16)
    with pytest.raises(ValueError, match=r"'a'.*give a \(start, stop\) pair of ints, got \(0, 10, 20\)"):
        branches(model, "conv2", branch_map={"a": (0, 10, 20)}, input_size=16)
    with pytest.raises(ValueError, match="overlap"):
        branches(model, "conv2", branch_map={"a": (0, 50), "b": (40, 96)}, input_size=16)
    partial = {"left": (0, 48)}
    with pytest.raises(ValueError, match=r"channel 60 of layer 'conv2' is in no branch of the map \(left \[0, 48\)\)"):
        branch_of(model, "conv2", 60, branch_map=partial, input_size=16)
    with pytest.raises(IndexError, match=r"layer 'conv2' has 96 channels \(0..95\), got 96"):
        branch_of(model, "conv2", 96, branch_map=partial, input_size=16)


class CatOfChildren(nn.Module):
    """A block whose forward returns torch.cat of its sub-modules' outputs, one of them nested."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.wide = nn.Sequential(nn.Conv2d(6, 8, 1), nn.ReLU(inplace=True))
        self.narrow = nn.Conv2d(6, 3, 3, padding=1)
        self.split_a = nn.Conv2d(6, 2, 1)
        self.split_b = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        made_by_a_function = 2 * x[:, :2]
        return torch.cat(
            [self.narrow(x), made_by_a_function, self.wide(x), torch.cat([self.split_a(x), self.split_b(x)], 1)], 1
        )


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = CatOfChildren()
        self.head = nn.Conv2d(17, 4, 1)
        self.a = nn.Conv2d(4, 5, 1)
        self.b = nn.Conv2d(4, 7, 1)
        self.join = Concat()

    def forward(self, x):
        h = self.head(self.block(x))
        return self.join(self.a(h), torch.tanh(self.b(h)), h)


def test_user_net_cat_of_submodules_and_concat_inputs():
    model = UserNet().eval()
    # The slice computed by a function call matches no sub-module: it is reported, not hidden.
    assert branches(model, "block", input_size=8) == [
        Branch("narrow", 0, 3, "block.narrow"),
        Branch("unmatched1", 3, 5, ""),
        Branch("wide", 5, 13, "block.wide"),
        Branch("split_a", 13, 15, "block.split_a"),
        Branch("split_b", 15, 17, "block.split_b"),
    ]
    # tanh is a function call, not a module: that input gets a positional name and no module.
    assert branches(model, "join", input_size=8) == [
        Branch("a", 0, 5, "a"),
        Branch("input1", 5, 12, ""),
        Branch("head", 12, 16, "head"),
    ]
    assert branch_of(model, "join", 11) == Branch("input1", 5, 12, "")


def test_tiny_net_concat(tiny_net):
    assert branches(tiny_net, "join", input_size=8) == [Branch("left", 0, 4, "left"), Branch("right", 4, 10, "right")]
    assert list(branches(tiny_net, "join", input_size=8)[1].channels) == [4, 5, 6, 7, 8, 9]
    assert 3 in branches(tiny_net, "join", input_size=8)[0] and 4 not in branches(tiny_net, "join", input_size=8)[0]


def test_branch_discovery_keeps_training_mode_and_batchnorm_stats(googlenet):
    model = googlenet.train()
    try:
        stats = model.inception3a.branch1.bn.running_mean.clone()
        assert [b.width for b in branches(model, "inception3b", input_size=64)] == [128, 192, 96, 64]
        assert model.training and model.inception3a.branch1.bn.training
        assert torch.equal(model.inception3a.branch1.bn.running_mean, stats)
    finally:
        model.eval()


class FlatNames(nn.Module):
    """lucid-style flat names whose first differing words collide: ``block_conv_a``, ``block_conv_b``."""

    def __init__(self):
        super().__init__()
        self.block_conv_a = nn.Conv2d(3, 2, 1)
        self.block_conv_b = nn.Conv2d(3, 5, 1)
        self.block = Concat()

    def forward(self, x):
        return self.block(self.block_conv_a(x), self.block_conv_b(x))


def test_flat_labels_fall_back_to_the_words_after_the_layer_name():
    assert branches(FlatNames(), "block", input_size=4) == [
        Branch("conv_a", 0, 2, "block_conv_a"),
        Branch("conv_b", 2, 7, "block_conv_b"),
    ]


def test_branch_of_accepts_numpy_integers_and_refuses_floats(tiny_net):
    assert branch_of(tiny_net, "join", np.int64(4), input_size=8).name == "right"
    with pytest.raises(TypeError, match="must be an int"):
        branch_of(tiny_net, "join", 4.0, input_size=8)
