"""Model state for the length of a render: eval mode, frozen weights, channels-last, precision.

Everything is restored in ``finally``, so a render leaves the model exactly as it found it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from circuits_vision import hooks

__all__ = ["prepared_model", "precision", "forward_autocast", "PRECISIONS"]


@contextlib.contextmanager
def prepared_model(model: nn.Module, channels_last: bool) -> Iterator[nn.Module]:
    """Eval mode, ``requires_grad=False`` on every parameter, no in-place ReLUs, optionally
    channels-last 4-D weights; all restored afterwards.

    Frozen weights mean backward computes only input gradients (about half the work of a full
    backward); in-place ReLUs are switched off because gradient redirection and activation capture
    need the tensors they would overwrite.
    """
    grads = [(p, p.requires_grad) for p in model.parameters()]
    relus = [(m, m.inplace) for m in model.modules() if isinstance(m, nn.ReLU)]
    relaid = []
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(hooks.eval_mode(model))
        for p, _ in grads:
            p.requires_grad_(False)
        for relu, _ in relus:
            relu.inplace = False
        if channels_last:
            for p in model.parameters():
                if p.dim() == 4 and p.is_contiguous():
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
                    relaid.append(p)
        yield model
    finally:
        for p in relaid:
            p.data = p.data.contiguous()
        for relu, inplace in relus:
            relu.inplace = inplace
        for p, requires_grad in grads:
            p.requires_grad_(requires_grad)
        stack.close()  # every module's own training mode back


PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def precision(device: torch.device, mode: str) -> Iterator[None]:
    """Around a whole optimisation: ``"tf32"`` (and ``"bf16"``) allow TF32 matmuls/convolutions on
    CUDA, flags restored afterwards; nothing on the CPU or for ``"fp32"``."""
    if mode not in PRECISIONS:
        raise ValueError(f"autocast must be None, False, True, 'tf32' or 'bf16', got {mode!r}")
    if mode == "fp32" or device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def forward_autocast(device: torch.device, mode: str) -> contextlib.AbstractContextManager:
    """Around the model forward: bfloat16 autocast for ``"bf16"``, else nothing."""
    if mode == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
