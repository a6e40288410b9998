"""Every name models.load accepts builds a model that follows the model contract (models/contract.py).

The toolkit's own models (InceptionV1, shapes, the planted ones) are built on the CPU with their
random (seed 0) weights and run once at their input size. torchvision's ~80 models are built on the
meta device (no memory, no arithmetic), which still runs the ImageNet preprocessing hook and checks
every shape; the RegNets compute their widths from tensor values while being built, which the meta
device cannot do, so they are built on the CPU and run at 64 px; the five largest (54M to 644M
parameters) are skipped as too large for a CPU test machine (their code path is the others').
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import circuits_vision.models as models
from circuits_vision import hooks
from circuits_vision.models import LinearlyApproximable, VisionModel
from circuits_vision.models.torchvision_models import torchvision_model_names

OWN = [name for name in models.available_models() if name not in torchvision_model_names()]
TORCHVISION = torchvision_model_names()


def build(name: str) -> nn.Module:
    return models.load(name, pretrained=False) if name == "shapes" else models.load(name)


def check_contract(model: nn.Module, name: str) -> tuple[int, int]:
    """The attributes of the contract and their values; returns the declared input (channels, size)."""
    assert isinstance(model, VisionModel), f"{name} lacks input_size or input_channels"
    size = hooks.model_input_size(model, default=None)
    assert isinstance(size, int) and size >= 8, f"{name}: input_size {size!r}"
    channels = hooks.model_input_channels(model)
    assert channels == model.input_channels
    return channels, size


def test_own_model_names_are_the_toolkit_models():
    assert {"inceptionv1", "shapes", "planted_curves", "planted_branches"} <= set(OWN)
    assert len(TORCHVISION) > 50


@pytest.mark.parametrize("name", OWN)
def test_own_models_follow_the_contract(name):
    model = build(name)
    channels, size = check_contract(model, name)
    assert channels == 3  # every model the toolkit builds takes RGB images
    x = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), hooks.eval_mode(model):
        y = model(x)
        grey = model(torch.full_like(x, 0.5))
    assert isinstance(y, torch.Tensor) and y.shape[0] == 1 and torch.isfinite(y).all()
    assert not torch.equal(y, grey)  # the output depends on the image
    # Non-linear layers that weight expansion crosses say how (a finite positive scale near 0).
    for module_name, module in model.named_modules():
        if callable(getattr(module, "linear_approximation", None)):
            assert isinstance(module, LinearlyApproximable)
            factor = float(module.linear_approximation())
            assert math.isfinite(factor) and factor > 0, f"{name}.{module_name}: {factor}"


def test_inceptionv1_preprocesses_inside_forward():
    # lucid's InceptionV1 was trained on x * 255 - 117: the model takes [0, 1] and does that itself,
    # so its first conv sees the rescaled image (inside the "SAME" zero padding).
    model = models.load("inceptionv1")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    seen = {}
    with torch.no_grad(), hooks.hooked(model, {"conv2d0_pre_relu_conv": lambda m, i, o: seen.setdefault("in", i[0])}):
        hooks.run_with_cache(model, x, ["conv2d0_pre_relu_conv"])
    padded = seen["in"]
    top, left = (padded.shape[2] - 32) // 2, (padded.shape[3] - 32) // 2
    torch.testing.assert_close(padded[:, :, top : top + 32, left : left + 32], x * 255 - 117)


def test_a_malformed_input_size_is_a_clear_error():
    model = nn.Conv2d(3, 4, 3)
    assert hooks.model_input_size(model) == 224 and hooks.model_input_size(model, default=None) is None
    assert hooks.model_input_channels(model) == 3
    model.input_size = (32, 48)
    assert hooks.model_input_size(model) == (32, 48)
    model.input_size = "64"
    with pytest.raises(TypeError, match=r"Conv2d.input_size must be a positive int or an \(H, W\) pair"):
        hooks.model_input_size(model)


REGNET_LARGE = ("regnet_x_16gf", "regnet_x_32gf", "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf")


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models_follow_the_contract(name):
    if name.startswith("regnet"):
        if name in REGNET_LARGE:
            pytest.skip(f"{name} has 54M-644M parameters: too large to build on a CPU test machine")
        model = models.load(name)
        channels, size = check_contract(model, name)
        with torch.no_grad():
            y = model(torch.rand(1, channels, 64, 64, generator=torch.Generator().manual_seed(0)))
    else:
        with torch.device("meta"):
            model = models.load(name)
            channels, size = check_contract(model, name)
            y = model(torch.rand(1, channels, size, size))
    assert channels == 3 and size in (224, 299)
    assert tuple(y.shape) == (1, 1000)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\] in \[0, 1\]"):
        model(torch.zeros(1, 1, 8, 8, device=y.device))
