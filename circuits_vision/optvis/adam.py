"""Adam, the default optimizer of ``render`` (lucid's and lucent's choice, lr 0.05).

The same update as ``torch.optim.Adam`` with default options (its single-tensor code path), in a
small class: constructing any ``torch.optim.Optimizer`` imports ``torch._dynamo`` on first use,
which costs seconds per process, more than a whole small render. Pass
``optimizer=lambda params: torch.optim.Adam(params, lr=...)`` for torch's own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["Adam"]


class Adam:
    """``torch.optim.Adam(params, lr, betas, eps)`` without weight decay or amsgrad."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = [p for p in params]
        if not all(isinstance(p, torch.Tensor) and p.requires_grad for p in self.params):
            raise ValueError("Adam needs tensors with requires_grad=True")
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.param_groups = [{"params": self.params, "lr": self.lr, "betas": betas, "eps": self.eps}]
        self._step = 0
        self._exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        beta1, beta2 = self.betas
        self._step += 1
        bias_correction1 = 1 - beta1**self._step
        bias_correction2_sqrt = math.sqrt(1 - beta2**self._step)
        step_size = self.lr / bias_correction1
        for p, exp_avg, exp_avg_sq in zip(self.params, self._exp_avg, self._exp_avg_sq):
            if p.grad is None:
                continue
            grad = p.grad
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss
