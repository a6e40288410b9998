"""lucent's documented usage (README and notebook cells) runs unchanged against the drop-in, and
gives lucent's results: equal images where lucent is deterministic, comparable objectives where
its transforms are random."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from circuits_vision.compat.lucent.optvis import objectives, param, render, transform
from circuits_vision.compat.lucent.util import set_seed

pytestmark = pytest.mark.needs_lucent


NORMALIZE = transform.normalize()


def _objective_value(model, objective, images: np.ndarray, preprocess=NORMALIZE) -> float:
    """The objective on ``images`` ``[N, H, W, C]`` as the render's model sees them (no random transforms)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    T = render.hook_model(model, lambda: x)
    with torch.no_grad():
        model(preprocess(F.interpolate(x, size=224, mode="bilinear", align_corners=True)))
        value = objectives.as_objective(objective)(T).item()
    T.close()
    return value


def _both(model, objective, param_ours, param_theirs, seed=0, **kwargs):
    """render_vis of the drop-in and of lucent from the same seed; returns (ours, theirs, path)."""
    from lucent.optvis import render as lucent_render

    common = dict(progress=False, show_image=False)
    set_seed(seed)
    np.random.seed(seed)
    ours = render.render_vis(model, objective, param_ours, **common, **kwargs)
    path = render.last_run()
    set_seed(seed)
    np.random.seed(seed)
    lucent_objective = objective  # strings, lambdas and our Objectives all work in lucent too
    theirs = lucent_render.render_vis(model, lucent_objective, param_theirs, **common, **kwargs)
    return ours, theirs, path


def test_readme_call_returns_lucents_list_of_images(net):
    set_seed(0)
    images = render.render_vis(net, "conv2:3", thresholds=(2,), progress=False, show_image=False)
    assert render.last_run() == "engine"
    assert isinstance(images, list) and len(images) == 1
    assert images[0].shape == (1, 128, 128, 3) and images[0].dtype == np.float32
    assert 0 <= images[0].min() and images[0].max() <= 1


@pytest.mark.parametrize("extra_transform", [None, "user function"])
def test_without_random_transforms_the_images_equal_lucents(net, extra_transform):
    """transforms=[] (the CPPN cell's choice) makes lucent deterministic: both paths must then give
    lucent's images, the engine (fused resample to 224 px, normalisation on the model input) and
    the eager loop a user's own transform function sends the call to."""
    from lucent.optvis import param as lp

    transforms = [] if extra_transform is None else [lambda x: x * 1.0]
    ours, theirs, path = _both(
        net, "conv2:5", lambda: param.image(32), lambda: lp.image(32), transforms=transforms, thresholds=(3, 6)
    )
    assert path == ("engine" if extra_transform is None else "eager")
    assert [a.shape for a in ours] == [b.shape for b in theirs] == [(1, 32, 32, 3)] * 2
    set_seed(0)
    start = render.tensor_to_img_array(param.image(32)[1]())
    for a, b in zip(ours, theirs):
        # Adam's first steps are ~lr * sign(grad): float-order noise in near-zero gradients moves a
        # few pixels by ~1e-3, far below what the optimisation itself moved
        print("max |ours - lucent|", np.abs(a - b).max(), "moved", np.abs(b - start).max())
        assert np.abs(a - b).max() < 0.05 * np.abs(b - start).max()
        assert np.abs(a - b).mean() < 5e-4


def test_inceptionv1_without_random_transforms_equals_lucents(inception_pair):
    """The drop-in's InceptionV1 (lucid's input range, RedirectedReLU) on the engine vs lucent's."""
    from lucent.optvis import param as lp

    ours_model, lucent_model = inception_pair
    from lucent.optvis import render as lucent_render

    set_seed(1)
    ours = render.render_vis(
        ours_model,
        "mixed3a:7",
        lambda: param.image(24),
        transforms=[],
        thresholds=(3,),
        progress=False,
        show_image=False,
    )
    assert render.last_run() == "engine"
    set_seed(1)
    theirs = lucent_render.render_vis(
        lucent_model,
        "mixed3a:7",
        lambda: lp.image(24),
        transforms=[],
        thresholds=(3,),
        progress=False,
        show_image=False,
    )
    set_seed(1)
    start = render.tensor_to_img_array(param.image(24)[1]())
    difference, moved = np.abs(ours[0] - theirs[0]).mean(), np.abs(theirs[0] - start).mean()
    print("mean |ours - lucent|", difference, "moved", moved)
    assert difference < 0.25 * moved  # measured 0.16: float-order noise amplified by Adam (see above)
    values = [
        _objective_value(ours_model, "mixed3a:7", images, transform.preprocess_inceptionv1())
        for images in (start, ours[0], theirs[0])
    ]
    print("objective start, ours, lucent", values)
    assert values[1] - values[0] == pytest.approx(values[2] - values[0], rel=0.05)


