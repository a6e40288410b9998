"""Planted models: small conv nets with hand-set weights and their ground truth attached.

Every factory returns a :class:`PlantedModel` ``(model, truth)``. The model follows the package's
conventions (RGB input in [0, 1], ``nn.ReLU`` modules, explicit ``F.pad`` before ``padding=0`` convs,
lucid-style flat layer names ``<layer>_pre_relu_conv`` -> ``<layer>``, ``input_size``) and carries the
same record as ``model.truth``, so ``circuits_vision.models.load("planted_curves")`` keeps it.

Geometry: angles are degrees counter-clockwise from image right with y pointing up, as in
:mod:`circuits_vision.stimuli`; a *curve at orientation a* is an arc whose convex side faces ``a``.
Hue angles rotate the colour vector around the grey axis ``(1, 1, 1)``: 0 = red, 120 = green, 240 = blue.

``truth`` is a typed record (:mod:`circuits_vision.models.truth`) that also reads like these nested
dicts (``truth.curves.units`` is ``truth["curves"]["units"]``; unit = channel index of the named layer):

- :func:`curve_circuit`::

    {"edges":  {"layer": "edges", "units": [...], "orientation_deg": {u: 0..180}, "polarity": {u: "bright"|"dark"}},
     "curves": {"layer": "curves", "units": [...], "orientation_deg": {u: 0..360}, "radius_px": r},
     "circuit": {curve_unit: {"excite": [edge units along the tangent at the arc's apex],
                              "inhibit": [edge units orthogonal to it]}},
     "rotation_step_deg": 360 / n, "edge_shift_per_step": 2}

  The curve family is ONE analytic template evaluated at rotated coordinates (exact rotation, no
  resampling): ``W_a(p, theta) = W_0(R(-a) p, theta - a)``; rotating a curve by one step moves its
  edge inputs by ``edge_shift_per_step`` orientation channels.
- :func:`hue_family`: ``{"hues": {"layer", "units", "hue_deg": {u: deg}}}``.
- :func:`reflection_pairs`: ``{"lines" | "corners": {"layer", "units", "pairs": [(a, b)], "self_symmetric": [u]}}``;
  unit ``b`` of a pair is unit ``a`` mirrored left/right (``x -> -x``).
- :func:`branch_block`: ``{"branches": {name: (start, stop)}, "categories": {"color": [...],
  "black_and_white": [...]}, "branch_of_category": {"color": "5x5" | None}, "layer": "block",
  "orientation": {"oriented": [edge detectors], "unoriented": [...]},
  "downstream": {"layer": "head", "fed_by": {u: category}}}``.
- :func:`union_unit`: curve_circuit's truth plus ``{"union": {"layer": "union", "unit": 0,
  "cases_deg": [0, 180], "not_deg": [90, 270], "case_units": [...]}}``.
- :func:`random_control`: the curve_circuit architecture with random weights; every family is empty.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from circuits_vision.models.layers import Concat, pad_same
from circuits_vision.models.truth import (
    BranchBlockTruth,
    CircuitInputs,
    CurveCircuitTruth,
    CurveLayer,
    DownstreamTruth,
    EdgeLayer,
    HueFamilyTruth,
    HueLayer,
    MirrorLayer,
    ReflectionTruth,
    UnionTruth,
)

PlantedTruth = CurveCircuitTruth | HueFamilyTruth | ReflectionTruth | BranchBlockTruth

__all__ = [
    "MODELS",
    "PLANTED",
    "PlantedModel",
    "branch_block",
    "chroma_vector",
    "curve_circuit",
    "hue_family",
    "random_control",
    "reflection_pairs",
    "union_unit",
]


@dataclass
class PlantedModel:
    """A hand-built model and the ground truth its weights were built to have (see the module doc)."""

    model: nn.Module
    truth: PlantedTruth


# --------------------------------------------------------------------------------------------------
# Kernels: analytic functions sampled on a pixel grid (y up, origin at the centre pixel).


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x, y`` of shape [size, size] in pixels, float64, y pointing up."""
    c = (size - 1) / 2
    idx = torch.arange(size, dtype=torch.float64)
    return (idx - c).view(1, size).expand(size, size), (c - idx).view(size, 1).expand(size, size)


