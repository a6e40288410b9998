"""InceptionV1: lucid/lucent layer names and keys, widths, TF LRN, parity with lucent's port."""

from __future__ import annotations

import contextlib

import pytest
import torch

from circuits_vision.models import facts
from circuits_vision.models.inceptionv1 import InceptionV1, captum_to_lucent_names, inceptionv1
from circuits_vision.models.layers import Concat, LocalResponseNormLucent, LocalResponseNormTF

MIXED = ["mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e", "mixed5a", "mixed5b"]
BRANCHES = ["1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce"]


def he_state_dict(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights that keep activations O(1..100) through all layers (unlike torch's default init,
    under which deep activations shrink towards 0 and any comparison would pass trivially)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        std = (2.0 / value[0].numel()) ** 0.5 if key.endswith("weight") else 0.1
        state[key] = torch.empty(value.shape).normal_(0.0, std, generator=generator)
    return state


@contextlib.contextmanager
def record_outputs(model: torch.nn.Module, names):
    outputs, handles = {}, []
    try:
        for name in names:

            def keep(module, inputs, output, name=name):
                outputs[name] = output.detach()

            handles.append(model.get_submodule(name).register_forward_hook(keep))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def all_layer_names(model):
    return [name for name, _ in model.named_modules() if name]


@pytest.fixture(scope="module")
def image_224():
    return torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tf_model_and_outputs(image_224):
    model = InceptionV1(lrn="tf")
    model.load_state_dict(he_state_dict(model, seed=0))
    with torch.no_grad(), record_outputs(model, all_layer_names(model)) as outputs:
        probabilities = model(image_224)
    return model, outputs, probabilities


def test_layer_names_follow_lucid_in_forward_order():
    names = all_layer_names(InceptionV1())
    expected_order = [
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
        *[f"mixed3a_{b}_pre_relu_conv" for b in ("1x1", "3x3_bottleneck", "3x3")],
        "mixed3a_pool",
        "mixed3a_pre_relu",
        "mixed3a",
        "mixed3b",
        "maxpool4",
        "mixed4a",
        "mixed4e",
        "maxpool10",
        "mixed5a",
        "mixed5b",
        "avgpool0",
        "softmax2_pre_activation_matmul",
        "softmax2",
    ]
    positions = [names.index(name) for name in expected_order]
    assert positions == sorted(positions)
    for block in MIXED:
        for branch in BRANCHES:
            assert f"{block}_{branch}_pre_relu_conv" in names and f"{block}_{branch}" in names
    model = InceptionV1()
    assert isinstance(model.mixed3a, Concat) and isinstance(model.mixed3a_pre_relu, Concat)
    assert model.mixed3a.inputs == ("mixed3a_1x1", "mixed3a_3x3", "mixed3a_5x5", "mixed3a_pool_reduce")
    assert isinstance(model.localresponsenorm0, LocalResponseNormTF)
    assert isinstance(InceptionV1(lrn="lucent").localresponsenorm1, LocalResponseNormLucent)
    assert isinstance(model.mixed4a_pool, torch.nn.MaxPool2d) and isinstance(model.conv2d2, torch.nn.ReLU)
    assert model.input_size == 224


def test_widths_and_branch_ranges_match_the_published_facts(tf_model_and_outputs):
    model, outputs, probabilities = tf_model_and_outputs
    for layer, width in facts.layer_widths().items():
        assert outputs[layer].shape[1] == width, layer
    for block in MIXED:
        published = facts.branch_ranges(block)
        ours = model.branch_ranges(block)
        assert {("pool" if k == "pool_reduce" else k): v for k, v in ours.items()} == published
        assert torch.equal(outputs[f"{block}_pre_relu"].clamp(min=0), outputs[block])
    assert probabilities.shape == (1, 1008)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(1))
    assert outputs["mixed5b"].shape[-2:] == (7, 7) and outputs["mixed3b"].shape[-2:] == (28, 28)


def test_model_owns_its_preprocessing():
    model = InceptionV1()
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(model.preprocess(x), x * 255 - 117)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        model(torch.rand(3, 64, 64))


def test_head_needs_224_px_and_says_so():
    with pytest.raises(ValueError, match="224-px"), torch.no_grad():
        InceptionV1()(torch.rand(1, 3, 32, 32))


