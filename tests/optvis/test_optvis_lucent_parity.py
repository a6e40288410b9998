"""Side by side with lucent 0.1.8: same model, image and objective -> same values; preset="lucent"
renders reach the same activations as lucent's render_vis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from circuits_vision import hooks
from circuits_vision.optvis import objectives, render

pytestmark = pytest.mark.needs_lucent


def test_objective_values_equal_lucents_on_inceptionv1():
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1 as LucentInceptionV1
    from lucent.optvis import objectives as lucent_objectives
    from lucent.optvis.render import hook_model

    from circuits_vision.models import inceptionv1

    ours = inceptionv1(lrn="lucent", generator=torch.Generator().manual_seed(0))
    theirs = LucentInceptionV1().eval()
    theirs.load_state_dict(ours.state_dict())
    image = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        acts = hooks.run_with_cache(ours, image, ["conv2d2", "mixed3a"])
        lucent_T = hook_model(theirs, lambda: image)
        try:
            theirs(image * 255 - 117)  # lucent's model takes lucid's [-117, 138] range
        except RuntimeError:
            pass  # its classifier head needs 224 px; the hooked layers ran before that
    direction = torch.randn(256, generator=torch.Generator().manual_seed(2))
    cases = [
        ("channel", ("mixed3a", 17)),
        ("neuron", ("mixed3a", 3)),
        ("channel", ("conv2d2", 40)),
        ("direction", ("mixed3a", direction)),
        ("diversity", ("mixed3a",)),
    ]
    for name, args in cases:
        value = getattr(objectives, name)(*args)(acts.__getitem__).item()
        expected = getattr(lucent_objectives, name)(*args)(lucent_T).item()
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), name


def _activation(model, image, layer, channel):
    """Mean activation of the untransformed image at lucent's 224-px model input."""
    x = F.interpolate(image, size=224, mode="bilinear", align_corners=True)
    with torch.no_grad():
        return hooks.run_with_cache(model, x, [layer])[layer][:, channel].mean().item()


def test_lucent_preset_reaches_lucents_activations(tiny_net):
    """20 steps at 32 px on a small conv net: measured ours/lucent = 0.98-0.99 (per channel within 3 %)."""
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    channels, steps = [1, 3, 4], 20
    theirs, start = [], []
    for channel in channels:
        np.random.seed(channel)  # lucent draws its transforms from numpy's and torch's global generators
        torch.manual_seed(channel)
        images = lucent_render.render_vis(
            tiny_net,
            f"relu2:{channel}",
            param_f=lambda: lucent_param.image(32),
            thresholds=(steps,),
            preprocess=False,
            progress=False,
            show_image=False,
        )
        theirs.append(_activation(tiny_net, torch.from_numpy(images[-1]).permute(0, 3, 1, 2), "relu2", channel))
        torch.manual_seed(channel)
        start.append(_activation(tiny_net, lucent_param.image(32)[1]().detach(), "relu2", channel))
    # lucent's render has no ReLU redirection for a model without its RedirectedReLU layers
    result = render(
        tiny_net,
        [f"relu2:{c}" for c in channels],
        preset="lucent",
        steps=steps,
        size=32,
        progress=False,
        redirect_relu=None,
    )
    ours = [_activation(tiny_net, result.images[i : i + 1], "relu2", c) for i, c in enumerate(channels)]
    assert all(t > 3 * s for t, s in zip(theirs, start))  # the optimisation did something
    assert np.mean(ours) == pytest.approx(np.mean(theirs), rel=0.1)
    assert ours == pytest.approx(theirs, rel=0.2)


@pytest.mark.slow
def test_lucent_preset_reaches_lucents_activations_on_inceptionv1():
    """lucent's InceptionV1 (built-in RedirectedReLU) vs ours with lrn="lucent" and preset="lucent"
    (redirection by hooks): measured ours/lucent = 1.002 over mixed3a channels 3, 10, 20, 40 (20 steps, 64 px)."""
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1 as LucentInceptionV1
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    from circuits_vision.models import inceptionv1

    ours_model = inceptionv1(lrn="lucent", generator=torch.Generator().manual_seed(0))
    lucent_model = LucentInceptionV1().eval()
    lucent_model.load_state_dict(ours_model.state_dict())
    channels, steps = [20, 40], 20
    theirs = []
    for channel in channels:
        np.random.seed(channel)
        torch.manual_seed(channel)
        images = lucent_render.render_vis(
            lucent_model,
            f"mixed3a:{channel}",
            param_f=lambda: lucent_param.image(64),
            thresholds=(steps,),
            progress=False,
            show_image=False,
        )
        theirs.append(_activation(ours_model, torch.from_numpy(images[-1]).permute(0, 3, 1, 2), "mixed3a", channel))
    result = render(
        ours_model, [f"mixed3a:{c}" for c in channels], preset="lucent", steps=steps, size=64, progress=False
    )
    ours = [_activation(ours_model, result.images[i : i + 1], "mixed3a", c) for i, c in enumerate(channels)]
    assert np.mean(ours) == pytest.approx(np.mean(theirs), rel=0.1)
    assert ours == pytest.approx(theirs, rel=0.2)
