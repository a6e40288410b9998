"""Ablation: silence a set of units and measure what the classifier loses, overall and per class.

    report = cv.analysis.ablate(model, {"mixed3b": [3, 48, 108]}, data)
    report.delta, report.per_class_delta["curve_45"], print(report)

Units are given per layer (``{"mixed3b": [3, 48]}``, or ``"mixed3b:3"`` strings, or ``("mixed3b", 3)``
pairs). Ablating a unit replaces its whole feature map with a constant, by a forward hook on the layer:
0 by default (``value="zero"``, what Curve Circuits did to curve detectors) or the unit's mean activation
over ``data`` (``value="mean"``), which keeps its average contribution to later layers and removes only
what varies with the image. The same data is run with and without the hook, so the deltas are paired.

A replacement (:func:`with_replacement`) installs hand-built units in place of the originals with
the same hook mechanism; :func:`ablate` takes one through ``replacement=``.

``data`` is ``(images [N, 3, H, W], labels [N])`` with integer class labels, optionally with
``class_names``; ``logits`` chooses which columns of the model's output are the classifier (e.g. the
``shape`` head of the ``shapes`` model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits_vision.hooks import check_channel, eval_mode, get_layer, model_device, resolve_layer
from circuits_vision.results import Result

__all__ = ["AblationReport", "ClassDelta", "ablate", "ablated", "parse_units", "with_replacement"]

Units = Mapping[str, Iterable[int]] | Iterable[str] | Iterable[tuple[str, int]]
Replacement = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(layer input [N, C_in, H, W], layer output [N, C, h, w]) -> new values of the replaced channels [N, k, h, w]``."""


