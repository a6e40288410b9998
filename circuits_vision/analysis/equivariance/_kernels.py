"""Per-unit kernels for the equivariance detectors: expanded weights to a layer or to the RGB input."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from circuits_vision.analysis.equivariance import transforms as T
from circuits_vision.hooks import check_channel, eval_mode, layer_shape, model_input_size, run_with_cache
from circuits_vision.weights import expanded_weights, linearized


def validate_units(model: nn.Module, layer: str, units: list[int] | None) -> list[int]:
    """``units`` checked against the width of ``layer`` (all channels when None)."""
    width = int(layer_shape(model, layer)[0])
    if units is None:
        return list(range(width))
    units = [int(u) if not isinstance(u, bool) else u for u in units]
    for unit in units:
        check_channel(model, layer, unit)
    if len(set(units)) != len(units):
        raise ValueError(f"units of layer {layer!r} must be distinct, got {units}")
    return units


def unit_kernels(
    model: nn.Module, layer: str, source: str | None = None, *, units: list[int] | None = None, chunk: int = 32
) -> torch.Tensor:
    """Each unit's linear kernel: ``[len(units), C_source, S, S]``.

    ``source`` a layer name: the expanded weights ``expanded_weights(model, source, layer)``.
    ``source=None``: the kernel on the RGB input, i.e. the gradient of the centre unit with respect to
    the input in the linearised model (ReLU -> identity, max pool -> average pool), which equals the
    expanded weights to the input; cropped to the receptive field (square, centred on it).
    """
    units = validate_units(model, layer, units)
    if source is not None:
        weights = expanded_weights(model, source, layer)
        return weights[units]
    return _input_kernels(model, layer, units, chunk)


def _input_kernels(model: nn.Module, layer: str, units: list[int], chunk: int) -> torch.Tensor:
    size = model_input_size(model)
    _, height, width = layer_shape(model, layer)
    reference = next(iter(model.parameters()))
    pieces = []
    with eval_mode(model):
        with linearized(model):
            for start in range(0, len(units), chunk):
                block = torch.tensor(units[start : start + chunk], device=reference.device)
                x = torch.full(
                    (len(block), 3, size, size), 0.5, dtype=reference.dtype, device=reference.device, requires_grad=True
                )
                out = run_with_cache(model, x, [layer])[layer]
                picked = out[torch.arange(len(block), device=out.device), block, height // 2, width // 2]
                (grad,) = torch.autograd.grad(picked.sum(), x)
                pieces.append(grad.detach())
    return _crop_to_support(torch.cat(pieces))


def _crop_to_support(kernels: torch.Tensor) -> torch.Tensor:
    """Crop ``[N, C, H, W]`` to the square around the union of the kernels' non-zero support."""
    energy = kernels.abs().sum(dim=(0, 1))
    nonzero = (energy > 1e-7 * energy.max().clamp_min(1e-30)).nonzero()
    if len(nonzero) == 0:
        return kernels
    (top, left), (bottom, right) = nonzero.min(0).values.tolist(), nonzero.max(0).values.tolist()
    h, w = bottom - top + 1, right - left + 1
    side = max(h, w)
    cropped = kernels[..., top : bottom + 1, left : right + 1]
    pad_h, pad_w = side - h, side - w
    return nn.functional.pad(cropped, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


def family_gather(
    source_families, channels: int, like: torch.Tensor, *, shuffle: torch.Generator | None = None
) -> Callable[[float], torch.Tensor]:
    """``angle -> [channels] long`` input-channel map for rotating kernels whose source holds these families.

    Rotating a unit by ``a`` moves its input from the source member at angle ``t`` to the member at
    ``t + a`` (nearest one), inside each source rotation family; other channels stay put.
    ``shuffle``: the members' angles permuted within each family first (drawn from this generator): the map
    of the null in which a layer's kernels bear no relation to its source families' orientations.
    """
    angles = torch.zeros(channels, dtype=torch.float64)
    groups = torch.full((channels,), -1, dtype=torch.long)
    periods = []
    for g, fam in enumerate(source_families):
        if fam.kind != "rotation":
            raise ValueError(f"source_families must be rotation families, got a {fam.kind!r} family")
        for unit in fam.members:
            if not 0 <= unit < channels:
                raise IndexError(f"source family member {unit} is outside the source's {channels} channels")
            angles[unit], groups[unit] = fam.values[unit], g
        if shuffle is not None:
            members = torch.tensor(list(fam.members), dtype=torch.long)
            angles[members] = angles[members][torch.randperm(len(members), generator=shuffle)]
        periods.append(float(fam.period or 360.0))
    periods_t = torch.tensor(periods, dtype=torch.float64)
    cache: dict[float, torch.Tensor] = {}

    def gather(angle: float) -> torch.Tensor:
        key = round(float(angle), 6)
        if key not in cache:
            cache[key] = T.channel_gather(angles, groups, periods_t, key).to(like.device)
        return cache[key]

    return gather
