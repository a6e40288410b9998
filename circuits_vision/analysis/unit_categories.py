"""Unit categories derived from stimulus responses: colour vs black-and-white, oriented vs not.

A unit's *colour drive* is its largest response increase (over a uniform mid-grey image) to
isoluminant colour stimuli, and its *black-and-white drive* the same for grey-level stimuli of the same
RGB contrast. Both sets hold uniform fields and sinusoidal gratings (4 orientations, 2 frequencies,
4 phases); the colour set repeats them at 8 hues around the grey axis. Responses are read at the
centre position of the layer. Categories partition the layer:

- ``"color"``: colour drive > ``ratio`` x black-and-white drive,
- ``"black_and_white"``: black-and-white drive > ``ratio`` x colour drive,
- ``"both"``: responds to both,
- ``"unresponsive"``: neither drive exceeds ``floor`` x the layer's largest drive.

:func:`orientation_categories` splits units by how much their grating response depends on the
gratings' orientation (8 orientations; best phase, frequency and colour per orientation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from circuits_vision.analysis._inputs import for_model
from circuits_vision.hooks import eval_mode, layer_shape, model_device, model_input_size, run_with_cache
from circuits_vision.stimuli import gratings, solid

__all__ = ["color_categories", "color_drives", "orientation_categories", "orientation_selectivity", "probe_stimuli"]

_HUES = [45.0 * i for i in range(8)]
_ORIENTATIONS = [45.0 * i for i in range(4)]
_FREQUENCIES = [1 / 12, 1 / 5]
_PHASES = [0.0, 90.0, 180.0, 270.0]
_AMPLITUDE = 0.3


def _hue_vector(hue_deg: float) -> torch.Tensor:
    """Unit RGB vector orthogonal to grey, ``hue_deg`` around the grey axis from red (120 = green)."""
    a = math.radians(hue_deg)
    red = torch.tensor([2.0, -1.0, -1.0]) / math.sqrt(6)
    red_to_green = torch.tensor([0.0, 1.0, -1.0]) / math.sqrt(2)
    return red * math.cos(a) + red_to_green * math.sin(a)


def probe_stimuli(size: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(colour [Nc, 3, size, size], grey [Ng, 3, size, size])`` probe images in [0, 1].

    Each colour image's pixels lie on ``0.5 + t * hue_vector`` (t in [-0.3, 0.3]); each grey image's on
    ``0.5 + t * (1, 1, 1) / sqrt(3)``, so both sets have the same RGB contrast.
    """
    grey_axis = torch.ones(3) / math.sqrt(3)
    directions = {"color": [_hue_vector(h) for h in _HUES], "grey": [grey_axis, -grey_axis]}
    sets = {}
    for name, vectors in directions.items():
        images = []
        for vector in vectors:
            images.append(solid(0.5 + _AMPLITUDE * vector, size=size, device=device))
            if name == "grey" and vector is not grey_axis:
                continue  # gratings at all phases already contain both grey polarities
            params = [(o, f, p) for o in _ORIENTATIONS for f in _FREQUENCIES for p in _PHASES]
            orientation, frequency, phase = (torch.tensor(column) for column in zip(*params))
            images.append(
                gratings(
                    orientation,
                    frequency,
                    phase=phase,
                    color=0.5 + _AMPLITUDE * vector,
                    background=0.5 - _AMPLITUDE * vector,
                    size=size,
                    device=device,
                )
            )
        sets[name] = torch.cat(images)
    return sets["color"], sets["grey"]


def _centre_responses(model: nn.Module, layer: str, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``[N, C]`` activations of ``layer`` at its centre position."""
    rows = []
    with torch.no_grad(), eval_mode(model):
        for chunk in images.split(batch_size):
            out = run_with_cache(model, for_model(model, chunk), [layer])[layer]
            rows.append(out[:, :, out.shape[2] // 2, out.shape[3] // 2].float())
    return torch.cat(rows)


def _probe_size(model: nn.Module, size: int | None) -> int:
    """``size`` or ``min(input_size, 96)``, made odd so the layer's centre position is the stimulus centre."""
    size = int(size or min(int(model_input_size(model)), 96))
    return size if size % 2 else size + 1


def color_drives(
    model: nn.Module, layer: str, *, size: int | None = None, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(colour_drive [C], bw_drive [C])``: the largest response increase over mid grey per stimulus set.

    ``size`` defaults to ``min(model_input_size(model), 96)`` (enough for early layers'
    receptive fields; pass a larger size for deep layers); even sizes are rounded up to odd.
    """
    size = _probe_size(model, size)
    layer_shape(model, layer, size)  # unknown layer -> UnknownLayerError listing close names
    device = model_device(model)
    color, grey = probe_stimuli(size, device)
    baseline = _centre_responses(model, layer, solid((0.5, 0.5, 0.5), size=size, device=device), 1)[0]
    color_drive = (_centre_responses(model, layer, color, batch_size) - baseline).amax(0).clamp(min=0)
    bw_drive = (_centre_responses(model, layer, grey, batch_size) - baseline).amax(0).clamp(min=0)
    return color_drive.cpu(), bw_drive.cpu()


def color_categories(
    model: nn.Module, layer: str, *, ratio: float = 2.0, floor: float = 1e-3, size: int | None = None
) -> dict[str, list[int]]:
    """``{"color", "black_and_white", "both", "unresponsive": [units]}``, a partition of ``layer``'s channels."""
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1 (how many times stronger one drive must be), got {ratio}")
    color, bw = color_drives(model, layer, size=size)
    scale = float(torch.maximum(color, bw).max())
    categories: dict[str, list[int]] = {"color": [], "black_and_white": [], "both": [], "unresponsive": []}
    for unit, (c, b) in enumerate(zip(color.tolist(), bw.tolist())):
        if max(c, b) <= floor * scale:
            categories["unresponsive"].append(unit)
        elif c > ratio * b:
            categories["color"].append(unit)
        elif b > ratio * c:
            categories["black_and_white"].append(unit)
        else:
            categories["both"].append(unit)
    return categories


def orientation_selectivity(
    model: nn.Module, layer: str, *, size: int | None = None, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(selectivity [C], drive [C])`` from responses ``r`` to gratings at 8 orientations ``t``.

    ``selectivity = |sum r(t) exp(2i t)| / sum r(t)`` in [0, 1] (1: one orientation only; a ``cos^2``
    tuning gives 0.5). ``r(t)`` is the largest response increase over mid grey across phases, two
    frequencies and the colour directions (grey and 8 hues, so colour units are measured too).
    """
    size = _probe_size(model, size)
    layer_shape(model, layer, size)
    device = model_device(model)
    grey_axis = torch.ones(3) / math.sqrt(3)
    directions = [grey_axis] + [_hue_vector(h) for h in _HUES]
    orientations = [22.5 * i for i in range(8)]
    params = [(o, f, p, d) for o in orientations for f in _FREQUENCIES for p in _PHASES for d in range(len(directions))]
    orientation, frequency, phase, direction = (torch.tensor(column) for column in zip(*params))
    vectors = torch.stack(directions)[direction]
    images = gratings(
        orientation,
        frequency,
        phase=phase,
        color=0.5 + _AMPLITUDE * vectors,
        background=0.5 - _AMPLITUDE * vectors,
        size=size,
        device=device,
    )
    baseline = _centre_responses(model, layer, solid((0.5, 0.5, 0.5), size=size, device=device), 1)[0]
    responses = (_centre_responses(model, layer, images, batch_size) - baseline).clamp(min=0).cpu()
    # [orientation, frequency, phase x direction, C] -> the best phase, colour and frequency: [8, C]
    per_orientation = responses.view(len(orientations), len(_FREQUENCIES), -1, responses.shape[1]).amax(dim=(1, 2))
    # Vector strength of the doubled angles: 0 for any tuning with 90-degree symmetry (isotropic units,
    # and the square windows of max pools, which alone make responses depend on orientation).
    doubled = torch.deg2rad(2 * torch.tensor(orientations)).view(-1, 1)
    vector = torch.stack([(per_orientation * doubled.cos()).sum(0), (per_orientation * doubled.sin()).sum(0)])
    total = per_orientation.sum(0)
    selectivity = torch.where(total > 0, vector.norm(dim=0) / total.clamp(min=1e-30), torch.zeros_like(total))
    high = per_orientation.amax(0)
    return selectivity, high


def orientation_categories(
    model: nn.Module, layer: str, *, threshold: float = 0.2, floor: float = 1e-3, size: int | None = None
) -> dict[str, list[int]]:
    """``{"oriented", "unoriented", "unresponsive": [units]}``: selectivity >= ``threshold`` or not."""
    selectivity, drive = orientation_selectivity(model, layer, size=size)
    scale = float(drive.max())
    categories: dict[str, list[int]] = {"oriented": [], "unoriented": [], "unresponsive": []}
    for unit, (s, d) in enumerate(zip(selectivity.tolist(), drive.tolist())):
        key = "unresponsive" if d <= floor * scale else "oriented" if s >= threshold else "unoriented"
        categories[key].append(unit)
    return categories