def parse_units(model: nn.Module, units: Units) -> dict[str, list[int]]:
    """Normalise ``units`` to ``{canonical layer name: sorted channel list}`` and check every channel.

    Accepts ``{"mixed3b": [3, 4]}``, ``["mixed3b:3", "mixed3b:4"]`` or ``[("mixed3b", 3), ...]``.
    """
    if isinstance(units, str):
        units = [units]
    pairs: list[tuple[str, int]] = []
    if isinstance(units, Mapping):
        for layer, channels in units.items():
            if isinstance(channels, int):
                channels = [channels]
            pairs += [(layer, c) for c in channels]
    else:
        for item in units:
            if isinstance(item, str):
                layer, sep, channel = item.rpartition(":")
                if not sep or not channel.strip().lstrip("-").isdigit():
                    raise ValueError(f"unit {item!r}: expected 'layer:channel', e.g. 'mixed3b:3'")
                pairs.append((layer, int(channel)))
            elif isinstance(item, tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise TypeError(f"unit {item!r}: expected 'layer:channel' or (layer, channel)")
    if not pairs:
        raise ValueError("units is empty: name at least one unit, e.g. {'mixed3b': [3]}")
    out: dict[str, set[int]] = {}
    for layer, channel in pairs:
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise TypeError(f"channel {channel!r} of layer {layer!r} must be an int")
        name = resolve_layer(model, layer)[0]
        check_channel(model, name, channel)
        out.setdefault(name, set()).add(channel)
    return {layer: sorted(channels) for layer, channels in out.items()}


@contextmanager
def ablated(
    model: nn.Module,
    units: Units,
    *,
    means: Mapping[str, torch.Tensor] | None = None,
    replacement: Mapping[str, Replacement] | None = None,
):
    """Within the block, ``units`` of ``model`` output a constant (0, or ``means[layer]`` ``[k]`` per unit).

    ``replacement[layer](input, output)`` gives new values ``[N, k, h, w]`` for that layer's units
    instead (see :func:`with_replacement`). The model itself is not modified; the hooks go on exit.
    """
    parsed = parse_units(model, units)
    handles = []

    def make(layer: str, channels: list[int]):
        index = torch.tensor(channels, dtype=torch.long)

        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() < 2:
                raise ValueError(f"layer {layer!r} gives no [N, C, ...] tensor to ablate channels of")
            out = output.clone()
            idx = index.to(out.device)
            if replacement is not None and layer in replacement:
                new = replacement[layer](inputs[0] if inputs else None, output)
                if tuple(new.shape) != (out.shape[0], len(channels), *out.shape[2:]):
                    raise ValueError(
                        f"replacement for {layer!r} returned {tuple(new.shape)}, expected "
                        f"{(out.shape[0], len(channels), *out.shape[2:])}"
                    )
                out[:, idx] = new.to(out.dtype)
            elif means is not None and layer in means:
                fill = means[layer].to(out.device, out.dtype).view(1, -1, *([1] * (out.dim() - 2)))
                out[:, idx] = fill.expand(out.shape[0], -1, *out.shape[2:])
            else:
                out[:, idx] = 0
            return out

        return hook

    try:
        for layer, channels in parsed.items():
            handles.append(get_layer(model, layer).register_forward_hook(make(layer, channels)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def with_replacement(layer: str, units: Sequence[int], make: Replacement) -> dict:
    """Arguments for :func:`ablate` that replace ``units`` of ``layer`` by ``make(input, output)``.

    Returns ``{"units": {layer: units}, "replacement": {layer: make}}``; pass as ``ablate(model, **that, data=...)``.
    """
    return {"units": {layer: list(units)}, "replacement": {layer: make}}


@dataclass(frozen=True)
class ClassDelta:
    """Accuracy of one class before and after the ablation."""

    name: str
    n: int
    before: float
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass
class AblationReport(Result):
    """Accuracy with and without ablated units, overall and per class (accuracies are fractions).

    Attributes:
        units: ``{layer: channels}`` ablated (or replaced).
        mode: ``"zero"``, ``"mean"`` or ``"replacement"``.
        n: number of images; ``before`` / ``after``: overall accuracy.
        classes: per class (label order) its count and accuracies before and after.
        changed: fraction of images whose predicted class changed.
        standard_error: binomial standard error of ``after - before`` from the discordant pairs.
    """

    units: dict[str, list[int]]
    mode: str
    n: int
    before: float
    after: float
    classes: list[ClassDelta]
    changed: float
    standard_error: float
    notes: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def per_class_delta(self) -> dict[str, float]:
        return {c.name: c.delta for c in self.classes}

    def class_delta(self, name: str) -> ClassDelta:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(f"unknown class {name!r}; classes: {[c.name for c in self.classes]}")

    def table(self) -> list[dict]:
        """One row per class, then an ``"(all)"`` row: ``class, n, before, after, delta``."""
        rows = [
            {"class": c.name, "n": c.n, "before": c.before, "after": c.after, "delta": c.delta} for c in self.classes
        ]
        rows.append({"class": "(all)", "n": self.n, "before": self.before, "after": self.after, "delta": self.delta})
        return rows

    def __str__(self) -> str:
        count = sum(len(v) for v in self.units.values())
        where = ", ".join(f"{layer} x{len(ch)}" for layer, ch in self.units.items())
        lines = [
            f"ablation ({self.mode}) of {count} unit(s) [{where}] on {self.n} images: accuracy "
            f"{100 * self.before:.1f}% -> {100 * self.after:.1f}% ({100 * self.delta:+.1f} pts, "
            f"s.e. {100 * self.standard_error:.1f}); {100 * self.changed:.1f}% of predictions changed",
            f"{'class':<16} {'n':>5} {'before':>7} {'after':>7} {'delta':>7}",
        ]
        for c in self.classes:
            lines.append(
                f"{c.name[:16]:<16} {c.n:>5} {100 * c.before:>6.1f}% {100 * c.after:>6.1f}% {100 * c.delta:>+6.1f}"
            )
        lines += self.notes
        return "\n".join(lines)

    def __repr__(self) -> str:
        count = sum(len(v) for v in self.units.values())
        return f"AblationReport({count} units, {self.mode}, n={self.n}, {self.before:.3f} -> {self.after:.3f})"


def _check_data(data) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    if isinstance(data, Mapping):
        images, labels, names = data.get("images"), data.get("labels"), data.get("class_names")
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        images, labels, names = data[0], data[1], (data[2] if len(data) == 3 else None)
    else:
        raise TypeError(
            "data must be (images [N, 3, H, W], labels [N]) or (images, labels, class_names), "
            f"or a dict with those keys; got {type(data).__name__}"
        )
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"data images must be a tensor [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0] or labels.dtype.is_floating_point:
        raise ValueError(
            f"data labels must be integer class indices [N={images.shape[0]}], got {tuple(labels.shape)} {labels.dtype}"
        )
    return images, labels.long(), (list(names) if names is not None else None)


@torch.no_grad()
def _predictions(model, images, logits, batch_size) -> torch.Tensor:
    device = model_device(model)
    out = []
    for start in range(0, images.shape[0], batch_size):
        scores = model(images[start : start + batch_size].to(device))
        if logits is not None:
            scores = logits(scores) if callable(logits) else scores[:, logits]
        out.append(scores.argmax(1).cpu())
    return torch.cat(out)


@torch.no_grad()
def _means(model, parsed: dict[str, list[int]], images, batch_size) -> dict[str, torch.Tensor]:
    """Mean activation ``[k]`` of each ablated unit over ``images`` (all positions)."""
    sums = {layer: torch.zeros(len(ch), dtype=torch.float64) for layer, ch in parsed.items()}
    count = {layer: 0 for layer in parsed}
    handles = []

    def make(layer):
        def hook(module, inputs, output):
            act = output[:, parsed[layer]].double()
            sums[layer] += act.sum(dim=[d for d in range(act.dim()) if d != 1]).cpu()
            count[layer] += act.numel() // act.shape[1]

        return hook

    try:
        for layer in parsed:
            handles.append(get_layer(model, layer).register_forward_hook(make(layer)))
        device = model_device(model)
        for start in range(0, images.shape[0], batch_size):
            model(images[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {layer: (sums[layer] / max(count[layer], 1)).float() for layer in parsed}


def ablate(
    model: nn.Module,
    units: Units,
    data,
    *,
    value: str = "zero",
    replacement: Mapping[str, Replacement] | None = None,
    logits: slice | Sequence[int] | Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
) -> AblationReport:
    """Accuracy of ``model`` on ``data`` with ``units`` intact and ablated; overall and per-class deltas.

    Args:
        units: ``{layer: [channels]}``, ``["layer:channel", ...]`` or ``[(layer, channel), ...]``.
        data: ``(images [N, 3, H, W], labels [N])`` or ``(images, labels, class_names)`` or a dict with
            keys ``images``, ``labels``, ``class_names``. Classes are ``range(max label + 1)`` (or the names).
        value: ``"zero"`` (units output 0) or ``"mean"`` (their mean activation over ``data``).
        replacement: ``{layer: fn(input, output) -> [N, k, h, w]}``: new values for the units instead
            (``mode="replacement"``); see :func:`with_replacement`.
        logits: which output columns are the classifier (a slice, an index list or a function of the
            output); default all of them.
    """
    if value not in ("zero", "mean"):
        raise ValueError(f"value must be 'zero' or 'mean', got {value!r}")
    images, labels, names = _check_data(data)
    parsed = parse_units(model, units)
    if replacement is not None:
        unknown = [layer for layer in replacement if resolve_layer(model, layer)[0] not in parsed]
        if unknown:
            raise ValueError(f"replacement names layers {unknown} that have no units in `units` ({list(parsed)})")
        replacement = {resolve_layer(model, layer)[0]: fn for layer, fn in replacement.items()}
    n_classes = max(int(labels.max()) + 1, len(names) if names else 0)
    if names is not None and len(names) < n_classes:
        raise ValueError(f"class_names has {len(names)} names but labels go up to {n_classes - 1}")
    names = names or [str(k) for k in range(n_classes)]
    with eval_mode(model):
        before = _predictions(model, images, logits, batch_size)
        if before.shape != labels.shape:
            raise ValueError(f"the model's predictions have shape {tuple(before.shape)}, labels {tuple(labels.shape)}")
        means = _means(model, parsed, images, batch_size) if value == "mean" and replacement is None else None
        with ablated(model, parsed, means=means, replacement=replacement):
            after = _predictions(model, images, logits, batch_size)
    right_before, right_after = before == labels, after == labels
    classes = []
    for k in range(n_classes):
        mask = labels == k
        m = int(mask.sum())
        classes.append(
            ClassDelta(
                names[k],
                m,
                float(right_before[mask].float().mean()) if m else math.nan,
                float(right_after[mask].float().mean()) if m else math.nan,
            )
        )
    n = labels.shape[0]
    # Paired difference of two proportions: its variance comes from the images that flipped.
    gained, lost = float((right_after & ~right_before).sum()), float((right_before & ~right_after).sum())
    se = math.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0.0)) / n
    mode = "replacement" if replacement is not None else value
    return AblationReport(
        parsed,
        mode,
        n,
        float(right_before.float().mean()),
        float(right_after.float().mean()),
        classes,
        float((before != after).float().mean()),
        se,
    )