def _rotate(x: torch.Tensor, y: torch.Tensor, angle_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates rotated by ``angle_deg`` counter-clockwise."""
    a = math.radians(angle_deg)
    return x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)


def _line_kernel(
    size: int, orientation_deg: float, sigma_across: float = 1.0, sigma_along: float = 1.6
) -> torch.Tensor:
    """Ridge detector for a bright line along ``orientation_deg``: [size, size], zero sum.

    Across the line: a Mexican hat (positive on the line, negative beside it); along it: a Gaussian.
    """
    x, y = _grid(size)
    u, v = _rotate(x, y, -orientation_deg)  # u along the line, v across it
    across = (1 - v**2 / sigma_across**2) * torch.exp(-(v**2) / (2 * sigma_across**2))
    kernel = across * torch.exp(-(u**2) / (2 * sigma_along**2))
    return kernel - kernel.mean()


def _edge_kernel(size: int, normal_deg: float, sigma: float = 1.0) -> torch.Tensor:
    """Step-edge detector (derivative of a Gaussian): positive where the image gets brighter along ``normal_deg``."""
    x, y = _grid(size)
    u, v = _rotate(x, y, -normal_deg)  # u along the normal
    kernel = u * torch.exp(-(u**2 + v**2) / (2 * sigma**2))
    return kernel / kernel.abs().sum()


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x, y = _grid(size)
    g = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
    return g / g.sum()


def _arc_distance_and_tangent(x, y, center_x: float, radius: float, half_span: float, facing_deg: float):
    """Distance to an arc and the tangent orientation (rad) at its nearest point.

    The arc lies on the circle of ``radius`` around ``(center_x, 0)``, spans ``+-half_span`` (rad) around
    ``facing_deg`` as seen from that centre.
    """
    facing = math.radians(facing_deg)
    angle = torch.atan2(y, x - center_x)
    offset = torch.remainder(angle - facing + math.pi, 2 * math.pi) - math.pi
    nearest = facing + offset.clamp(-half_span, half_span)
    px, py = center_x + radius * torch.cos(nearest), radius * torch.sin(nearest)
    return torch.hypot(x - px, y - py), nearest + math.pi / 2


def _curve_template(x, y, theta, radius: float, span_deg: float, width: float) -> torch.Tensor:
    """Weight of the edge channel of orientation ``theta`` (rad, period pi) at ``(x, y)`` for a curve facing 0 deg.

    Lines tangent to the arc excite (``cos 2(theta - tangent)`` > 0), orthogonal ones inhibit, and the far
    parts of the opposite curve (facing 180 deg) inhibit, so the unit prefers one facing direction.
    """
    half = math.radians(span_deg) / 2
    d, tangent = _arc_distance_and_tangent(x, y, -radius, radius, half, 0.0)
    own = torch.exp(-(d**2) / (2 * width**2)) * torch.cos(2 * (theta - tangent))
    d_opp, tangent_opp = _arc_distance_and_tangent(x, y, radius, radius, half, 180.0)
    away_from_apex = 1 - torch.exp(-(x**2 + y**2) / (2 * (radius / 2) ** 2))
    opposite = torch.exp(-(d_opp**2) / (2 * width**2)) * torch.cos(2 * (theta - tangent_opp)) * away_from_apex
    return own - 0.5 * opposite


def _curve_family_weights(n_orientations: int, size: int, radius: float, span_deg: float) -> torch.Tensor:
    """[n_orientations, 2 * n_orientations, size, size] weights from the edge layer to the curve layer.

    Curve ``k`` is the template rotated by ``k * 360 / n``, evaluated exactly at the rotated coordinates.
    Edge channels ``i`` and ``n + i`` (bright and dark lines) at orientation ``i * 180 / n`` share weights.
    """
    x, y = _grid(size)
    weights = torch.zeros(n_orientations, 2 * n_orientations, size, size, dtype=torch.float64)
    for k in range(n_orientations):
        alpha = k * 360.0 / n_orientations
        xr, yr = _rotate(x, y, -alpha)
        for i in range(n_orientations):
            theta = math.radians(i * 180.0 / n_orientations - alpha)
            w = _curve_template(xr, yr, theta, radius, span_deg, width=0.9)
            weights[k, i] = w
            weights[k, n_orientations + i] = w
    return weights / weights[0].abs().sum() * 8.0


def chroma_vector(hue_deg: float) -> torch.Tensor:
    """Unit RGB vector orthogonal to grey, rotated ``hue_deg`` around the grey axis from red: [3], float64."""
    red = torch.tensor([2.0, -1.0, -1.0], dtype=torch.float64) / math.sqrt(6)
    red_to_green = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64) / math.sqrt(2)  # grey x red
    a = math.radians(hue_deg)
    return red * math.cos(a) + red_to_green * math.sin(a)


def _luminance() -> torch.Tensor:
    """Equal RGB weights summing to 1 (brightness along the grey axis): [3], float64."""
    return torch.full((3,), 1.0 / 3.0, dtype=torch.float64)


def _conv(in_channels: int, out_channels: int, kernel_size: int, weight: torch.Tensor, bias=None) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=0, bias=True)
    with torch.no_grad():
        conv.weight.copy_(weight.to(conv.weight.dtype))
        conv.bias.copy_(torch.zeros(out_channels) if bias is None else torch.as_tensor(bias, dtype=torch.float32))
    conv.requires_grad_(False)
    return conv


# --------------------------------------------------------------------------------------------------
# Networks


class ConvReLUStack(nn.Module):
    """A chain of ``F.pad`` ("SAME") -> ``nn.Conv2d`` -> ``nn.ReLU`` layers named ``<name>_pre_relu_conv`` / ``<name>``.

    ``[N, 3, H, W]`` in [0, 1] -> the last layer's ``[N, C, H, W]``. Inputs are centred on mid grey (0.5)
    first, so a uniform grey image gives every unit exactly its bias.
    """

    def __init__(self, layers: list[tuple[str, nn.Conv2d]], input_size: int):
        super().__init__()
        self.input_size = input_size
        self.input_channels = layers[0][1].in_channels
        self.layer_order = [name for name, _ in layers]
        for name, conv in layers:
            setattr(self, f"{name}_pre_relu_conv", conv)
            setattr(self, name, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5
        for name in self.layer_order:
            conv = getattr(self, f"{name}_pre_relu_conv")
            x = getattr(self, name)(conv(pad_same(x, conv.kernel_size[0], 1)))
        return x


def _edge_layer(n_orientations: int) -> tuple[nn.Conv2d, dict]:
    """Bright- and dark-line detectors at ``n`` orientations in [0, 180): units ``i`` and ``n + i``."""
    size = 7
    weight = torch.zeros(2 * n_orientations, 3, size, size, dtype=torch.float64)
    orientation, polarity = {}, {}
    for i in range(n_orientations):
        kernel = _line_kernel(size, i * 180.0 / n_orientations)
        kernel = kernel / kernel.clamp(min=0).sum()
        for sign, offset, label in ((1.0, 0, "bright"), (-1.0, n_orientations, "dark")):
            weight[i + offset] = sign * kernel[None] * _luminance()[:, None, None]
            orientation[i + offset] = i * 180.0 / n_orientations
            polarity[i + offset] = label
    edges = EdgeLayer("edges", list(range(2 * n_orientations)), orientation, polarity)
    return _conv(3, 2 * n_orientations, size, weight), edges


_CURVE_RADIUS = 5.0
_CURVE_SPAN = 120.0
_CURVE_KERNEL = 15


def curve_circuit(n_orientations: int = 8) -> PlantedModel:
    """Line detectors -> curve detectors facing ``k * 360 / n`` degrees ("Curve Circuits"' hand-written net).

    Layers: ``edges`` (``2n`` line detectors, 7x7 on luminance) and ``curves`` (``n`` curve detectors,
    15x15 on the edges, radius 5 px, 120 degree arcs). Input size 33.
    """
    if n_orientations not in (4, 8, 16):
        raise ValueError(
            f"n_orientations must be 4, 8 or 16 (rotations that map line channels onto each "
            f"other), got {n_orientations}"
        )
    edge_conv, edges = _edge_layer(n_orientations)
    curve_weight = _curve_family_weights(n_orientations, _CURVE_KERNEL, _CURVE_RADIUS, _CURVE_SPAN)
    curve_conv = _conv(2 * n_orientations, n_orientations, _CURVE_KERNEL, curve_weight)
    model = ConvReLUStack([("edges", edge_conv), ("curves", curve_conv)], input_size=33)
    step = 360.0 / n_orientations
    circuit = {}
    for k in range(n_orientations):
        tangent = (k * step + 90.0) % 180.0
        circuit[k] = CircuitInputs(
            excite=[u for u, o in edges.orientation_deg.items() if o == tangent],
            inhibit=[u for u, o in edges.orientation_deg.items() if o == (tangent + 90.0) % 180.0],
        )
    truth = CurveCircuitTruth(
        edges=edges,
        curves=CurveLayer(
            "curves", list(range(n_orientations)), {k: k * step for k in range(n_orientations)}, radius_px=_CURVE_RADIUS
        ),
        circuit=circuit,
        rotation_step_deg=step,
        edge_shift_per_step=2,
    )
    model.truth = truth
    return PlantedModel(model, truth)


def random_control(seed: int = 0, n_orientations: int = 8) -> PlantedModel:
    """:func:`curve_circuit`'s architecture with random weights (He-normal from ``torch.Generator(seed)``).

    The "nothing planted here" control: every family in ``truth`` is empty.
    """
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for name, c_in, c_out, size in (
        ("edges", 3, 2 * n_orientations, 7),
        ("curves", 2 * n_orientations, n_orientations, _CURVE_KERNEL),
    ):
        std = math.sqrt(2.0 / (c_in * size * size))
        weight = torch.randn(c_out, c_in, size, size, generator=generator, dtype=torch.float64) * std
        layers.append((name, _conv(c_in, c_out, size, weight)))
    model = ConvReLUStack(layers, input_size=33)
    truth = CurveCircuitTruth(
        edges=EdgeLayer("edges", [], {}, {}),
        curves=CurveLayer("curves", [], {}),
        circuit={},
        seed=seed,
    )
    model.truth = truth
    return PlantedModel(model, truth)


def union_unit(n_orientations: int = 8) -> PlantedModel:
    """One unit that responds to a curve facing 0 deg OR 180 deg, and not to one facing 90 or 270 deg.

    ``union = ReLU(curve_0 + curve_180 - curve_90 - curve_270)``, a 1x1 layer on top of
    :func:`curve_circuit`'s ``edges`` and ``curves``.
    """
    base = curve_circuit(n_orientations)
    quarter = n_orientations // 4
    weight = torch.zeros(1, n_orientations, 1, 1, dtype=torch.float64)
    weight[0, 0] = weight[0, 2 * quarter] = 1.0
    weight[0, quarter] = weight[0, 3 * quarter] = -1.0
    layers = [(name, getattr(base.model, f"{name}_pre_relu_conv")) for name in base.model.layer_order]
    model = ConvReLUStack([*layers, ("union", _conv(n_orientations, 1, 1, weight))], input_size=base.model.input_size)
    truth = dataclasses.replace(
        base.truth,
        union=UnionTruth("union", 0, cases_deg=[0.0, 180.0], not_deg=[90.0, 270.0], case_units=[0, 2 * quarter]),
    )
    model.truth = truth
    return PlantedModel(model, truth)


def hue_family(n_hues: int = 6) -> PlantedModel:
    """One colour-contrast template (a Gaussian blob of the colour vector) at ``n_hues`` hue rotations.

    Layer ``hues`` (5x5 on RGB). Unit ``k`` prefers hue ``k * 360 / n_hues``; grey gives exactly 0
    (the colour vectors are orthogonal to the grey axis). Input size 15.
    """
    if n_hues < 2:
        raise ValueError(f"n_hues must be >= 2, got {n_hues}")
    size = 5
    blob = _gaussian(size, 1.2) * 4.0
    hues = {k: k * 360.0 / n_hues for k in range(n_hues)}
    weight = torch.stack([chroma_vector(h)[:, None, None] * blob[None] for h in hues.values()])
    model = ConvReLUStack([("hues", _conv(3, n_hues, size, weight))], input_size=15)
    truth = HueFamilyTruth(HueLayer("hues", list(hues), hues))
    model.truth = truth
    return PlantedModel(model, truth)


def reflection_pairs() -> PlantedModel:
    """Left/right mirror pairs in two layers (Naturally Occurring Equivariance's reflection case).

    ``lines``: 12 step-edge detectors with normals at 0, 30, ..., 330 deg; mirroring ``x -> -x`` maps the
    normal ``t`` to ``180 - t``, so 90 and 270 are their own mirrors. ``corners``: two asymmetric corner
    detectors, each followed by its exact mirror (flipped kernel, input channels permuted by the line
    mirror map), and one symmetric "peak". Input size 31.
    """
    normals = [30.0 * i for i in range(12)]
    lines = torch.stack([_edge_kernel(5, t)[None] * _luminance()[:, None, None] * 3 for t in normals])
    mirror_of = [normals.index((180.0 - t) % 360.0) for t in normals]
    line_pairs = sorted({tuple(sorted((i, j))) for i, j in enumerate(mirror_of) if i != j})
    line_self = [i for i, j in enumerate(mirror_of) if i == j]

    def corner(arms_deg: list[float]) -> torch.Tensor:
        """[12, 9, 9]: each arm excites the line channel running along it, along the arm's length."""
        x, y = _grid(9)
        kernel = torch.zeros(12, 9, 9, dtype=torch.float64)
        for arm in arms_deg:
            u, v = _rotate(x, y, -arm)
            along = torch.exp(-(v**2) / 2.0) * ((u > -0.5) & (u < 4.5)).double()
            kernel[normals.index((arm + 90.0) % 360.0)] += along
        return kernel / kernel.sum()

    def mirrored(kernel: torch.Tensor) -> torch.Tensor:
        return kernel[mirror_of].flip(-1)

    corner_a, corner_b = corner([0.0, 90.0]), corner([30.0, 300.0])
    half_peak = corner([60.0])
    peak = half_peak + mirrored(half_peak)  # symmetric by construction
    corners = torch.stack([corner_a, mirrored(corner_a), corner_b, mirrored(corner_b), peak])
    model = ConvReLUStack([("lines", _conv(3, 12, 5, lines)), ("corners", _conv(12, 5, 9, corners))], input_size=31)
    truth = ReflectionTruth(
        lines=MirrorLayer("lines", list(range(12)), line_pairs, line_self, normal_deg=dict(enumerate(normals))),
        corners=MirrorLayer("corners", list(range(5)), [(0, 1), (2, 3)], [4]),
    )
    model.truth = truth
    return PlantedModel(model, truth)


# --------------------------------------------------------------------------------------------------
# An inception-style block with a planted colour branch


_BRANCH_WIDTHS = {"1x1": 16, "3x3": 24, "5x5": 12, "pool": 12}
_BRANCH_KERNELS = {"1x1": 1, "3x3": 3, "5x5": 5, "pool": 1}
_N_COLOR = 8
_N_HEAD = 8


class BranchBlock(nn.Module):
    """RGB -> four parallel branches -> ``block = Concat(1x1, 3x3, 5x5, pool)`` -> a 1x1 ``head`` layer.

    Branch layers: ``block_1x1``, ``block_3x3``, ``block_5x5`` (conv on the centred RGB input, then ReLU)
    and ``block_pool`` (3x3 max pool) -> ``block_pool_reduce`` (1x1 conv, ReLU). ``[N, 3, H, W]`` ->
    ``head`` ``[N, 8, H, W]``.
    """

    def __init__(self, convs: dict[str, nn.Conv2d], head: nn.Conv2d):
        super().__init__()
        self.input_size = 32
        self.input_channels = 3
        self.block_1x1_pre_relu_conv, self.block_1x1 = convs["1x1"], nn.ReLU()
        self.block_3x3_pre_relu_conv, self.block_3x3 = convs["3x3"], nn.ReLU()
        self.block_5x5_pre_relu_conv, self.block_5x5 = convs["5x5"], nn.ReLU()
        self.block_pool = nn.MaxPool2d(3, stride=1)
        self.block_pool_reduce_pre_relu_conv, self.block_pool_reduce = convs["pool"], nn.ReLU()
        self.block = Concat(("block_1x1", "block_3x3", "block_5x5", "block_pool_reduce"))
        self.head_pre_relu_conv, self.head = head, nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - 0.5
        b1 = self.block_1x1(self.block_1x1_pre_relu_conv(x))
        b3 = self.block_3x3(self.block_3x3_pre_relu_conv(pad_same(x, 3, 1)))
        b5 = self.block_5x5(self.block_5x5_pre_relu_conv(pad_same(x, 5, 1)))
        pooled = self.block_pool(pad_same(x, 3, 1, value=float("-inf")))
        bp = self.block_pool_reduce(self.block_pool_reduce_pre_relu_conv(pooled))
        return self.head(self.head_pre_relu_conv(self.block(b1, b3, b5, bp)))


def _branch_ranges() -> dict[str, tuple[int, int]]:
    ranges, start = {}, 0
    for name, width in _BRANCH_WIDTHS.items():
        ranges[name] = (start, start + width)
        start += width
    return ranges


def branch_block(specialized: bool = True, seed: int = 0) -> PlantedModel:
    """An inception-style block whose 8 colour units sit all in the 5x5 branch, or (control) anywhere.

    ``specialized=True``: the colour units are channels 40..47 of ``block`` (the first 8 of the 5x5
    branch). ``specialized=False``: 8 channels drawn uniformly from all 64 with ``torch.Generator(seed)``.
    Colour units: a colour vector (random hue) times a spatial blob, so grey images give exactly 0.
    Black-and-white units: luminance weights (oriented edges in 3x3/5x5, brightness or darkness in
    1x1, darkness after the pool).
    ``head`` units 0..3 sum colour units, 4..7 sum black-and-white units.
    """
    generator = torch.Generator().manual_seed(seed)
    ranges = _branch_ranges()
    width = sum(_BRANCH_WIDTHS.values())
    if specialized:
        start = ranges["5x5"][0]
        color_units = list(range(start, start + _N_COLOR))
    else:
        color_units = sorted(torch.randperm(width, generator=generator)[:_N_COLOR].tolist())
    hues = torch.rand(width, generator=generator, dtype=torch.float64) * 360.0
    normals = torch.rand(width, generator=generator, dtype=torch.float64) * 360.0

    convs, biases = {}, {}
    for name, (start, stop) in ranges.items():
        size = _BRANCH_KERNELS[name]
        weight = torch.zeros(stop - start, 3, size, size, dtype=torch.float64)
        bias = torch.zeros(stop - start)
        for unit in range(start, stop):
            if unit in color_units:
                spatial = _gaussian(size, 1.0) if size > 1 else torch.ones(1, 1, dtype=torch.float64)
                weight[unit - start] = 2.0 * chroma_vector(float(hues[unit]))[:, None, None] * spatial[None]
            elif size > 1:
                weight[unit - start] = (
                    3.0 * _edge_kernel(size, float(normals[unit]))[None] * _luminance()[:, None, None]
                )
            else:  # 1x1 black-and-white units: brightness above (even units) or below (odd) a threshold
                # After the max pool only darkness units: a channel-wise max of a colour pattern raises
                # the luminance, so a pooled brightness unit would also answer colour.
                sign = 1.0 if unit % 2 == 0 and name != "pool" else -1.0
                weight[unit - start, :, 0, 0] = sign * _luminance() * 2.0
                bias[unit - start] = -0.1
        convs[name] = _conv(3, stop - start, size, weight, bias)
        biases[name] = bias

    bw_units = [u for u in range(width) if u not in color_units]
    oriented = [
        u
        for u in bw_units
        if not ranges["1x1"][0] <= u < ranges["1x1"][1] and not ranges["pool"][0] <= u < ranges["pool"][1]
    ]  # the edge detectors
    head = torch.zeros(_N_HEAD, width, 1, 1, dtype=torch.float64)
    for h in range(_N_HEAD // 2):
        head[h, color_units, 0, 0] = 1.0 / len(color_units)
        head[_N_HEAD // 2 + h, bw_units, 0, 0] = 1.0 / len(bw_units)
    model = BranchBlock(convs, _conv(width, _N_HEAD, 1, head))
    truth = BranchBlockTruth(
        layer="block",
        branches=ranges,
        categories={"color": color_units, "black_and_white": bw_units},
        branch_of_category={"color": "5x5" if specialized else None},
        orientation={"oriented": oriented, "unoriented": [u for u in range(width) if u not in oriented]},
        color_hue_deg={u: float(hues[u]) for u in color_units},
        downstream=DownstreamTruth(
            "head", {h: "color" if h < _N_HEAD // 2 else "black_and_white" for h in range(_N_HEAD)}
        ),
        specialized=specialized,
        seed=seed,
    )
    model.truth = truth
    return PlantedModel(model, truth)


PLANTED: dict[str, Callable[..., PlantedModel]] = {
    "planted_curves": curve_circuit,
    "planted_hues": hue_family,
    "planted_reflections": reflection_pairs,
    "planted_branches": branch_block,
    "planted_union": union_unit,
    "planted_random": random_control,
}
"""Names ``circuits_vision.models.load`` accepts for planted models -> their factories."""

MODELS = tuple(PLANTED)
"""The planted model names; each is also an attribute of this module (``load`` looks them up by name)."""

planted_curves = curve_circuit
planted_hues = hue_family
planted_reflections = reflection_pairs
planted_branches = branch_block
planted_union = union_unit
planted_random = random_control
