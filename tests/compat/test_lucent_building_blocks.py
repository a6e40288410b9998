"""The drop-in's objectives, parameterizations, transforms and InceptionV1 give lucent 0.1.8's
values: same inputs and seed -> same numbers (to 1e-5 where float order differs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuits_vision.compat.lucent.modelzoo import util as cv_util
from circuits_vision.compat.lucent.optvis import objectives, param, render, transform

pytestmark = pytest.mark.needs_lucent


def _forward_both(ours, theirs, x):
    """Hook both models (lucent's hook_model and ours), run ``x``; returns the two ``T``s."""
    from lucent.optvis.render import hook_model as lucent_hook_model

    T_ours, T_theirs = render.hook_model(ours, lambda: x), lucent_hook_model(theirs, lambda: x)
    with torch.no_grad():
        for model in (ours, theirs):
            try:
                model(x)
            except (RuntimeError, ValueError):
                pass  # the classifier heads need 224 px; every layer before ran
    return T_ours, T_theirs


def test_inceptionv1_layers_equal_lucents(inception_pair):
    ours, theirs = inception_pair
    from lucent.modelzoo.util import get_model_layers

    assert set(get_model_layers(theirs)) <= set(cv_util.get_model_layers(ours))
    assert ours._get_name() == "InceptionV1" and set(ours.state_dict()) == set(theirs.state_dict())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255 - 117  # lucid's range
    T_ours, T_theirs = _forward_both(ours, theirs, x)
    for name in [
        "conv2d0_pre_relu_conv",
        "conv2d2",
        "maxpool1",
        "mixed3a_1x1_pre_relu_conv",
        "mixed3a",
        "mixed3b_5x5",
        "mixed4a",
        "mixed4b_pool_reduce_pre_relu_conv",
    ]:
        a, b = T_ours(name), T_theirs(name)
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item(), msg=name)


def test_redirected_relu_passes_a_tenth_of_the_gradient_below_zero_like_lucents(inception_pair):
    ours, theirs = inception_pair
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 255 - 117
    grads = []
    for model in (ours, theirs):
        image = x.clone().requires_grad_(True)
        T = render.hook_model(model, lambda image=image: image)
        try:
            model(image)
        except (RuntimeError, ValueError):
            pass
        (-T("mixed3a")[:, 7].mean()).backward()
        grads.append(image.grad)
        T.close()
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4 * grads[1].abs().max().item())
    without = type(ours)(redirected_ReLU=False)
    assert not any(type(m).__name__ == "RedirectedReLU" for m in without.modules())


@pytest.fixture(scope="module")
def features(inception_pair):
    ours, theirs = inception_pair
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 255 - 117
    return _forward_both(ours, theirs, x)


def _objective_cases():
    g = torch.Generator().manual_seed(4)
    d256, d480 = torch.randn(256, generator=g), torch.randn(480, generator=g)
    return [
        ("channel", ("mixed3a", 17), {}),
        ("channel", ("mixed3a", 17), {"batch": 2}),
        ("neuron", ("mixed3b", 3), {}),
        ("neuron", ("mixed3b", 3), {"x": 1, "y": 3, "batch": 1}),
        ("direction", ("mixed3a", d256), {}),
        ("direction_neuron", ("mixed3b", d480), {"x": 2, "y": 3}),
        ("channel_weight", ("mixed3a", d256), {}),
        ("neuron_weight", ("mixed3a", d256), {}),
        ("localgroup_weight", ("mixed3a",), {"x": 1, "y": 2, "wx": 3, "wy": 2}),
        ("localgroup_weight", ("mixed3a", d256), {"x": 0, "y": 0, "wx": 2, "wy": 2}),
        ("diversity", ("mixed3b",), {}),
        ("alignment", ("mixed3a",), {}),
        ("alignment", ("mixed3a", 3), {}),
        ("channel_interpolate", ("mixed3a", 4, "mixed3b", 9), {}),
        ("blur_input_each_step", (), {}),
    ]


