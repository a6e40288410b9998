"""ReLU gradient redirection (lucid's and lucent's), and the default Adam."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from circuits_vision.optvis.adam import Adam
from circuits_vision.optvis.redirect import LUCENT_NEGATIVE_SLOPE, LUCID_REDIRECT_STEPS, NoReLUWarning, redirected_relus


class _OneReLU(nn.Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.relu = nn.ReLU(inplace=inplace)

    def forward(self, x):
        return self.relu(x * 1.0)


def _input_grad(model, x, grad):
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.backward(grad)
    return out.detach(), x.grad


X = torch.tensor([[[[-1.0, 2.0], [-3.0, 0.5]]], [[[-1.0, -2.0], [-3.0, -0.5]]]])  # image 1: all negative
GRAD = torch.tensor([[[[-1.0, 1.0], [2.0, -2.0]]], [[[-1.0, 1.0], [2.0, -2.0]]]])


def test_lucent_mode_leaks_a_tenth_below_zero():
    model = _OneReLU()
    with redirected_relus(model, "lucent"):
        out, grad = _input_grad(model, X, GRAD)
    assert torch.equal(out, X.relu())
    assert torch.allclose(grad, torch.where(X < 0, 0.1 * GRAD, GRAD))


def test_lucid_mode_redirects_only_images_without_true_gradient():
    model = _OneReLU()
    with redirected_relus(model, "lucid"):
        out, grad = _input_grad(model, X, GRAD)
    assert torch.equal(out, X.relu())
    # image 0 has a true gradient somewhere: the plain ReLU gradient
    assert torch.equal(grad[0], torch.where(X[0] < 0, 0.0, GRAD[0]))
    # image 1 is all off: gradient passes where it raises the input (grad < 0 for a minimised loss)
    assert torch.equal(grad[1], torch.where(GRAD[1] > 0, 0.0, GRAD[1]))


def test_lucid_mode_ends_after_16_steps_and_everything_is_restored():
    model = _OneReLU(inplace=True)
    with redirected_relus(model, "lucid") as state:
        assert not model.relu.inplace and state.active
        state.step(LUCID_REDIRECT_STEPS)
        assert state.active
        state.step(LUCID_REDIRECT_STEPS + 1)
        assert not state.active
        _, grad = _input_grad(model, X, GRAD)
        assert grad[1].abs().sum() == 0  # the true gradient again
    assert model.relu.inplace and not model.relu._forward_hooks


def test_no_redirection_and_bad_mode():
    model = _OneReLU()
    with redirected_relus(model, None) as state:
        assert state is None
    with pytest.raises(ValueError, match="'lucid', 'lucent' or None"):
        with redirected_relus(model, "tf"):
            pass


def test_adam_equals_torch_adam():
    generator = torch.Generator().manual_seed(0)
    ours = torch.randn(4, 5, generator=generator).requires_grad_()
    theirs = ours.detach().clone().requires_grad_()
    optimizers = [(ours, Adam([ours], lr=0.05)), (theirs, torch.optim.Adam([theirs], lr=0.05, foreach=False))]
    for _ in range(10):
        for p, optimizer in optimizers:
            optimizer.zero_grad()
            ((p**3).sum() + p.sin().sum()).backward()
            optimizer.step()
    assert torch.equal(ours, theirs)


class _ToyReLUNet(nn.Module):
    """``relu(conv(x))``, bias -1.6: every unit starts off, so only redirection can move it."""

    def __init__(self, spelling: str):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.spelling = spelling
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.fill_(0.1)  # a grey image gives 1.35 - 1.6 < 0; a bright one turns it on
            self.conv.bias.fill_(-1.6)

    def forward(self, x):
        x = self.conv(x)
        if self.spelling == "module":
            return self.relu(x)
        if self.spelling == "F.relu":
            return torch.nn.functional.relu(x)
        if self.spelling == "torch.relu":
            return torch.relu(x)
        if self.spelling == "method":
            return x.relu()
        if self.spelling == "inplace":
            return torch.nn.functional.relu(x, inplace=True)
        if self.spelling == "relu_":
            x.relu_()
            return x
        raise AssertionError(self.spelling)


SPELLINGS = ["module", "F.relu", "torch.relu", "method", "inplace", "relu_"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_relu_spelling_is_redirected(spelling):
    model = _ToyReLUNet(spelling)
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1)) * 0.1
    grad = torch.full((2, 4, 4, 4), -1.0)  # a minimised loss that wants every unit up
    with redirected_relus(model, "lucent") as state:
        out, leaky = _input_grad(model, x, grad)
        assert state.relu_calls == 1
    assert torch.equal(out, torch.relu(model.conv(x)).detach())
    with torch.no_grad():
        negative = model.conv(x) < 0
    assert bool(negative.all())  # every unit is off ...
    conv_only = nn.Sequential(model.conv)
    _, through_conv = _input_grad(conv_only, x, grad * LUCENT_NEGATIVE_SLOPE)
    assert torch.allclose(leaky, through_conv)  # ... and the gradient leaks at a tenth
    assert leaky.abs().sum() > 0
    _, true_grad = _input_grad(model, x, grad)
    assert true_grad.abs().sum() == 0  # outside the block the true (zero) gradient is back


@pytest.mark.parametrize("spelling", SPELLINGS[1:])
def test_functional_relu_moves_like_nn_relu_in_a_lucid_render(spelling):
    from circuits_vision.optvis import render

    def run(spelling):
        model = nn.Sequential(OrderedDict(net=_ToyReLUNet(spelling)))
        return render(model, "net:0", steps=32, size=16, progress=False, batch_size=1).history[:, 0]

    reference, history = run("module"), run(spelling)
    assert reference[0] == 0 and reference[-1] < -0.01  # off at the start: only redirection moves it
    assert torch.allclose(history, reference, atol=1e-6)


def test_a_model_without_relu_warns_that_redirection_does_nothing():
    from circuits_vision.optvis import render

    no_relu = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 2, 3), act=nn.Tanh()))
    with pytest.warns(NoReLUWarning, match="computed no ReLU"):
        render(no_relu, "act:0", steps=2, size=8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoReLUWarning)
        render(no_relu, "act:0", steps=2, size=8, progress=False, redirect_relu=None)
        render(nn.Sequential(OrderedDict(net=_ToyReLUNet("F.relu"))), "net:0", steps=2, size=8, progress=False)


def test_torchvision_googlenet_functional_relus_are_redirected():
    torchvision = pytest.importorskip("torchvision")
    from circuits_vision import hooks

    torch.manual_seed(0)  # torchvision initialises from the global generator
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())  # F.relu only

    def input_grad():
        x = torch.full((1, 3, 64, 64), 0.5, requires_grad=True)
        acts = hooks.run_with_cache(model, x, ["inception4a"])["inception4a"]
        (-acts[:, 10].mean()).backward()
        return x.grad

    true_grad = input_grad()
    with redirected_relus(model, "lucent") as state:
        leaky = input_grad()
    assert state.relu_calls > 20
    assert leaky.abs().sum() > 0
    assert not torch.allclose(leaky, true_grad)
    # the forward stopped early at inception4a, and the redirection still ended with the block
    assert torch.equal(input_grad(), true_grad)