@pytest.mark.parametrize("fft", [True, False])
def test_the_images_of_a_batch_share_each_steps_transforms_as_in_lucent(net, fft):
    """lucent draws one transform per step for the whole batch. Two images that start equal, under
    an objective that treats them alike, must stay equal; per-image draws would pull them apart."""

    def param_f():
        params, image_f = param.image(24, batch=2, fft=fft)
        with torch.no_grad():
            params[0][1] = params[0][0]
        return params, image_f

    set_seed(6)
    images = render.render_vis(net, "conv2:4", param_f, thresholds=(6,), progress=False, show_image=False)
    assert render.last_run() == "engine"
    set_seed(6)
    start = render.tensor_to_img_array(param_f()[1]())
    assert np.abs(images[0][0] - start[0]).max() > 1e-2  # they moved ...
    np.testing.assert_allclose(images[0][0], images[0][1], atol=1e-5)  # ... together


def _notebook_cells():
    from lucent.optvis import param as lp

    def dot_compare(library):
        @library.wrap_objective()
        def dot_compare(layer, batch=1, cossim_pow=0):
            def inner(T):
                dot = (T(layer)[batch] * T(layer)[0]).sum()
                mag = torch.sqrt(torch.sum(T(layer)[0] ** 2))
                return -dot * (dot / (1e-6 + mag)) ** cossim_pow

            return inner

        return dot_compare("conv2", cossim_pow=1) - objectives.channel("conv2", 2)

    return {
        "channel": ("conv2:3", lambda: param.image(32), lambda: lp.image(32), {}),
        "neuron": (objectives.neuron("conv2", 4), lambda: param.image(32), lambda: lp.image(32), {}),
        "pixel param_f": (
            "conv2:6",
            lambda: param.image(32, fft=False, decorrelate=False),
            lambda: lp.image(32, fft=False, decorrelate=False),
            {},
        ),
        "diversity": (
            objectives.channel("conv2", 9) - 1e2 * objectives.diversity("conv2"),
            lambda: param.image(32, batch=4),
            lambda: lp.image(32, batch=4),
            {},
        ),
        "batch objectives": (
            objectives.channel("conv2", 1, batch=1) - objectives.channel("conv2", 7, batch=0),
            lambda: param.image(32, batch=2),
            lambda: lp.image(32, batch=2),
            {},
        ),
        "custom objective": (
            dot_compare(objectives),
            lambda: param.image(32, batch=2),
            lambda: lp.image(32, batch=2),
            {},
        ),
        "own transforms": (
            "conv2:8",
            lambda: param.image(32),
            lambda: lp.image(32),
            {
                "transforms": [
                    transform.pad(4),
                    transform.jitter(4),
                    transform.random_scale([n / 100.0 for n in range(80, 120)]),
                    transform.random_rotate(list(range(-10, 10)) + list(range(-5, 5)) + 10 * list(range(-2, 2))),
                    transform.jitter(2),
                ]
            },
        ),
        "cppn": (
            "conv2:10",
            lambda: param.cppn(32),
            lambda: lp.cppn(32),
            {"optimizer": lambda params: torch.optim.Adam(params, 5e-3), "transforms": []},
        ),
    }