@pytest.mark.parametrize("name, args, kwargs", _objective_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_objective_equals_lucents_on_the_same_activations(features, name, args, kwargs):
    from lucent.optvis import objectives as lucent_objectives

    T_ours, T_theirs = features
    ours = getattr(objectives, name)(*args, **kwargs)
    theirs = getattr(lucent_objectives, name)(*args, **kwargs)
    # The same formula: on the very same activations in float64 the two agree to rounding. In float32 each
    # rounds differently, by up to a few 1e-5 of the value for a Gram-matrix objective like diversity.
    same = {}

    def T64(name):
        return same.setdefault(name, T_theirs(name).double())

    if name != "blur_input_each_step":  # it convolves the input with a float32 kernel of its own
        # 1e-6: float32 constants (directions) enter both in float32
        assert ours(T64).item() == pytest.approx(theirs(T64).item(), rel=1e-6, abs=1e-9)
    assert ours(T_ours).item() == pytest.approx(theirs(T_theirs).item(), rel=1e-4, abs=1e-5)
    assert ours.name == theirs.name


def test_objective_algebra_and_strings_match_lucents(features):
    from lucent.optvis import objectives as lo

    T_ours, T_theirs = features
    pairs = [
        (
            objectives.channel("mixed3a", 1) - 1e2 * objectives.diversity("mixed3a"),
            lo.channel("mixed3a", 1) - 1e2 * lo.diversity("mixed3a"),
        ),
        (
            2 * objectives.neuron("mixed3a", 5) + 3 - objectives.channel("mixed3b", 4, batch=1) / 4,
            2 * lo.neuron("mixed3a", 5) + 3 - lo.channel("mixed3b", 4, batch=1) / 4,
        ),
        (-objectives.channel("mixed3a", 2), -lo.channel("mixed3a", 2)),
        (
            objectives.Objective.sum([objectives.channel("mixed3a", i) for i in range(3)]),
            lo.Objective.sum([lo.channel("mixed3a", i) for i in range(3)]),
        ),
        (objectives.as_objective(" mixed3b : 7 "), lo.as_objective(" mixed3b : 7 ")),
    ]
    for ours, theirs in pairs:
        assert ours(T_ours).item() == pytest.approx(theirs(T_theirs).item(), rel=1e-5)
    f = lambda T: -T("mixed3a").mean()  # noqa: E731
    assert objectives.as_objective(f) is f  # callables pass unchanged, as in lucent
    with pytest.raises(ValueError, match="layer:channel"):
        objectives.as_objective("mixed3a")


def test_wrap_objective_and_handle_batch_as_in_lucents_notebook(features):
    """The notebook's custom objective, written once and run against both libraries."""
    from lucent.optvis import objectives as lo

    def define(library):
        @library.wrap_objective()
        def dot_compare(layer, batch=1, cossim_pow=0):
            def inner(T):
                dot = (T(layer)[batch] * T(layer)[0]).sum()
                mag = torch.sqrt(torch.sum(T(layer)[0] ** 2))
                cossim = dot / (1e-6 + mag)
                return -dot * cossim**cossim_pow

            return inner

        @library.handle_batch(2)
        def third_image_mean(T):
            return T("mixed3a").mean()

        return dot_compare("mixed3a", cossim_pow=1), third_image_mean

    (ours, ours_batch), (theirs, theirs_batch) = define(objectives), define(lo)
    T_ours, T_theirs = features
    assert ours(T_ours).item() == pytest.approx(theirs(T_theirs).item(), rel=1e-5)
    assert ours.name == theirs.name == "dot_compare"
    assert ours_batch(T_ours).item() == pytest.approx(theirs_batch(T_theirs).item(), rel=1e-5)
    assert ours_batch(T_ours).item() == pytest.approx(T_ours("mixed3a")[2].mean().item(), rel=1e-6)


def _same_seed(f_ours, f_theirs, seed=5):
    torch.manual_seed(seed)
    a = f_ours()
    torch.manual_seed(seed)
    b = f_theirs()
    return a, b


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"fft": False},
        {"decorrelate": False},
        {"batch": 3, "h": 20},
        {"channels": 4},
        {"sd": 0.3, "fft": False},
    ],
)
def test_param_image_equals_lucents_for_the_same_seed(kwargs):
    from lucent.optvis import param as lp

    (p_ours, f_ours), (p_theirs, f_theirs) = _same_seed(
        lambda: param.image(24, **kwargs), lambda: lp.image(24, **kwargs)
    )
    assert [p.shape for p in p_ours] == [p.shape for p in p_theirs]
    assert all(p.requires_grad for p in p_ours)
    a, b = f_ours(), f_theirs()
    assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert 0 < a.min() and a.max() < 1


