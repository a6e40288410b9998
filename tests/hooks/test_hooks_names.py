"""Layer names, lookup by name or lucent alias, and the unknown-layer error."""

from __future__ import annotations

import pytest
from torch import nn

from circuits_vision.hooks import UnknownLayerError, get_layer, layer_names, resolve_layer, resolve_layers


def test_inceptionv1_names_are_flat_lucid_names_in_definition_order(inception_v1):
    names = layer_names(inception_v1)
    assert names[:10] == [
        "conv2d0_pre_relu_conv",
        "conv2d0",
        "maxpool0",
        "localresponsenorm0",
        "conv2d1_pre_relu_conv",
        "conv2d1",
        "conv2d2_pre_relu_conv",
        "conv2d2",
        "localresponsenorm1",
        "maxpool1",
    ]
    assert names[-3:] == ["avgpool0", "softmax2_pre_activation_matmul", "softmax2"]
    for name in ("mixed3a", "mixed3a_pre_relu", "mixed3a_3x3_pre_relu_conv", "mixed4a_pool_reduce", "maxpool10"):
        assert name in names
    assert names.index("mixed3a") < names.index("mixed3b") < names.index("maxpool4") < names.index("mixed4a")
    assert not any("." in name for name in names)
    assert get_layer(inception_v1, "mixed3b_5x5_pre_relu_conv").out_channels == 96


def test_torchvision_names_are_dotted_paths(googlenet, resnet50):
    names = layer_names(googlenet)
    assert names[:4] == ["conv1", "conv1.conv", "conv1.bn", "maxpool1"]
    assert "inception3a.branch2.1" in names and "inception5b.branch4.1.conv" in names
    assert get_layer(googlenet, "inception3a.branch2.1.conv").out_channels == 128
    assert get_layer(resnet50, "layer1.0.conv1") is resnet50.layer1[0].conv1
    assert len(layer_names(resnet50)) == len(list(resnet50.modules())) - 1


def test_lucent_underscore_alias_resolves_to_the_dotted_layer(googlenet, resnet50):
    assert get_layer(resnet50, "layer1_0_conv1") is resnet50.layer1[0].conv1
    assert get_layer(resnet50, "layer4_0_downsample_0") is resnet50.layer4[0].downsample[0]
    assert get_layer(googlenet, "inception3a_branch2_1_conv") is googlenet.inception3a.branch2[1].conv


class _Clash(nn.Module):
    """``a.b_c`` and ``a_b.c`` share the alias ``a_b_c``; ``x_y`` and ``x.y`` share ``x_y``."""

    def __init__(self):
        super().__init__()
        self.a = nn.Module()
        self.a.b_c = nn.Conv2d(1, 1, 1)
        self.a_b = nn.Module()
        self.a_b.c = nn.Conv2d(1, 2, 1)
        self.x_y = nn.Conv2d(1, 3, 1)
        self.x = nn.Module()
        self.x.y = nn.Conv2d(1, 4, 1)


def test_alias_that_fits_two_layers_is_refused_and_exact_names_win():
    model = _Clash()
    with pytest.raises(UnknownLayerError) as info:
        get_layer(model, "a_b_c")
    assert "a.b_c" in str(info.value) and "a_b.c" in str(info.value)
    assert sorted(info.value.suggestions) == ["a.b_c", "a_b.c"]
    assert get_layer(model, "a.b_c").out_channels == 1
    assert get_layer(model, "a_b.c").out_channels == 2
    assert get_layer(model, "x_y").out_channels == 3  # the exact name, not the alias of x.y
    assert get_layer(model, "x.y").out_channels == 4


def test_unknown_layer_lists_the_closest_names(inception_v1):
    with pytest.raises(UnknownLayerError) as info:
        get_layer(inception_v1, "mixed3z")
    error = info.value
    assert isinstance(error, KeyError) and isinstance(error, ValueError)
    assert set(error.suggestions[:2]) == {"mixed3a", "mixed3b"}
    assert len(error.suggestions) == 5
    message = str(error)
    assert message.startswith("unknown layer 'mixed3z' in InceptionV1; closest: ")
    assert "mixed3a" in message and "mixed3b" in message
    assert f"lists all {len(layer_names(inception_v1))}" in message


def test_unknown_alias_suggests_dotted_names(resnet50):
    with pytest.raises(KeyError) as info:
        get_layer(resnet50, "layer1_0_conv9")
    assert info.value.suggestions[0] in {"layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"}
    assert "layer1.0.conv1" in str(info.value)


def test_non_string_name_is_a_type_error(tiny_net):
    with pytest.raises(TypeError, match="layer names are strings"):
        get_layer(tiny_net, 3)


def test_shared_module_is_listed_once_but_reachable_by_both_paths():
    model = nn.Module()
    model.first = nn.ReLU()
    model.second = model.first
    assert layer_names(model) == ["first"]
    assert get_layer(model, "second") is model.first


def test_resolve_layers_gives_canonical_names_for_aliases(resnet50):
    resolved = resolve_layers(resnet50, ["layer1_0_conv1", "fc", "layer2.1"])
    assert {name: canonical for name, (canonical, _) in resolved.items()} == {
        "layer1_0_conv1": "layer1.0.conv1",
        "fc": "fc",
        "layer2.1": "layer2.1",
    }
    assert resolved["layer2.1"][1] is resnet50.layer2[1]
    assert resolve_layer(resnet50, "layer4_0_downsample_1") == (
        "layer4.0.downsample.1",
        resnet50.layer4[0].downsample[1],
    )
    with pytest.raises(UnknownLayerError, match="'layer9'"):
        resolve_layers(resnet50, ["fc", "layer9"])
