"""Finding the convolution whose weights connect two layers directly, by probing one forward pass."""

from __future__ import annotations

import torch
from torch import nn

from circuits_vision.hooks import hooked, layer_names, probe_input, resolve_layer


def direct_conv(model: nn.Module, source: str, target: str, *, seed: int = 0) -> tuple[str, dict[int, int]]:
    """The ``nn.Conv2d`` that reads layer ``source`` as it is (up to padding) and writes ``target``'s channels.

    Returns ``(conv module name, {target channel: conv output channel})``, found on one noise image
    (``torch.Generator(seed)``): the conv's input must contain the source activation (a padded copy),
    and each mapped target channel must equal the conv's output channel, or its ReLU.

    Raises:
        ValueError: no such convolution (e.g. a 1x1 bottleneck sits between the layers); the message
            names the convolutions that read ``source`` so an earlier/later pair can be chosen.
    """
    source_name, _ = resolve_layer(model, source)
    target_name, _ = resolve_layer(model, target)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    captured: dict[str, torch.Tensor] = {}

    def keep_io(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0].detach(), output.detach())
        return hook

    def keep(name):
        def hook(module, inputs, output):
            captured[name] = output.detach()
        return hook

    hooks = {name: keep_io(name) for name in convs}
    hooks[source_name] = keep(source_name)
    hooks[target_name] = keep(target_name)
    size = getattr(model, "input_size", 224)
    x = probe_input(model, size, torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), hooked(model, hooks):
            model(x)
    finally:
        model.train(was_training)
    src, tgt = captured[source_name], captured[target_name]
    readers = [name for name, (inp, _) in seen.items() if _contains(inp, src)]
    for name in readers:
        mapping = _channel_map(seen[name][1], tgt)
        if mapping:
            return name, mapping
    hint = f"convolutions reading {source!r} directly: {readers}" if readers else f"no convolution reads {source!r} directly"
    raise ValueError(
        f"no single convolution connects layer {source!r} to layer {target!r} ({hint}); editing needs the weights of "
        f"one conv from the source's channels to the target's channels. Pick adjacent layers, e.g. one of "
        f"{[n for n in layer_names(model) if n in readers][:5] or 'the conv after the source'}"
    )


def _contains(padded: torch.Tensor, source: torch.Tensor) -> bool:
    """``padded [1, C, H', W']`` holds ``source [1, C, H, W]`` at some offset (explicit padding before the conv)."""
    if padded.shape[:2] != source.shape[:2] or padded.shape[2] < source.shape[2] or padded.shape[3] < source.shape[3]:
        return False
    h, w = source.shape[2:]
    for top in range(padded.shape[2] - h + 1):
        for left in range(padded.shape[3] - w + 1):
            if torch.equal(padded[:, :, top : top + h, left : left + w], source):
                return True
    return False


def _channel_map(conv_out: torch.Tensor, target: torch.Tensor) -> dict[int, int]:
    """``{target channel: conv channel}`` where the target equals the conv output or its ReLU."""
    if conv_out.shape[2:] != target.shape[2:]:
        return {}
    mapping = {}
    for t in range(target.shape[1]):
        want = target[0, t]
        for c in range(conv_out.shape[1]):
            out = conv_out[0, c]
            if float(out.max()) <= 0:
                continue
            if torch.allclose(out, want, rtol=1e-5, atol=1e-6) or torch.allclose(out.clamp_min(0), want, rtol=1e-5, atol=1e-6):
                mapping[t] = c
                break
    return mapping
