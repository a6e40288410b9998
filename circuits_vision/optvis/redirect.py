"""ReLU gradient redirection: let gradient reach inputs through ReLUs that are off.

At the start of feature visualization many units are below zero, their ReLU gradient is zero and
the objective cannot move them. Two published remedies:

- ``"lucid"`` (``lucid.misc.redirected_relu_grad``): per image, if the true ReLU gradient is
  all zero, pass the incoming gradient through wherever it would *raise* a negative input, and
  only during the first 16 optimisation steps; afterwards the true gradient is used;
- ``"lucent"`` (lucent's ``RedirectedReLU``): at every step, gradient below zero is passed on
  scaled by 0.1 (a leaky gradient).

Every spelling of ReLU is redirected: ``nn.ReLU`` modules, ``F.relu``, ``torch.relu``,
``x.relu()``, and the in-place ``F.relu(..., inplace=True)``, ``torch.relu_`` and ``x.relu_()``.
A ``TorchFunctionMode`` is active while the model runs forward (entered by a forward pre-hook on
the model, left by a forward hook that also runs when the forward stops early) and replaces each
ReLU call by a custom autograd function with the same forward values. Module hooks alone would
miss models that call ``F.relu`` (torchvision's GoogLeNet, ResNet's functional blocks).

Sign convention: ``grad`` is d(loss)/d(output) of the loss being *minimised*, so ``grad < 0``
pushes the input up.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["redirected_relus", "RedirectState", "LUCID_REDIRECT_STEPS", "LUCENT_NEGATIVE_SLOPE", "NoReLUWarning"]

# lucid switches back to the true gradient once its global step is greater than 16.
LUCID_REDIRECT_STEPS = 16
LUCENT_NEGATIVE_SLOPE = 0.1

# ``__name__`` of every torch function that computes a ReLU: F.relu / torch.relu / Tensor.relu
# ("relu") and their in-place forms ("relu_"); nn.ReLU calls F.relu.
_RELU_NAMES = {"relu": False, "relu_": True}


class NoReLUWarning(UserWarning):
    """ReLU gradient redirection was asked for, but the model computed no ReLU."""


class _RedirectedReLU(torch.autograd.Function):
    """``relu(x)`` forward (in place when asked); subclasses say which gradient the backward passes on.

    Only the ``x < 0`` mask is saved, so the in-place form may overwrite ``x``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        negative = x < 0
        ctx.save_for_backward(negative)
        if inplace:
            ctx.mark_dirty(x)
            return x.relu_()
        return torch.relu(x)


class _LucidRedirectedReLU(_RedirectedReLU):
    """lucid: per image with no true gradient, pass on the gradient that would raise a negative input."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (negative,) = ctx.saved_tensors
        relu_grad = torch.where(negative, 0.0, grad)
        if grad.dim() == 0:
            return relu_grad, None
        has_true_gradient = relu_grad.ne(0).flatten(1).any(1)
        if bool(has_true_gradient.all()):
            return relu_grad, None
        # zero only where the input is negative and the gradient would push it further down
        redirected = torch.where(negative & (grad > 0), 0.0, grad)
        return torch.where(has_true_gradient.view(-1, *[1] * (grad.dim() - 1)), relu_grad, redirected), None


class _LucentRedirectedReLU(_RedirectedReLU):
    """lucent: a leaky gradient, scaled by LUCENT_NEGATIVE_SLOPE below zero."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (negative,) = ctx.saved_tensors
        return torch.where(negative, grad * LUCENT_NEGATIVE_SLOPE, grad), None


_FUNCTIONS = {"lucid": _LucidRedirectedReLU, "lucent": _LucentRedirectedReLU}


class _RedirectMode(TorchFunctionMode):
    """Replaces every ReLU call made while it is active by the redirected function."""

    def __init__(self, state: RedirectState):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _RELU_NAMES and args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            inplace = _RELU_NAMES[name] or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            self.state.relu_calls += 1
            if self.state.enabled and torch.is_grad_enabled():
                return self.state.function.apply(args[0], inplace)
        return func(*args, **kwargs)


class RedirectState:
    """Installed redirection; :meth:`step` tells it which optimisation step comes next.

    Attributes:
        relu_calls: ReLU calls seen in the model's forward passes so far (any spelling).
    """

    def __init__(self, model: nn.Module, mode: str):
        if mode not in _FUNCTIONS:
            raise ValueError(f"relu redirection must be 'lucid', 'lucent' or None, got {mode!r}")
        self.model = model
        self.mode = mode
        self.function = _FUNCTIONS[mode]
        self.relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        self.relu_calls = 0
        self.enabled = False
        self._warned = False
        self._handles: list = []
        self._inplace = [m.inplace for m in self.relus]
        self._torch_mode = _RedirectMode(self)
        self._depth = 0

    @property
    def active(self) -> bool:
        return self.enabled

    def _enter(self, module, args) -> None:
        if self._depth == 0:
            self._torch_mode.__enter__()
        self._depth += 1

    def _leave(self, module, args, output) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._torch_mode.__exit__(None, None, None)
            self._warn_if_no_relu()

    def _warn_if_no_relu(self) -> None:
        if self._warned or self.relu_calls or self.relus:
            return
        self._warned = True
        warnings.warn(
            f"ReLU gradient redirection ({self.mode!r}) was asked for, but {type(self.model).__name__} "
            "computed no ReLU in its forward pass (up to the layers the objectives read), so it has no "
            "effect; pass redirect_relu=None to silence this",
            NoReLUWarning,
            stacklevel=2,
        )

    def install(self) -> None:
        if self._handles:
            self.enabled = True
            return
        for relu in self.relus:
            # an in-place ReLU would overwrite a captured activation (the layer before it)
            relu.inplace = False
        self._handles = [
            self.model.register_forward_pre_hook(self._enter),
            self.model.register_forward_hook(self._leave, always_call=True),
        ]
        self.enabled = True

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.enabled = False
        for relu, inplace in zip(self.relus, self._inplace):
            relu.inplace = inplace

    def step(self, step: int) -> None:
        """Before optimisation step ``step`` (0-based): lucid's redirection ends after step 16."""
        if self.mode == "lucid" and step > LUCID_REDIRECT_STEPS:
            self.enabled = False


@contextlib.contextmanager
def redirected_relus(model: nn.Module, mode: str | None) -> Iterator[RedirectState | None]:
    """Redirect the gradients of every ReLU ``model`` computes inside the block (``mode=None``: off).

    Warns (:class:`NoReLUWarning`) after the first forward pass if the model computed no ReLU.
    """
    if mode is None:
        yield None
        return
    state = RedirectState(model, mode)
    state.install()
    try:
        yield state
    finally:
        state.remove()
