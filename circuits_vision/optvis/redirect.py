"""ReLU gradient redirection: let gradient reach inputs through ReLUs that are off.

At the start of feature visualization many units are below zero, their ReLU gradient is zero and
the objective cannot move them. Two published remedies, installed on every ``nn.ReLU`` module of
any model by forward hooks (the ReLU's output is replaced by the same values computed by a
custom autograd function) and removed afterwards:

- ``"lucid"`` (``lucid.misc.redirected_relu_grad``): per image, if the true ReLU gradient is
  all zero, pass the incoming gradient through wherever it would *raise* a negative input, and
  only during the first 16 optimisation steps; afterwards the true gradient is used;
- ``"lucent"`` (lucent's ``RedirectedReLU``): at every step, gradient below zero is passed on
  scaled by 0.1 (a leaky gradient).

Sign convention: ``grad`` is d(loss)/d(output) of the loss being *minimised*, so ``grad < 0``
pushes the input up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["redirected_relus", "RedirectState", "LUCID_REDIRECT_STEPS", "LUCENT_NEGATIVE_SLOPE"]

# lucid switches back to the true gradient once its global step is greater than 16.
LUCID_REDIRECT_STEPS = 16
LUCENT_NEGATIVE_SLOPE = 0.1


class _RedirectedReLU(torch.autograd.Function):
    """``relu(x)`` forward; subclasses say which gradient the backward passes on."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.relu(x)


class _LucidRedirectedReLU(_RedirectedReLU):
    """lucid: per image with no true gradient, pass on the gradient that would raise a negative input."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        negative = x < 0
        relu_grad = torch.where(negative, 0.0, grad)
        has_true_gradient = relu_grad.ne(0).flatten(1).any(1)
        if bool(has_true_gradient.all()):
            return relu_grad
        # zero only where the input is negative and the gradient would push it further down
        redirected = torch.where(negative & (grad > 0), 0.0, grad)
        return torch.where(has_true_gradient.view(-1, *[1] * (grad.dim() - 1)), relu_grad, redirected)


class _LucentRedirectedReLU(_RedirectedReLU):
    """lucent: a leaky gradient, scaled by LUCENT_NEGATIVE_SLOPE below zero."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.where(x < 0, grad * LUCENT_NEGATIVE_SLOPE, grad)


_FUNCTIONS = {"lucid": _LucidRedirectedReLU, "lucent": _LucentRedirectedReLU}


class RedirectState:
    """Installed redirection; :meth:`step` tells it which optimisation step comes next."""

    def __init__(self, model: nn.Module, mode: str):
        if mode not in _FUNCTIONS:
            raise ValueError(f"relu redirection must be 'lucid', 'lucent' or None, got {mode!r}")
        self.mode = mode
        self.function = _FUNCTIONS[mode]
        self.relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        self._handles: list = []
        self._inplace = [m.inplace for m in self.relus]

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def _hook(self, module, inputs, output):
        return self.function.apply(inputs[0])

    def install(self) -> None:
        if self.active:
            return
        for relu in self.relus:
            # an in-place ReLU would overwrite the input our backward needs
            relu.inplace = False
            self._handles.append(relu.register_forward_hook(self._hook))

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def remove(self) -> None:
        self._remove_hooks()
        for relu, inplace in zip(self.relus, self._inplace):
            relu.inplace = inplace

    def step(self, step: int) -> None:
        """Before optimisation step ``step`` (0-based): lucid's redirection ends after step 16."""
        if self.mode == "lucid" and step > LUCID_REDIRECT_STEPS:
            self._remove_hooks()


@contextlib.contextmanager
def redirected_relus(model: nn.Module, mode: str | None) -> Iterator[RedirectState | None]:
    """Redirect the gradients of every ``nn.ReLU`` in ``model`` inside the block (``mode=None``: off)."""
    if mode is None:
        yield None
        return
    state = RedirectState(model, mode)
    state.install()
    try:
        yield state
    finally:
        state.remove()
