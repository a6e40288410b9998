"""Tuning curves: how units respond to a stimulus family over its parameters (Curve Detectors, Fig. 4).

A unit is a channel of a named layer, read at the centre position of the feature map (the stimuli are
centred on that position's receptive field) or as the maximum over all positions. Responses are
divided by the standard deviation of the unit's response to a baseline (uniform noise images by
default, or dataset images you pass), so a response of 5 means "five baseline standard deviations".

    curves = tuning_curves(model, "mixed3b", units, stimuli.curves,
                           {"orientation": range(0, 360, 5), "radius": [8, 12, 16]})
    curves.preferred_orientation()      # [U] degrees
    find_curve_detectors(model, "mixed3b")   # units, preferred orientations, curve-vs-line scores
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision import stimuli
from circuits_vision.analysis._inputs import for_model
from circuits_vision.hooks import (
    as_images,
    check_channel,
    eval_mode,
    layer_shape,
    model_device,
    model_input_size,
    run_with_cache,
)
from circuits_vision.results import Result

__all__ = [
    "CurveDetector",
    "CurveDetectorSearch",
    "TuningCurves",
    "find_curve_detectors",
    "noise_baseline",
    "receptive_field_center",
    "tuning_curves",
    "unit_responses",
]

Positions = str  # "center" or "max"


def _positions(position: Positions) -> Positions:
    if position not in ("center", "max"):
        raise ValueError(f"position must be 'center' (centre unit) or 'max' (max over positions), got {position!r}")
    return position


def _units(model: nn.Module, layer: str, units: Iterable[int] | int | None, size: int) -> list[int]:
    channels = layer_shape(model, layer, size)[0]
    if units is None:
        return list(range(channels))
    units = [int(units)] if isinstance(units, int) else [int(u) for u in units]
    if not units:
        raise ValueError("units is empty: pass channel indices, or None for every channel")
    for unit in units:
        check_channel(model, layer, unit)
    return units


@torch.no_grad()
def unit_responses(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    units: Sequence[int],
    *,
    position: Positions = "center",
    batch_size: int = 128,
) -> torch.Tensor:
    """Responses ``[N, U]`` of channels ``units`` of ``layer`` to ``images`` ``[N, 3, H, W]`` in [0, 1]
    (a tensor or a NumPy array; other ranges, such as 0-255, are refused).

    ``position="center"`` reads the centre of the feature map (index H//2, W//2); ``"max"`` the
    maximum over positions. The forward stops at ``layer``. Images are cast to the model's device and
    dtype (a ``model.double()`` runs in float64); responses are float32.
    """
    _positions(position)
    images = as_images(model, images)
    index = torch.as_tensor(list(units), dtype=torch.long)
    out = []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            act = run_with_cache(model, for_model(model, images[start : start + batch_size]), [layer])[layer]
            if act.dim() != 4:
                raise ValueError(f"layer {layer!r} gives a {act.dim()}-d output; tuning needs [N, C, H, W] maps")
            act = act[:, index.to(act.device)]
            if position == "center":
                out.append(act[:, :, act.shape[2] // 2, act.shape[3] // 2])
            else:
                out.append(act.amax(dim=(2, 3)))
    return torch.cat(out).float()


def receptive_field_center(model: nn.Module, layer: str, *, size: int | None = None) -> tuple[float, float]:
    """Where in the image the centre position of ``layer`` looks: (x, y) pixels from the image centre, y up.

    The centroid of ``|d(sum of channels at the centre position) / d(image)|`` summed over a few
    uniform-noise images (noise rather than a flat image, so ReLU units are active somewhere).
    Stimuli drawn at this offset are centred on the unit ``unit_responses(position="center")`` reads.
    """
    size = size or model_input_size(model)
    noise = torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    image = for_model(model, noise).requires_grad_(True)
    with torch.enable_grad(), eval_mode(model):
        act = run_with_cache(model, image, [layer])[layer]
        act[:, :, act.shape[2] // 2, act.shape[3] // 2].sum().backward()
    weight = image.grad.float().abs().sum(dim=(0, 1))
    if weight.sum() == 0:
        return (0.0, 0.0)
    weight = weight / weight.sum()
    coords = torch.arange(size, dtype=weight.dtype, device=weight.device) - (size - 1) / 2
    x = float((weight.sum(0) * coords).sum())
    y = float(-(weight.sum(1) * coords).sum())
    return (x, y)


@torch.no_grad()
def noise_baseline(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    *,
    images: torch.Tensor | None = None,
    n: int = 64,
    size: int | None = None,
    position: Positions = "center",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``([U], [U])`` of each unit's response to baseline images.

    ``images`` (e.g. dataset images) are used when given; otherwise ``n`` uniform-noise images of
    ``size`` px drawn from ``generator`` (seed 0 when omitted). A unit silent on every baseline image
    gets std 1 (its responses then stay in raw units) rather than a division by zero.
    """
    if images is None:
        size = size or model_input_size(model)
        generator = generator or torch.Generator().manual_seed(0)
        images = torch.rand(n, 3, size, size, generator=generator).to(model_device(model))
    r = unit_responses(model, layer, images, units, position=position)
    std = r.std(dim=0) if r.shape[0] > 1 else torch.zeros(r.shape[1])
    return r.mean(dim=0), torch.where(std > 1e-8, std, torch.ones_like(std))


@dataclass(repr=False)
class TuningCurves(Result):
    """Responses of units to a stimulus grid.

    Attributes:
        layer, units: which channels.
        axes: the grid's parameter axes, ``{name: values [K_i]}`` in grid order (one is ``orientation``).
        responses: ``[U, K_1, ..., K_d]`` responses in baseline standard deviations.
        baseline_mean, baseline_std: ``[U]`` raw baseline statistics (responses = raw / baseline_std).
        period: 360 for oriented shapes with a direction (curves, edges), 180 for lines.
    """

    layer: str
    units: list[int]
    axes: dict[str, torch.Tensor]
    responses: torch.Tensor
    baseline_mean: torch.Tensor
    baseline_std: torch.Tensor
    period: float = 360.0

    def table(self) -> list[dict]:
        """One row per unit: its largest response (baseline SDs) and, with an orientation axis, its
        preferred orientation and selectivity index."""
        peaks = self.responses.flatten(1).amax(1).tolist()
        rows = [{"unit": u, "max_response": p} for u, p in zip(self.units, peaks)]
        if "orientation" in self.axes:
            for row, o, s in zip(rows, self.preferred_orientation().tolist(), self.selectivity_index().tolist()):
                row.update(preferred_orientation=o, selectivity_index=s)
        return rows

    def subset(self, units: Iterable[int]) -> TuningCurves:
        """The same curves restricted to ``units`` (channel ids, in the order given)."""
        units = list(units)
        missing = [u for u in units if u not in self.units]
        if missing:
            raise KeyError(f"units {missing} are not in these tuning curves (units: {self.units})")
        rows = torch.tensor([self.units.index(u) for u in units], dtype=torch.long)
        return TuningCurves(
            self.layer,
            units,
            self.axes,
            self.responses[rows],
            self.baseline_mean[rows],
            self.baseline_std[rows],
            self.period,
        )

    def _orientation_axis(self) -> int:
        if "orientation" not in self.axes:
            raise ValueError(f"these tuning curves have no 'orientation' axis (axes: {list(self.axes)})")
        return list(self.axes).index("orientation")

    @property
    def orientations(self) -> torch.Tensor:
        return self.axes["orientation"]

    def orientation_curve(self) -> torch.Tensor:
        """``[U, K_orientation]``: responses averaged over every other parameter."""
        axis = self._orientation_axis() + 1
        moved = self.responses.movedim(axis, 1)
        return moved.reshape(moved.shape[0], moved.shape[1], -1).mean(dim=2)

    def preferred_orientation(self, method: str = "argmax") -> torch.Tensor:
        """``[U]`` preferred orientation in degrees [0, period) of the averaged curve.

        ``"argmax"`` (as the Curve Detectors figures) or ``"circular_mean"`` (the response-weighted
        circular mean of the positive part).
        """
        curve = self.orientation_curve()
        if method == "argmax":
            return self.orientations[curve.argmax(dim=1)] % self.period
        if method == "circular_mean":
            angle = self.orientations * (2 * math.pi / self.period)
            weights = curve.clamp_min(0)
            mean = torch.atan2((weights * angle.sin()).sum(1), (weights * angle.cos()).sum(1))
            return (mean * self.period / (2 * math.pi)) % self.period
        raise ValueError(f"method must be 'argmax' or 'circular_mean', got {method!r}")

    def selectivity_index(self) -> torch.Tensor:
        """``[U]`` orientation selectivity index in [0, 1]: ``|sum r e^{i 2 pi theta / period}| / sum r``
        with ``r`` the averaged curve minus its minimum (the response every orientation gets is no
        selectivity); 0 = untuned, 1 = responds to one orientation only."""
        curve = self.orientation_curve()
        curve = curve - curve.amin(1, keepdim=True)
        angle = self.orientations * (2 * math.pi / self.period)
        vector = torch.hypot((curve * angle.sin()).sum(1), (curve * angle.cos()).sum(1))
        return vector / curve.sum(1).clamp_min(1e-12)

    def tuning_width(self) -> torch.Tensor:
        """``[U]`` full width (degrees) at half height of the averaged curve's peak.

        Half height is half way between the curve's minimum and maximum; the two crossings around the
        peak are interpolated linearly between samples. Assumes evenly spaced orientations over a period.
        """
        curve = self.orientation_curve()
        step = self.period / curve.shape[1]
        half = (curve.amax(1) + curve.amin(1)) / 2
        peak = curve.argmax(1)
        widths = []
        for u in range(curve.shape[0]):
            rolled = curve[u].roll(-int(peak[u]))  # peak at index 0
            if bool((rolled >= half[u]).all()):
                widths.append(float(self.period))
                continue
            sides = 0.0
            for side in (rolled, torch.cat([rolled[:1], rolled[1:].flip(0)])):  # after / before the peak
                below = int((side < half[u]).int().argmax())  # first sample under half height
                above_value, below_value = float(side[below - 1]), float(side[below])
                sides += below - 1 + (above_value - float(half[u])) / (above_value - below_value)
            widths.append(step * sides)
        return torch.tensor(widths)

    def peak_response(self) -> torch.Tensor:
        """``[U]`` maximum of the averaged orientation curve (baseline standard deviations)."""
        return self.orientation_curve().amax(1)


@torch.no_grad()
def tuning_curves(
    model: nn.Module,
    layer: str,
    units: Iterable[int] | int | None,
    family: Callable[..., torch.Tensor],
    axes: Mapping[str, Iterable[float] | torch.Tensor],
    *,
    fixed: Mapping[str, object] | None = None,
    position: Positions = "center",
    size: int | None = None,
    center_on_unit: bool = True,
    baseline: tuple[torch.Tensor, torch.Tensor] | torch.Tensor | None = None,
    period: float = 360.0,
    batch_size: int = 128,
) -> TuningCurves:
    """Responses of ``units`` of ``layer`` to ``family(**grid point, **fixed, size=, device=)`` over ``axes``.

    Args:
        family: a stimulus function such as ``stimuli.curves`` (any callable taking the axes as keyword
            arguments plus ``size``, ``device`` and, with ``center_on_unit``, ``center``).
        axes: parameter axes, e.g. ``{"orientation": range(0, 360, 5), "radius": [8, 12, 16]}``.
        fixed: other keyword arguments passed to every call (thickness, colours, ...).
        center_on_unit: draw stimuli at :func:`receptive_field_center` (with ``position="center"``).
        baseline: ``(mean [U], std [U])``, or baseline images ``[N, 3, H, W]``; default uniform noise.
    """
    _positions(position)
    size = size or model_input_size(model)
    units = _units(model, layer, units, size)
    device = model_device(model)
    params, shape = stimuli.parameter_grid(
        **{name: list(values) if not isinstance(values, torch.Tensor) else values for name, values in axes.items()}
    )
    kwargs = dict(fixed or {})
    if center_on_unit and position == "center" and "center" not in kwargs:
        kwargs["center"] = receptive_field_center(model, layer, size=size)
    draw = functools.partial(family, size=size, device=device, **kwargs)
    if baseline is None or isinstance(baseline, torch.Tensor):
        mean, std = noise_baseline(model, layer, units, images=baseline, size=size, position=position)
    else:
        mean, std = baseline
    total = math.prod(shape)
    raw = []
    for start in range(0, total, batch_size):
        chunk = {name: value[start : start + batch_size].to(device) for name, value in params.items()}
        raw.append(unit_responses(model, layer, draw(**chunk), units, position=position, batch_size=batch_size))
    responses = (torch.cat(raw) / std.to(raw[0].device)).T.reshape(len(units), *shape).cpu()
    return TuningCurves(
        layer=layer,
        units=units,
        axes={
            name: torch.as_tensor(list(values), dtype=torch.float32)
            if not isinstance(values, torch.Tensor)
            else values.float().cpu()
            for name, values in axes.items()
        },
        responses=responses,
        baseline_mean=mean.cpu(),
        baseline_std=std.cpu(),
        period=period,
    )


@dataclass(frozen=True)
class CurveDetector:
    """A unit that :func:`find_curve_detectors` classified as a curve detector."""

    unit: int
    preferred_orientation: float
    """Degrees the convex side of the preferred curve faces (``stimuli.curves`` convention)."""
    peak_response: float
    """Mean response over radii at the preferred orientation, in baseline standard deviations."""
    selectivity_index: float
    curve_vs_line: float
    """``(best curve - best line) / (best curve + best line)`` of the positive responses, in [-1, 1]."""
    tuning_width: float
    radius_consistency: float
    """Fraction of radii whose own preferred orientation is within 45 degrees of the overall one."""


@dataclass(repr=False)
class CurveDetectorSearch(Result):
    """Result of :func:`find_curve_detectors`: the detectors and the tuning curves they came from."""

    detectors: list[CurveDetector]
    curves: TuningCurves
    lines: TuningCurves

    @property
    def units(self) -> list[int]:
        return [d.unit for d in self.detectors]

    def table(self) -> list[dict]:
        """One row per detector: its :class:`CurveDetector` fields."""
        return [dataclasses.asdict(d) for d in self.detectors]

    def __repr__(self) -> str:
        return f"CurveDetectorSearch(layer={self.curves.layer!r}, detectors={self.units}, searched={len(self.curves.units)})"

    def sectors(self, width: float = 45.0) -> set[int]:
        """Distinct ``width``-degree sectors (``floor(orientation / width)``) the detectors' preferences cover."""
        return {int(d.preferred_orientation // width) % int(round(360 / width)) for d in self.detectors}


def find_curve_detectors(
    model: nn.Module,
    layer: str,
    *,
    units: Iterable[int] | None = None,
    orientations: Sequence[float] = tuple(range(0, 360, 5)),
    radii: Sequence[float] | None = None,
    angular_width: float = 90.0,
    thickness: float | None = None,
    size: int | None = None,
    min_response: float = 2.0,
    min_selectivity: float = 0.15,
    min_curve_vs_line: float = 0.2,
    min_radius_consistency: float = 0.5,
    position: Positions = "center",
    batch_size: int = 128,
) -> CurveDetectorSearch:
    """Units of ``layer`` that respond to curves, prefer one orientation, and prefer curves to lines.

    Draws black curves on white (``stimuli.curves``) at every orientation x radius and lines at every
    orientation (0..180) with a length equal to the curves' mean arc length; a unit qualifies when its
    orientation curve (averaged over radii) peaks at >= ``min_response`` baseline std, its orientation
    selectivity index is >= ``min_selectivity``, its curve-vs-line score is >= ``min_curve_vs_line`` and
    at least ``min_radius_consistency`` of the radii prefer an orientation within 45 degrees of the
    overall preference (a curve detector keeps its orientation across curvatures).
    Radii and thickness default to fractions of the input size (1/8..1/3 and 1/32).
    """
    size = size or model_input_size(model)
    radii = list(radii) if radii is not None else [size / 8, size / 6, size / 4.5, size / 3.5]
    thickness = thickness if thickness is not None else max(1.5, size / 32)
    units = _units(model, layer, units, size)
    # One noise baseline for both families, so their responses are on the same scale.
    mean, std = noise_baseline(model, layer, units, size=size, position=position)
    common = dict(position=position, size=size, baseline=(mean, std), batch_size=batch_size)
    curves = tuning_curves(
        model,
        layer,
        units,
        stimuli.curves,
        {"orientation": orientations, "radius": radii},
        fixed={"angular_width": angular_width, "thickness": thickness},
        period=360.0,
        **common,
    )
    line_length = sum(radii) / len(radii) * math.radians(angular_width)
    lines = tuning_curves(
        model,
        layer,
        units,
        stimuli.lines,
        {"orientation": [o for o in orientations if o < 180]},
        fixed={"length": line_length, "thickness": thickness},
        period=180.0,
        **common,
    )
    preferred = curves.preferred_orientation()
    peak = curves.peak_response()
    osi = curves.selectivity_index()
    width = curves.tuning_width()
    best_curve = curves.responses.reshape(len(units), -1).amax(1).clamp_min(0)
    best_line = lines.responses.reshape(len(units), -1).amax(1).clamp_min(0)
    curve_vs_line = (best_curve - best_line) / (best_curve + best_line).clamp_min(1e-12)
    per_radius = curves.orientations[curves.responses.argmax(dim=1)]  # [U, R]
    off = (per_radius - preferred[:, None]) % 360
    consistency = (torch.minimum(off, 360 - off) <= 45).float().mean(1)
    detectors = [
        CurveDetector(
            unit,
            float(preferred[i]),
            float(peak[i]),
            float(osi[i]),
            float(curve_vs_line[i]),
            float(width[i]),
            float(consistency[i]),
        )
        for i, unit in enumerate(units)
        if peak[i] >= min_response
        and osi[i] >= min_selectivity
        and curve_vs_line[i] >= min_curve_vs_line
        and consistency[i] >= min_radius_consistency
    ]
    detectors.sort(key=lambda d: d.preferred_orientation)
    return CurveDetectorSearch(detectors, curves, lines)
