"""Expanded weights the slow way: gradients of one target unit in the linearised model.

This is the definition :func:`~circuits_vision.weights.expanded_weights` is held to, and the method
lucid/captum-style code uses (one backward pass per target channel). Kept for checking and for the
side-by-side benchmark; use :func:`~circuits_vision.weights.expanded_weights` for real work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from circuits_vision.hooks import eval_mode, hooked, probe_input, resolve_layer, run_with_cache
from circuits_vision.weights.expanded import Expansion
from circuits_vision.weights.linearize import linearized


def source_gradients(
    model: nn.Module,
    source: str,
    target: str,
    target_channels: Sequence[int],
    *,
    input_size: int | tuple[int, int],
    maxpool: str = "avg",
    seconds: list[float] | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``d target[c, y, x] / d source`` at the target's centre pixel ``(y, x)``, one backward per ``c``
    (``d target[c] / d source`` with ``(y, x) = (0, 0)`` for an ``[N, C]`` target such as a classifier).

    Runs one forward of the linearised model (eval mode) on a zero image of ``input_size``, with the
    source layer's output replaced by a leaf tensor. Returns ``(grads [len(target_channels), C_source,
    H_source, W_source], (y, x))``; the model's dtype and device are used. ``seconds``, when given, gets
    the wall time of the forward and of each backward pass appended (for benchmarks).
    """
    source_name, _ = resolve_layer(model, source)
    target_name, _ = resolve_layer(model, target)
    leaf: dict[str, torch.Tensor] = {}

    def replace_source(module, inputs, output):
        leaf["x"] = output.detach().requires_grad_(True)
        return leaf["x"]

    image = probe_input(model, input_size)
    clock = _Clock(image.device, seconds)
    with (
        torch.enable_grad(),
        eval_mode(model),
        linearized(model, maxpool=maxpool),
        hooked(model, {source_name: replace_source}),
    ):
        out = run_with_cache(model, image, [target_name])[target_name]
        clock.lap()
        if "x" not in leaf:
            raise ValueError(f"layer '{source}' did not run before '{target}', so '{target}' cannot depend on it")
        if out.dim() not in (2, 4):
            raise ValueError(f"layer '{target}' gives a {out.dim()}-d output; gradients need [N, C, H, W] or [N, C]")
        y, x = (out.shape[2] // 2, out.shape[3] // 2) if out.dim() == 4 else (0, 0)
        grads = []
        for index, channel in enumerate(target_channels):
            last = index == len(target_channels) - 1
            unit = out[0, channel, y, x] if out.dim() == 4 else out[0, channel]  # [N, C]: a classifier's logits
            (grad,) = torch.autograd.grad(unit, leaf["x"], retain_graph=not last, allow_unused=True)
            grads.append(torch.zeros_like(leaf["x"][0]) if grad is None else grad[0])
            clock.lap()
    return torch.stack(grads), (y, x)


class _Clock:
    def __init__(self, device: torch.device, laps: list[float] | None) -> None:
        self.device, self.laps, self.start = device, laps, time.perf_counter()

    def lap(self) -> None:
        if self.laps is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.laps.append(now - self.start)
        self.start = now


def expanded_weights_by_gradient(
    model: nn.Module,
    source: str,
    target: str,
    expansion: Expansion,
    target_channels: Sequence[int],
    *,
    input_size: int | tuple[int, int],
    maxpool: str = "avg",
) -> torch.Tensor:
    """The window of :func:`source_gradients` that ``expansion`` places under the target's centre.

    Returns ``[len(target_channels), C_source, kh, kw]``; comparable to ``expansion.weights[target_channels]``.
    Raises ``ValueError`` when the window leaves the source map (use a larger ``input_size``) or when the
    gradient is non-zero outside it (the expansion's placement or size is wrong).
    """
    grads, (y, x) = source_gradients(model, source, target, target_channels, input_size=input_size, maxpool=maxpool)
    rows, cols = expansion.source_window(y, x)
    height, width = grads.shape[2], grads.shape[3]
    if rows.start < 0 or cols.start < 0 or rows.stop > height or cols.stop > width:
        raise ValueError(
            f"the receptive field {rows.start}:{rows.stop} x {cols.start}:{cols.stop} of the centre unit leaves the "
            f"{height}x{width} source map; use a larger input_size than {input_size}"
        )
    window = grads[:, :, rows, cols].clone()
    outside = grads.clone()
    outside[:, :, rows, cols] = 0
    if outside.abs().max() > 1e-6 * max(float(window.abs().max()), 1e-30):
        raise ValueError("the gradient reaches source pixels outside the expansion's window: its placement is wrong")
    return window