@pytest.mark.parametrize("cell", list(_notebook_cells()))
def test_notebook_cells_reach_lucents_objective(net, cell):
    """Each cell with random transforms, from the same seeds: summed over two seeds, our final
    objective (on the final image, without transforms) must improve on the start by at least 60 %
    of what lucent's improves. One seed is too noisy for more: on the neuron cell lucent's own gain
    ranges 0.06-0.26 over seeds 0-9 (mean 0.112; ours 0.106 on the engine, 0.096 in the eager loop)."""
    objective, p_ours, p_theirs, kwargs = _notebook_cells()[cell]
    steps, gains = 8, np.zeros(2)
    for seed in (5, 6):
        set_seed(seed)
        start = _objective_value(net, objective, render.tensor_to_img_array(p_ours()[1]()))
        ours, theirs, path = _both(
            net, objective, p_ours, p_theirs, seed=seed, thresholds=(steps // 2, steps), **kwargs
        )
        assert path == "engine"
        assert [a.shape for a in ours] == [b.shape for b in theirs]
        assert ours[0].dtype == theirs[0].dtype == np.float32
        gains += [
            start - _objective_value(net, objective, ours[-1]),
            start - _objective_value(net, objective, theirs[-1]),
        ]
    print(cell, "ours / lucent gain", gains[0] / gains[1])
    assert gains[1] > 0  # lucent improved it (the comparison means something)
    assert gains[0] >= 0.6 * gains[1], gains


def test_a_closure_optimizer_runs_in_the_eager_loop(net):
    set_seed(4)
    params, image_f = param.image(32)
    start = _objective_value(net, "conv2:2", render.tensor_to_img_array(image_f()))
    set_seed(4)
    images = render.render_vis(
        net,
        "conv2:2",
        lambda: param.image(32),
        optimizer=lambda p: torch.optim.LBFGS(p, lr=0.1, max_iter=2),
        thresholds=(4,),
        progress=False,
        show_image=False,
    )
    assert render.last_run() == "eager"
    assert _objective_value(net, "conv2:2", images[-1]) < start


def test_eager_loop_stops_the_forward_after_the_objectives_layer_unless_it_reads_labels(net):
    calls = []
    handle = net.fc.register_forward_hook(lambda *args: calls.append(1))
    try:
        render.render_vis(
            net,
            "relu1:1",
            lambda: param.image(16),
            transforms=[lambda x: x],
            thresholds=(5,),
            progress=False,
            show_image=False,
        )
        assert render.last_run() == "eager" and len(calls) == 1  # only the first, full pass reached fc
        calls.clear()
        images = render.render_vis(
            net,
            lambda T: -T("labels")[:, 2].mean(),
            lambda: param.image(16),
            transforms=[lambda x: x],
            thresholds=(3,),
            progress=False,
            show_image=False,
        )
        assert len(calls) == 3 and images[0].shape == (1, 16, 16, 3)
    finally:
        handle.remove()


def test_labels_on_the_engine_reads_the_last_layer(net):
    set_seed(5)
    start = net(
        transform.normalize()(F.interpolate(param.image(32)[1](), size=224, mode="bilinear", align_corners=True))
    )[0, 3].item()
    set_seed(5)
    images = render.render_vis(
        net,
        lambda T: -T("labels")[:, 3].mean(),
        lambda: param.image(32),
        thresholds=(10,),
        progress=False,
        show_image=False,
    )
    assert render.last_run() == "engine"
    x = transform.normalize()(
        F.interpolate(torch.from_numpy(images[0]).permute(0, 3, 1, 2), size=224, mode="bilinear", align_corners=True)
    )
    assert net(x)[0, 3].item() > start


def test_verbose_prints_lucents_lines_and_save_image_writes_the_file(net, tmp_path, capsys):
    path = tmp_path / "unit.png"
    render.render_vis(
        net,
        "conv2:1",
        lambda: param.image(16, batch=2),
        thresholds=(2, 4),
        verbose=True,
        progress=False,
        show_image=False,
        save_image=True,
        image_name=str(path),
    )
    out = capsys.readouterr().out
    assert "Initial loss: " in out and "Loss at step 2: " in out and "Loss at step 4: " in out
    from PIL import Image

    assert Image.open(path).size == (32, 16)  # two 16-px images side by side


def test_unknown_layer_names_the_closest_ones(net):
    with pytest.raises((KeyError, ValueError), match="conv2"):
        render.render_vis(net, "conv3:1", lambda: param.image(16), thresholds=(1,), progress=False, show_image=False)
    with pytest.raises(AssertionError, match="conv2"):
        render.render_vis(
            net,
            "conv3:1",
            lambda: param.image(16),
            transforms=[lambda x: x],
            thresholds=(1,),
            progress=False,
            show_image=False,
        )


def test_non_square_images_and_fixed_sizes_keep_lucents_shapes(net):
    images = render.render_vis(
        net,
        "conv2:0",
        lambda: param.image(20, 12),
        thresholds=(1, 2),
        progress=False,
        show_image=False,
        fixed_image_size=40,
    )
    assert render.last_run() == "eager"  # the engine renders square images
    assert [i.shape for i in images] == [(1, 12, 20, 3)] * 2
    images = render.render_vis(
        net,
        "conv2:0",
        lambda: param.image(16, batch=3),
        thresholds=(0, 2, 9),
        progress=False,
        show_image=False,
        fixed_image_size=40,
    )
    assert render.last_run() == "engine" and [i.shape for i in images] == [(3, 16, 16, 3)] * 2
