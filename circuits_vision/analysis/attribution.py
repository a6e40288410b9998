"""Attribution: which units of a layer, at which positions, an image uses for a target ("Building Blocks").

For images ``x`` and a layer with activation ``A [N, C, H, W]``, the attribution of a target ``t(A)``
(a class logit, a later unit, a direction in a later layer) to every channel and position:

- ``method="gradient"``: gradient x activation, ``A * dt/dA``, the linear approximation lucid's
  Building Blocks views use. Exact when ``t`` is linear in ``A`` without offset.
- ``method="integrated"``: integrated gradients from a baseline activation ``B`` (zeros by default),
  ``(A - B) * mean_k dt/dA(B + a_k (A - B))`` at ``steps`` midpoints ``a_k``; its total approaches
  ``t(A) - t(B)`` as ``steps`` grows (exactly, for any ``steps``, when ``t`` is linear in ``A``).

    attr = attribute(model, images, "mixed3a", "mixed3b:379")   # a mixed3b unit (summed over positions)
    attr.channel     # [N, C] which mixed3a units drive it
    attr.spatial     # [N, H, W] and where
    between(model, images, "mixed3a", "mixed3b", units=[379, 385]).channel   # [N, U, C] for many units at once

The layer's activation is reached through :func:`circuits_vision.hooks.hooked`: the forward hook swaps
the layer's output for a leaf tensor (optionally interpolated towards the baseline), so gradients are
taken with respect to the activation itself and the rest of the model runs unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision.hooks import (
    check_channel,
    eval_mode,
    hooked,
    layer_shape,
    model_device,
    resolve_layer,
    run_with_cache,
)
from circuits_vision.results import Result

__all__ = [
    "Attribution",
    "Target",
    "UnitAttribution",
    "as_target",
    "attribute",
    "between",
    "direction",
    "logit",
    "unit",
]

METHODS = ("gradient", "integrated")


@dataclass(frozen=True)
class Target:
    """A scalar per image that attribution explains.

    ``layer``: the layer whose output the target reads (``None``: the model's output);
    ``reduce``: that output ``[N, ...]`` -> ``[N]``; ``description``: for tables and errors.
    """

    layer: str | None
    reduce: Callable[[torch.Tensor], torch.Tensor]
    description: str


def logit(label: int) -> Target:
    """Column ``label`` of the model's output ``[N, classes]`` (a class logit)."""
    label = _int(label, "label")

    def reduce(out: torch.Tensor) -> torch.Tensor:
        if out.dim() != 2:
            raise ValueError(f"logit({label}) needs model outputs [N, classes], got shape {tuple(out.shape)}")
        if not 0 <= label < out.shape[1]:
            raise IndexError(f"logit({label}): the model has {out.shape[1]} outputs (0..{out.shape[1] - 1})")
        return out[:, label]

    return Target(None, reduce, f"logit {label}")


def unit(layer: str, channel: int, y: int | None = None, x: int | None = None) -> Target:
    """Channel ``channel`` of ``layer``: summed over positions, or at row ``y``, column ``x`` when both given."""
    channel = _int(channel, "channel")
    if (y is None) != (x is None):
        raise ValueError(f"unit({layer!r}, {channel}): give both y and x for one position, or neither for the sum")

    def reduce(out: torch.Tensor) -> torch.Tensor:
        return _spatial_reduce(out[:, channel], y, x)

    where = "" if y is None else f" at (y={y}, x={x})"
    return Target(layer, reduce, f"{layer}:{channel}{where}")


def direction(layer: str, vector, y: int | None = None, x: int | None = None) -> Target:
    """The dot product of ``layer``'s activation vectors with ``vector`` ``[C]``, summed over positions
    (or at row ``y``, column ``x``)."""
    vector = torch.as_tensor(vector, dtype=torch.float32).flatten()
    if (y is None) != (x is None):
        raise ValueError(f"direction({layer!r}): give both y and x for one position, or neither for the sum")

    def reduce(out: torch.Tensor) -> torch.Tensor:
        if out.dim() < 2 or out.shape[1] != vector.numel():
            raise ValueError(
                f"direction on {layer!r} has {vector.numel()} entries but the layer's output has shape "
                f"{tuple(out.shape)}; pass one value per channel"
            )
        weights = vector.to(out).reshape(1, -1, *([1] * (out.dim() - 2)))
        return _spatial_reduce((out * weights).sum(1), y, x)

    return Target(layer, reduce, f"direction on {layer}")


def as_target(target) -> Target:
    """A :class:`Target` from ``int`` (a logit), ``"layer:channel"`` (a unit) or a :class:`Target`."""
    if isinstance(target, Target):
        return target
    if isinstance(target, bool):
        raise TypeError("target must be an int (logit), 'layer:channel' or a Target, got a bool")
    if isinstance(target, int):
        return logit(target)
    if isinstance(target, str):
        layer, sep, channel = target.rpartition(":")
        if not sep or not layer or not channel.strip().lstrip("-").isdigit():
            raise ValueError(f"target {target!r} is not 'layer:channel' (e.g. 'mixed3b:379')")
        return unit(layer, int(channel))
    raise TypeError(
        f"target must be an int (logit), 'layer:channel' or a Target (logit/unit/direction), got {type(target).__name__}"
    )


@dataclass
class Attribution(Result):
    """Attribution of ``layer``'s activations on ``N`` images to ``target`` (all tensors on the CPU).

    Attributes:
        values: ``[N, C, H, W]`` attribution of every channel at every position.
        activations: ``[N, C, H, W]`` the layer's activations.
        target_value: ``[N]`` the target on the images.
        baseline_value: ``[N]`` the target with the layer's activation replaced by the baseline.
        method: ``"gradient"`` or ``"integrated"`` (``steps`` interpolation points).
    """

    layer: str
    target: str
    method: str
    steps: int
    values: torch.Tensor
    activations: torch.Tensor
    target_value: torch.Tensor
    baseline_value: torch.Tensor

    @property
    def spatial(self) -> torch.Tensor:
        """``[N, H, W]``: attribution per position, summed over channels."""
        return self.values.sum(1)

    @property
    def channel(self) -> torch.Tensor:
        """``[N, C]``: attribution per channel, summed over positions."""
        return self.values.flatten(2).sum(2)

    @property
    def total(self) -> torch.Tensor:
        """``[N]``: the sum of all attributions (for integrated gradients, close to target - baseline)."""
        return self.values.flatten(1).sum(1)

    def top_channels(self, k: int = 5, image: int = 0) -> list[tuple[int, float]]:
        """The ``k`` channels with the largest attribution on image ``image``: ``[(channel, attribution)]``."""
        scores = self.channel[image]
        order = scores.argsort(descending=True)[: int(k)]
        return [(int(c), float(scores[c])) for c in order]

    def table(self, k: int = 5) -> list[dict]:
        """Per image, its ``k`` strongest channels with their attribution and share of the total."""
        rows = []
        for i in range(self.values.shape[0]):
            total = float(self.total[i])
            for rank, (c, value) in enumerate(self.top_channels(k, i)):
                rows.append(
                    {
                        "image": i,
                        "rank": rank,
                        "channel": c,
                        "attribution": value,
                        "share": value / total if total else math.nan,
                        "target": float(self.target_value[i]),
                    }
                )
        return rows

    def __str__(self) -> str:
        lines = [f"{self.method} attribution of {self.layer} to {self.target} on {self.values.shape[0]} images"]
        for i in range(min(self.values.shape[0], 4)):
            top = ", ".join(f"{c} ({v:+.3g})" for c, v in self.top_channels(5, i))
            lines.append(
                f"  image {i}: target {float(self.target_value[i]):.4g}, total {float(self.total[i]):.4g}; top channels {top}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Attribution(layer={self.layer!r}, target={self.target!r}, method={self.method!r}, values={tuple(self.values.shape)})"


@dataclass
class UnitAttribution(Result):
    """Attribution of ``source`` to each of ``units`` of ``target_layer`` (summed over the target's positions,
    or at one position).

    Attributes:
        channel: ``[N, U, C_source]``: which source units drive each target unit on each image.
        spatial: ``[N, U, H, W]``: where (summed over source channels).
        target_value / baseline_value: ``[N, U]``.
    """

    source: str
    target_layer: str
    units: list[int]
    method: str
    steps: int
    channel: torch.Tensor
    spatial: torch.Tensor
    target_value: torch.Tensor
    baseline_value: torch.Tensor

    def top_inputs(self, unit_: int, k: int = 5, image: int = 0) -> list[tuple[int, float]]:
        """Source channels that drive target unit ``unit_`` most on image ``image``: ``[(channel, attribution)]``."""
        if unit_ not in self.units:
            raise ValueError(f"unit {unit_} of {self.target_layer!r} was not attributed; units: {self.units}")
        scores = self.channel[image, self.units.index(unit_)]
        order = scores.argsort(descending=True)[: int(k)]
        return [(int(c), float(scores[c])) for c in order]

    def table(self, k: int = 5) -> list[dict]:
        """Per image and target unit, its ``k`` strongest source channels."""
        return [
            {"image": i, "unit": u, "rank": rank, "source_channel": c, "attribution": value}
            for i in range(self.channel.shape[0])
            for u in self.units
            for rank, (c, value) in enumerate(self.top_inputs(u, k, i))
        ]

    def __str__(self) -> str:
        lines = [f"{self.method} attribution of {self.source} to {len(self.units)} units of {self.target_layer}"]
        for u in self.units[:6]:
            top = ", ".join(f"{c} ({v:+.3g})" for c, v in self.top_inputs(u, 4, 0))
            lines.append(f"  {self.target_layer}:{u} on image 0: {top}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"UnitAttribution(source={self.source!r}, target_layer={self.target_layer!r}, "
            f"units={len(self.units)}, channel={tuple(self.channel.shape)})"
        )


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    target,
    *,
    method: str = "gradient",
    steps: int = 32,
    baseline: torch.Tensor | float = 0.0,
    batch_size: int = 64,
) -> Attribution:
    """Attribution of ``layer``'s activations on ``images`` ``[N, 3, H, W]`` to ``target``.

    Args:
        target: ``int`` (a logit of the model's output), ``"layer:channel"`` (a later unit, summed over
            positions), or a :class:`Target` from :func:`logit`, :func:`unit`, :func:`direction`.
        method: ``"gradient"`` (gradient x activation) or ``"integrated"`` (integrated gradients).
        steps: interpolation points for integrated gradients (midpoint rule).
        baseline: the baseline activation, a number or a tensor broadcastable to ``[N, C, H, W]``.
        batch_size: images (times interpolation points) per forward pass.
    """
    _check_method(method, steps)
    images = _check_images(images)
    canonical = resolve_layer(model, layer)[0]
    goal = as_target(target)
    if goal.layer is not None:
        resolve_layer(model, goal.layer)
    n = images.shape[0]
    with eval_mode(model):
        acts = _activations(model, images, canonical, batch_size)
        base = _baseline(baseline, acts)
        alphas = _alphas(method, steps)
        grads = torch.zeros_like(acts)
        values = torch.empty(n)
        rows = [(i, a) for a in range(len(alphas)) for i in range(n)]
        for chunk in _chunks(rows, batch_size):
            index = torch.tensor([i for i, _ in chunk])
            alpha = alphas[torch.tensor([a for _, a in chunk])]
            grad, value = _gradient(model, images[index], canonical, goal, base[index], alpha)
            grads.index_add_(0, index, grad)
            if method == "gradient":
                values[index] = value
        grads /= len(alphas)
        if method == "integrated":
            values = _target(model, images, canonical, goal, None, batch_size)
        baseline_value = _target(model, images, canonical, goal, base, batch_size)
    return Attribution(
        canonical,
        goal.description,
        method,
        steps if method == "integrated" else 1,
        ((acts - base) * grads),
        acts,
        values,
        baseline_value,
    )


def between(
    model: nn.Module,
    images: torch.Tensor,
    source: str,
    target_layer: str,
    units: Sequence[int] | int | None = None,
    *,
    position: tuple[int, int] | None = None,
    method: str = "gradient",
    steps: int = 32,
    baseline: torch.Tensor | float = 0.0,
    batch_size: int = 64,
) -> UnitAttribution:
    """Which units of ``source`` drive each of ``units`` of ``target_layer`` on each image, and where.

    Each target unit is its activation summed over positions, or at ``position`` = ``(y, x)``. All units
    are attributed in batched passes (the images repeated once per unit), not one backward per unit.
    Memory of the result: ``N x U x (C_source + H x W)`` floats.
    """
    _check_method(method, steps)
    images = _check_images(images)
    source_name = resolve_layer(model, source)[0]
    target_name = resolve_layer(model, target_layer)[0]
    width = layer_shape(model, target_name, tuple(images.shape[-2:]))[0]
    if units is None:
        units = list(range(width))
    units = (
        [_int(units, "units")]
        if not isinstance(units, (list, tuple, range, torch.Tensor))
        else [_int(u, "units") for u in units]
    )
    if not units:
        raise ValueError("units is empty: pass channel indices of the target layer, or None for all")
    for u in units:
        check_channel(model, target_name, u)
    y, x = (None, None) if position is None else (int(position[0]), int(position[1]))
    n, count = images.shape[0], len(units)
    with eval_mode(model):
        acts = _activations(model, images, source_name, batch_size)
        base = _baseline(baseline, acts)
        alphas = _alphas(method, steps)
        channel = torch.zeros(n, count, acts.shape[1])
        spatial = torch.zeros(n, count, *acts.shape[2:])
        values = torch.zeros(n, count)
        rows = [(i, j, a) for a in range(len(alphas)) for j in range(count) for i in range(n)]
        unit_index = torch.tensor(units)
        for chunk in _chunks(rows, batch_size):
            image_index = torch.tensor([i for i, _, _ in chunk])
            slot = torch.tensor([j for _, j, _ in chunk])
            alpha = alphas[torch.tensor([a for _, _, a in chunk])]
            goal = _per_row_unit(target_name, unit_index[slot], y, x)
            grad, value = _gradient(model, images[image_index], source_name, goal, base[image_index], alpha)
            contribution = (acts[image_index] - base[image_index]) * grad / len(alphas)
            flat = image_index * count + slot
            channel.view(n * count, -1).index_add_(0, flat, contribution.flatten(2).sum(2))
            spatial.view(n * count, *acts.shape[2:]).index_add_(0, flat, contribution.sum(1))
            if method == "gradient":
                values.view(-1)[flat] = value
        # every target unit's value read from one pass per batch: the whole target layer, reduced per unit
        everything = Target(target_name, _identity, target_name)
        reduce = lambda out: torch.stack([_spatial_reduce(out[:, u], y, x) for u in units], 1)  # noqa: E731
        baseline_value = reduce(_target(model, images, source_name, everything, base, batch_size))
        if method == "integrated":
            values = reduce(_target(model, images, source_name, everything, None, batch_size))
    return UnitAttribution(
        source_name,
        target_name,
        units,
        method,
        steps if method == "integrated" else 1,
        channel,
        spatial,
        values,
        baseline_value,
    )


# --- the gradient at a layer -----------------------------------------------------------------------


def _gradient(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    goal: Target,
    baseline: torch.Tensor,
    alpha: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dt/dA [B, ...], t [B])`` at activation ``baseline + alpha * (A - baseline)`` (row-wise ``alpha [B]``)."""

    def interpolate(act: torch.Tensor) -> torch.Tensor:
        base = baseline.to(act)
        return base + alpha.to(act).reshape(-1, *([1] * (act.dim() - 1))) * (act - base)

    with torch.enable_grad():
        value, leaf = _forward_from(model, images, layer, goal, interpolate)
        if not value.requires_grad:
            raise _unreachable(layer, goal)
        (grad,) = torch.autograd.grad(value.sum(), leaf, allow_unused=True)
    if grad is None:
        raise _unreachable(layer, goal)
    return grad.detach().float().cpu(), value.detach().float().cpu()


def _forward_from(model, images, layer, goal: Target, replace) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model with ``layer``'s output replaced by ``replace(output)`` as a leaf: ``(t [B], leaf)``."""
    state: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"layer {layer!r} outputs {type(output).__name__}, not a tensor; attribute to a tensor layer"
            )
        leaf = replace(output.detach()).detach().requires_grad_(True)
        state["leaf"] = leaf
        return leaf.clone()  # a non-leaf, so an in-place op downstream (ReLU(inplace=True)) is allowed

    device = _device(model, images)
    with hooked(model, {layer: hook}):
        if goal.layer is None:
            out = model(images.to(device))
        else:
            out = run_with_cache(model, images.to(device), [goal.layer])[goal.layer]
    if "leaf" not in state:
        raise _unreachable(layer, goal)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the target reads a {type(out).__name__}, not a tensor")
    value = goal.reduce(out)
    if value.dim() == 0 or value.shape[0] != images.shape[0] or (value.dim() != 1 and goal.reduce is not _identity):
        raise ValueError(f"target {goal.description} gave shape {tuple(value.shape)}; it must give one value per image")
    return value, state["leaf"]


def _target(model, images, layer, goal: Target, baseline: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """``[N]`` target values with ``layer`` set to ``baseline`` (``None``: the real activation)."""
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            stop = start + batch_size
            replace = (
                (lambda act, b=baseline[start:stop]: b.to(act).expand_as(act))
                if baseline is not None
                else (lambda act: act)
            )
            value, _ = _forward_from(model, images[start:stop], layer, goal, replace)
            out.append(value.float().cpu())
    return torch.cat(out)


def _activations(model, images, layer, batch_size) -> torch.Tensor:
    device = _device(model, images)
    with torch.no_grad():
        outs = [
            run_with_cache(model, images[s : s + batch_size].to(device), [layer])[layer]
            for s in range(0, images.shape[0], batch_size)
        ]
    if not isinstance(outs[0], torch.Tensor) or outs[0].dim() < 2:
        raise ValueError(f"layer {layer!r} must output a [N, C, ...] tensor to attribute its channels")
    return torch.cat(outs).float().cpu()


def _identity(out: torch.Tensor) -> torch.Tensor:
    return out


def _per_row_unit(layer: str, channels: torch.Tensor, y, x) -> Target:
    """Row ``i`` reads channel ``channels[i]`` of ``layer`` (one pass serves many target units)."""

    def reduce(out: torch.Tensor) -> torch.Tensor:
        picked = out[torch.arange(out.shape[0], device=out.device), channels.to(out.device)]
        return _spatial_reduce(picked, y, x)

    return Target(layer, reduce, f"{layer} units")


def _spatial_reduce(maps: torch.Tensor, y, x) -> torch.Tensor:
    """``[N, H, W]`` (or ``[N]``) -> ``[N]``: the sum over positions, or the value at ``(y, x)``."""
    if y is None:
        return maps.flatten(1).sum(1) if maps.dim() > 1 else maps
    if maps.dim() != 3:
        raise ValueError(f"a position (y, x) needs a spatial layer [N, C, H, W], got {maps.dim() + 1}-d output")
    height, width = maps.shape[1:]
    if not (0 <= y < height and 0 <= x < width):
        raise IndexError(f"position (y={y}, x={x}) is outside the layer's {height}x{width} feature map")
    return maps[:, y, x]


# --- argument checks -------------------------------------------------------------------------------


def _alphas(method: str, steps: int) -> torch.Tensor:
    if method == "gradient":
        return torch.ones(1)
    return (torch.arange(steps, dtype=torch.float64) + 0.5).float() / steps


def _baseline(baseline, acts: torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(acts, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(
            f"baseline must be a number or a tensor broadcastable to {tuple(acts.shape)}, got {type(baseline).__name__}"
        )
    try:
        return baseline.float().cpu().expand_as(acts).clone()
    except RuntimeError:
        raise ValueError(
            f"baseline of shape {tuple(baseline.shape)} does not broadcast to the layer's activations {tuple(acts.shape)}"
        ) from None


def _check_method(method: str, steps: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "integrated" and int(steps) < 1:
        raise ValueError(f"integrated gradients needs steps >= 1, got {steps}")


def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor [N, 3, H, W], got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be [N, 3, H, W] with N >= 1, got shape {tuple(images.shape)}")
    return images


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        return int(value.__index__()) if not isinstance(value, torch.Tensor) else int(value.item())
    except (AttributeError, TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}: {value!r}") from None


def _chunks(rows: list, size: int):
    size = max(1, int(size))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _device(model: nn.Module, images: torch.Tensor) -> torch.device:
    return model_device(model) if any(True for _ in model.parameters()) else images.device


def _unreachable(layer: str, goal: Target) -> ValueError:
    where = "the model's output" if goal.layer is None else f"layer {goal.layer!r}"
    return ValueError(
        f"target {goal.description} ({where}) does not depend on layer {layer!r}: the target must be computed "
        f"after {layer!r} in the forward pass (a later layer or the output)"
    )