def test_random_init_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = inceptionv1(generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    b = inceptionv1(generator=torch.Generator().manual_seed(5))
    c = inceptionv1(generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.mixed3b_5x5_pre_relu_conv.weight, b.mixed3b_5x5_pre_relu_conv.weight)
    assert not torch.equal(a.mixed3b_5x5_pre_relu_conv.weight, c.mixed3b_5x5_pre_relu_conv.weight)
    bound = (16 * 5 * 5) ** -0.5  # torch's default init range for mixed3a_5x5 (fan_in 16*5*5)
    weight = a.mixed3a_5x5_pre_relu_conv.weight
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert not a.training
    with pytest.raises(ValueError, match="'tf'"):
        inceptionv1(lrn="caffe")


def test_weights_from_a_path_and_in_captum_names(tmp_path):
    source = InceptionV1(generator=torch.Generator().manual_seed(3))
    torch.save(source.state_dict(), tmp_path / "lucent.pth")
    loaded = inceptionv1(tmp_path / "lucent.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    reverse_stem = {"conv2d0": "conv1", "conv2d1": "conv2", "conv2d2": "conv3"}
    reverse_branch = {
        "1x1": "conv_1x1",
        "3x3_bottleneck": "conv_3x3_reduce",
        "3x3": "conv_3x3",
        "5x5_bottleneck": "conv_5x5_reduce",
        "5x5": "conv_5x5",
        "pool_reduce": "pool_proj",
    }
    captum = {}
    for key, value in source.state_dict().items():
        module, param = key.rsplit(".", 1)
        module = module.removesuffix("_pre_relu_conv")
        if module in reverse_stem:
            captum[f"{reverse_stem[module]}.{param}"] = value
        elif module == "softmax2_pre_activation_matmul":
            captum[f"fc.{param}"] = value
        else:
            block, branch = module.split("_", 1)
            captum[f"{block}.{reverse_branch[branch]}.{param}"] = value
    assert "mixed4a.conv_3x3_reduce.weight" in captum and len(captum) == len(source.state_dict())
    assert captum_to_lucent_names(captum).keys() == source.state_dict().keys()
    torch.save(captum, tmp_path / "captum.pth")
    loaded = inceptionv1(str(tmp_path / "captum.pth"), lrn="lucent")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# ----------------------------------------------------------------------------------- parity with lucent
@pytest.fixture(scope="module")
def lucent_and_ours(image_224):
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1 as LucentInceptionV1

    ours = InceptionV1(lrn="lucent")
    state = he_state_dict(ours, seed=0)  # the same weights as tf_model_and_outputs
    ours.load_state_dict(state)
    lucent = LucentInceptionV1(redirected_ReLU=False).eval()
    lucent.load_state_dict(state)
    lucent_names = all_layer_names(lucent)
    with torch.no_grad(), record_outputs(lucent, lucent_names) as theirs:
        lucent(image_224 * 255 - 117)  # lucent takes lucid's input range
    with torch.no_grad(), record_outputs(ours, all_layer_names(ours)) as mine:
        ours(image_224)
    return lucent, theirs, mine


@pytest.mark.needs_lucent
def test_state_dict_keys_equal_lucents(lucent_and_ours):
    theirs = lucent_and_ours[0].state_dict()
    ours = InceptionV1().state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)


@pytest.mark.needs_lucent
def test_activations_equal_lucents_at_every_shared_layer(lucent_and_ours):
    lucent, theirs, mine = lucent_and_ours
    lucent_names = all_layer_names(lucent)
    assert len(lucent_names) == 138 and set(lucent_names) <= set(mine)
    for name in lucent_names:
        reference = theirs[name]
        assert mine[name].shape == reference.shape, name
        # float32 with different LRN arithmetic: the largest difference is below 1e-5 of the layer's
        # largest magnitude (measured: at most 1.3e-6, in mixed5a_5x5_bottleneck_pre_relu_conv).
        relative_error = ((mine[name] - reference).abs().max() / reference.abs().max()).item()
        assert relative_error < 1e-5, (name, relative_error)
    assert theirs["mixed5b"].abs().max() > 1.0  # the comparison is not between vanishing activations


@pytest.mark.needs_lucent
def test_tf_lrn_equals_lucent_before_the_first_lrn_and_differs_after(lucent_and_ours, tf_model_and_outputs):
    _, theirs, mine_lucent = lucent_and_ours
    _, mine_tf, _ = tf_model_and_outputs
    for name in ("conv2d0_pre_relu_conv", "conv2d0", "maxpool0"):
        torch.testing.assert_close(mine_tf[name], theirs[name], rtol=0, atol=0)
    # localresponsenorm0 is functional in lucent: compare with our lucent-LRN model's module instead.
    for other, name in ((mine_lucent, "localresponsenorm0"), (theirs, "conv2d1_pre_relu_conv"), (theirs, "mixed3b")):
        difference = (mine_tf[name] - other[name]).abs().max() / other[name].abs().max()
        assert difference > 0.05, name


@pytest.mark.needs_weights
def test_real_weights_load_strictly_and_classify():
    from circuits_vision.models.loading import inceptionv1_weights_from_env

    model = inceptionv1(inceptionv1_weights_from_env())  # strict: raises on any missing/extra/misshaped key
    random = inceptionv1()
    assert not torch.equal(model.mixed3b_5x5_pre_relu_conv.weight, random.mixed3b_5x5_pre_relu_conv.weight)
    with torch.no_grad():
        probabilities = model(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    assert probabilities.shape == (2, 1008) and torch.isfinite(probabilities).all()
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2))