def test_spatial_and_lowres_params_equal_lucents():
    from lucent.optvis import param as lp

    for ours, theirs in [
        (
            lambda: param.fft_image([2, 3, 17, 15], sd=0.1, decay_power=1.5),
            lambda: lp.fft_image([2, 3, 17, 15], sd=0.1, decay_power=1.5),
        ),
        (lambda: param.pixel_image([1, 3, 9, 9]), lambda: lp.pixel_image([1, 3, 9, 9])),
        (
            lambda: param.lowres_tensor([1, 3, 16, 16], [1, 3, 4, 4]),
            lambda: lp.lowres_tensor([1, 3, 16, 16], [1, 3, 4, 4]),
        ),
        (
            lambda: param.lowres_tensor([2, 3, 12, 12], [1, 1, 4, 4], offset=True),
            lambda: lp.lowres_tensor([2, 3, 12, 12], [1, 1, 4, 4], offset=True),
        ),
        (lambda: param.lowres_tensor([4, 6, 8], [2, 3, 8]), lambda: lp.lowres_tensor([4, 6, 8], [2, 3, 8])),
    ]:
        (_, a), (_, b) = _same_seed(ours, theirs)
        torch.testing.assert_close(a(), b(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(param.rfft2d_freqs(7, 9), lp.rfft2d_freqs(7, 9))
    np.testing.assert_allclose(param.color_correlation_normalized, lp.color_correlation_normalized, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{}, {"num_layers": 3, "num_hidden_channels": 5}, {"normalize": True, "num_layers": 4}]
)
def test_cppn_equals_lucents_for_the_same_seed(kwargs):
    from lucent.optvis import param as lp

    (p_ours, f_ours), (p_theirs, f_theirs) = _same_seed(lambda: param.cppn(16, **kwargs), lambda: lp.cppn(16, **kwargs))
    p_ours, p_theirs = list(p_ours), list(p_theirs)
    assert [p.shape for p in p_ours] == [p.shape for p in p_theirs]
    for a, b in zip(p_ours, p_theirs):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # the last layer starts at zero (grey); perturb it to compare real images
        for a, b in zip(p_ours[-2:], p_theirs[-2:]):
            a.normal_(generator=torch.Generator().manual_seed(6))
            b.copy_(a)
    torch.testing.assert_close(f_ours(), f_theirs(), rtol=1e-5, atol=1e-6)


def test_transforms_equal_lucents_where_they_draw_nothing():
    from lucent.optvis import transform as lt

    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(7))
    for ours, theirs in [
        (transform.pad(3), lt.pad(3)),
        (transform.pad(2, mode="constant", constant_value=0.3), lt.pad(2, mode="constant", constant_value=0.3)),
        (transform.random_scale([0.8]), lt.random_scale([0.8])),
        (transform.random_scale([1.15]), lt.random_scale([1.15])),
        (transform.normalize(), lt.normalize()),
        (transform.preprocess_inceptionv1(), lt.preprocess_inceptionv1()),
        (
            transform.compose([transform.pad(2), transform.random_scale([0.9])]),
            lt.compose([lt.pad(2), lt.random_scale([0.9])]),
        ),
    ]:
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_jitter_and_rotate_behave_like_lucents():
    from lucent.optvis import transform as lt

    x = torch.rand(1, 3, 21, 21, generator=torch.Generator().manual_seed(8))
    shifted = transform.jitter(4)(x)
    moves = [
        (dy, dx)
        for dy in range(4)
        for dx in range(4)
        if torch.equal(shifted[..., dy:, dx:], x[..., : 21 - dy, : 21 - dx])
        and shifted[..., :dy, :].abs().sum() == 0
        and shifted[..., :, :dx].abs().sum() == 0
    ]
    assert len(moves) == 1  # the content moved right/down by 0..3 pixels with zero fill
    with pytest.raises(ValueError, match="more than 1"):
        transform.jitter(1)
    rotated, expected = transform.random_rotate([7])(x), lt.random_rotate([7])(x)
    # kornia resamples with align_corners=True, we with False: they agree away from the border
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (rotated[inner] - expected[inner]).abs().mean() < 0.02
    assert (rotated[inner] - x[inner]).abs().mean() > 0.1  # it did rotate
    assert len(transform.standard_transforms) == len(lt.standard_transforms) == 5
