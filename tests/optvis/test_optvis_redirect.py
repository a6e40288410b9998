"""ReLU gradient redirection (lucid's and lucent's), and the default Adam."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from circuits_vision.optvis.adam import Adam
from circuits_vision.optvis.redirect import LUCID_REDIRECT_STEPS, redirected_relus


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
