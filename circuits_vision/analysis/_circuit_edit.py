"""Which convolution writes each channel of a layer, and which of them read another layer as it is.

Editing a circuit between two layers (zeroing weights) needs, per target channel, the convolution
whose weights connect the source's channels to it. Two forward passes on one noise image find them:

1. the inputs of every ``nn.Conv2d`` and the source's output: a conv *reads* the source when its
   input is the source's output (a padded copy is fine);
2. every conv's output replaced by its own random positive "signature": a target channel equal to
   one signature channel is that conv's output passed through layers that copy values (ReLU of a
   positive number, concatenation, identity). Its value does not matter, so a unit that is silent on
   the noise image is found like any other; a normalisation or pooling in between breaks the match,
   as it should (the conv's weights then do not act on the target directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from circuits_vision.hooks import eval_mode, hooked, layer_names, model_input_size, probe_input, resolve_layer


@dataclass
class ConvLinks:
    """``readers``: convs reading ``source`` as it is, in forward order; ``writer``: ``{target channel:
    (conv name, conv output channel)}`` for every target channel some conv writes (through ReLU or
    concatenation only); ``conv_inputs``: each writer conv's input ``[1, C, H, W]`` (to name what it reads)."""

    source: str
    target: str
    readers: list[str]
    writer: dict[int, tuple[str, int]]
    conv_inputs: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def direct(self, channels: list[int]) -> dict[int, tuple[str, int]]:
        """The channels among ``channels`` written by a conv that reads the source."""
        return {c: self.writer[c] for c in channels if c in self.writer and self.writer[c][0] in self.readers}


def conv_links(model: nn.Module, source: str, target: str, *, seed: int = 0) -> ConvLinks:
    """The convolutions between layers ``source`` and ``target`` of ``model`` (see the module docstring)."""
    source_name, _ = resolve_layer(model, source)
    target_name, _ = resolve_layer(model, target)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    size = model_input_size(model)
    x = probe_input(model, size, torch.Generator().manual_seed(seed))

    inputs: dict[str, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}

    def keep_input(name):
        def hook(module, args, output):
            inputs[name] = args[0].detach()

        return hook

    def keep(name):
        def hook(module, args, output):
            captured[name] = output.detach()

        return hook

    hooks = {name: keep_input(name) for name in convs}
    hooks[source_name] = keep(source_name)  # a conv can be the source; its output hook then replaces this
    with torch.no_grad(), eval_mode(model), hooked(model, hooks):
        model(x)
    if source_name in convs:  # the source is itself a conv: capture its output in a pass of its own
        with torch.no_grad(), eval_mode(model), hooked(model, {source_name: keep(source_name)}):
            model(x)
    source_out = captured[source_name]
    readers = [name for name in convs if name in inputs and _contains(inputs[name], source_out)]

    generator = torch.Generator().manual_seed(seed + 1)
    signatures: dict[str, torch.Tensor] = {}

    def sign(name):
        def hook(module, args, output):
            signature = 1.0 + torch.rand(output.shape, generator=generator, dtype=torch.float32)
            signatures[name] = signature.to(device=output.device, dtype=output.dtype)
            return signatures[name]

        return hook

    marked = {name: sign(name) for name in convs}
    marked[target_name] = keep(target_name) if target_name not in marked else marked[target_name]
    with torch.no_grad(), eval_mode(model), hooked(model, marked):
        model(x)
    target_out = signatures[target_name] if target_name in signatures else captured.get(target_name)
    if target_out is None or target_out.dim() != 4:
        raise ValueError(f"layer {target!r} gives no [N, C, H, W] output, so no convolution writes its channels")
    writer = _match(target_out, signatures)
    return ConvLinks(
        source, target, readers, writer, {name: inputs[name] for name, _ in set(writer.values()) if name in inputs}
    )


def _match(target: torch.Tensor, signatures: dict[str, torch.Tensor]) -> dict[int, tuple[str, int]]:
    """``{target channel: (conv, channel)}`` where the target map equals that signature map."""
    probe = torch.rand(
        target.shape[2] * target.shape[3], generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    want = target[0].flatten(1).double() @ probe  # [C_target] one fingerprint per map
    found: dict[int, tuple[str, int]] = {}
    for name, signature in signatures.items():
        if signature.shape[2:] != target.shape[2:]:
            continue
        have = signature[0].flatten(1).double() @ probe  # [C_conv]
        close = (want[:, None] - have[None, :]).abs() <= 1e-3 * want.abs()[:, None].clamp_min(1e-12)
        for t, c in close.nonzero().tolist():
            if t not in found and torch.equal(target[0, t], signature[0, c]):
                found[t] = (name, c)
    return found


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


def reads_directly(model: nn.Module, source: str, conv: str, *, seed: int = 0) -> bool:
    """Whether layer ``conv``'s input is layer ``source``'s output as it is (a padded copy counts), so
    ``conv``'s weights are the convolution between the two: one probe forward on a noise image."""
    seen: dict[str, torch.Tensor] = {}

    def keep_input(module, args, output):
        seen.setdefault("input", args[0].detach())

    def keep_output(module, args, output):
        seen.setdefault("source", output.detach())

    x = probe_input(model, model_input_size(model), torch.Generator().manual_seed(seed))
    with torch.no_grad(), eval_mode(model), hooked(model, {conv: keep_input}), hooked(model, {source: keep_output}):
        model(x)
    return "input" in seen and "source" in seen and _contains(seen["input"], seen["source"])


def layer_read_by(model: nn.Module, conv_input: torch.Tensor, *, seed: int = 0) -> str | None:
    """The last named layer (in forward order) whose output the conv input ``[1, C, H, W]`` holds as it is."""
    names = layer_names(model)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[1] == conv_input.shape[1]:
                outputs[name] = output.detach()

        return hook

    x = probe_input(model, model_input_size(model), torch.Generator().manual_seed(seed))
    with torch.no_grad(), eval_mode(model), hooked(model, {name: keep(name) for name in names}):
        model(x)
    matches = [name for name in names if name in outputs and _contains(conv_input, outputs[name])]
    return matches[-1] if matches else None
