"""Train the ``shapes`` model on procedurally drawn scenes and write its checkpoint and metadata.

    python -m circuits_vision.models.train_shapes --steps 1500 --batch-size 64 --seed 0

writes ``circuits_vision/data/shapes.pt`` (float32 state dict) and ``shapes.json`` (the command, seed,
steps, held-out accuracy and the dataset description) next to each other, both replaced atomically,
the checkpoint also every ``--checkpoint-every`` steps so an interrupted run leaves a usable file.
Every batch is freshly drawn by ``stimuli.scenes.random_scenes`` from one seeded generator; the
held-out set comes from a separate seed, so it never overlaps the training stream in distribution
of draws.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from circuits_vision.hooks import eval_mode, layer_shape
from circuits_vision.models.shapes import HEADS, MIXED3B_BOTTLENECKS, ShapesNet, default_weights_path
from circuits_vision.stimuli import scenes

HELDOUT_SEED_OFFSET = 1_000_003
"""The held-out set is drawn with seed ``seed + HELDOUT_SEED_OFFSET``."""
EXAMPLES_SEED_OFFSET = 2_000_029
"""Scenes for dataset examples (atlas pages, polysemanticity) are drawn with seed ``seed + EXAMPLES_SEED_OFFSET``:
from the training distribution, but neither the training stream nor the held-out set."""
AUX_SEED_OFFSET = 7_919
"""Auxiliary heads are initialised from seed ``seed + AUX_SEED_OFFSET`` (the model keeps ``seed``)."""
COLOR_LOSS_WEIGHT = 0.5
ORIENTATION_BINS = 16
"""Auxiliary heads classify an object's drawn orientation into this many bins over 360 degrees."""


class _HookedHeads(nn.Module):
    """Heads that read the outputs of layers of the model, kept by forward hooks until :meth:`remove`."""

    def __init__(self):
        super().__init__()
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []

    def _read(self, model: ShapesNet, layer: str, module_name: str | None = None) -> None:
        """Keep the output of ``module_name`` (default ``layer``) as ``self.outputs[layer]`` on every forward."""

        def hook(module, inputs, output):
            self.outputs[layer] = output

        self._handles.append(model.layer(module_name or layer).register_forward_hook(hook))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


NO_CURVE_WEIGHT = 0.1
"""Weight of the "no curve here" class of the per-position curve heads (most cells have no curve)."""


def _square_grid(model: ShapesNet, layer: str, head: str) -> tuple[int, int]:
    """(channels, side) of ``layer``'s square map; a clear error for a map that is not square."""
    channels, height, width = layer_shape(model, layer, model.input_size)
    if height != width:
        raise ValueError(f"{head} head on {layer!r}: needs a square map, got {height}x{width}")
    return channels, height


def _facing_targets(facing: torch.Tensor, bins: int) -> torch.Tensor:
    """Per-cell facing in degrees (NaN = no curve) -> class indices: the nearest of ``bins`` bins, ``bins`` = none."""
    index = torch.floor(torch.nan_to_num(facing) / (360.0 / bins) + 0.5).long() % bins
    return torch.where(torch.isnan(facing), torch.full_like(index, bins), index)


def _no_curve_weights(bins: int, no_curve: float = NO_CURVE_WEIGHT) -> torch.Tensor:
    """Class weights ``[bins + 1]``: 1 for every facing, ``no_curve`` for "no curve"."""
    if not no_curve > 0:
        raise ValueError(f"the 'no curve' class weight must be > 0, got {no_curve}")
    weights = torch.ones(bins + 1)
    weights[bins] = no_curve
    return weights


class OrientationHeads(_HookedHeads):
    """Training-only auxiliary classifiers of object orientation read from intermediate layers.

    Like InceptionV1's auxiliary heads, they add a loss at a depth the final head does not reach
    directly: each is global average pooling of the layer's ``[N, C, h, w]`` output, then a linear map
    to ``ORIENTATION_BINS`` logits, trained on every scene with an oriented object (curves and angles
    over 0..360 degrees, lines over 0..180) to name its drawn orientation at 22.5-degree resolution,
    twice as fine as the ``shape`` label's bins. Asking ``mixed3a``/``mixed3b`` themselves for the
    orientation is meant to pull orientation-tuned curve units into those layers (without it the
    network left most curve detectors to ``mixed4a``). The heads are not part of the shipped checkpoint.
    """

    def __init__(self, model: ShapesNet, weights: dict[str, float], generator: torch.Generator):
        super().__init__()
        self.weights = dict(weights)
        self.heads = nn.ModuleDict()
        for layer in self.weights:
            channels = layer_shape(model, layer, model.input_size)[0]
            head = nn.Linear(channels, ORIENTATION_BINS)
            with torch.no_grad():
                bound = channels**-0.5
                head.weight.uniform_(-bound, bound, generator=generator)
                head.bias.uniform_(-bound, bound, generator=generator)
            self.heads[layer] = head
            self._read(model, layer)

    def loss(self, orientation: torch.Tensor) -> torch.Tensor:
        """Weighted cross-entropy over the scenes with an oriented object (``orientation`` [N] degrees, NaN = none)."""
        bins = torch.floor((orientation % 360.0) / (360.0 / ORIENTATION_BINS) + 0.5).long()
        bins = bins % ORIENTATION_BINS
        target = torch.where(torch.isnan(orientation), torch.full_like(bins, -100), bins)
        total = orientation.new_zeros(())
        if bool((target >= 0).any()):
            for layer, weight in self.weights.items():
                logits = self.heads[layer](self.outputs[layer].mean(dim=(2, 3)))
                total = total + weight * F.cross_entropy(logits, target, ignore_index=-100)
        return total


class LocalCurveHeads(_HookedHeads):
    """Training-only per-position classifiers of which way the curve through each cell faces.

    Each is a 1x1 convolution of the layer's ``[N, C, h, w]`` output to ``ORIENTATION_BINS + 1``
    logits per position: the bin of the local facing direction of a curve passing through that cell
    (:func:`circuits_vision.stimuli.scenes.local_curve_facing`), or "no curve" (weighted by
    ``NO_CURVE_WEIGHT``). It asks the layer for early curve detectors, units that see one short piece
    of a curve and the side it bulges toward, at every position: the parts from which the
    next layer's whole-curve detectors can be assembled. With ``labels=scenes.curve_midpoint_cells``
    only the cell of a curve's midpoint is labelled, with the whole curve's orientation: it asks for
    whole-curve detectors. The heads are not part of the shipped checkpoint.
    """

    def __init__(
        self,
        model: ShapesNet,
        weights: dict[str, float],
        generator: torch.Generator,
        *,
        labels=scenes.local_curve_facing,
    ):
        super().__init__()
        self.weights = dict(weights)
        self.labels = labels
        self.heads = nn.ModuleDict()
        self.grids: dict[str, int] = {}
        for layer in self.weights:
            channels, self.grids[layer] = _square_grid(model, layer, "local curve")
            head = nn.Conv2d(channels, ORIENTATION_BINS + 1, 1)
            with torch.no_grad():
                bound = channels**-0.5
                head.weight.uniform_(-bound, bound, generator=generator)
                head.bias.uniform_(-bound, bound, generator=generator)
            self.heads[layer] = head
            self._read(model, layer)
        self.class_weights = _no_curve_weights(ORIENTATION_BINS)

    def loss(self, orientation: torch.Tensor, arc: torch.Tensor, size: int) -> torch.Tensor:
        """Weighted per-position cross-entropy (labels of ``scenes.random_scenes``)."""
        total = orientation.new_zeros(())
        for layer, weight in self.weights.items():
            target = _facing_targets(self.labels(orientation, arc, self.grids[layer], size=size), ORIENTATION_BINS)
            logits = self.heads[layer](self.outputs[layer])
            total = total + weight * F.cross_entropy(logits, target, weight=self.class_weights)
        return total


UNIT_BINS = 8
""":class:`UnitCurveHeads` ask ``UNIT_BINS`` units of a layer for one 45-degree facing each (by default)."""


def curve_unit_indices(channels: int, span: tuple[int, int] | None = None, bins: int = UNIT_BINS) -> list[int]:
    """The ``bins`` channels of a ``channels``-wide layer that :class:`UnitCurveHeads` train, evenly spread
    over the layer (so over its branches), or over the channels ``[start, stop)`` of one branch when ``span``
    is given: unit ``i`` of the list is asked for ``curve_unit_facings(bins)[i]`` degrees. Opposite facings sit
    next to each other, so no branch is given a half of the circle."""
    _check_bins(bins)
    start, stop = span if span is not None else (0, channels)
    if stop - start < bins:
        raise ValueError(f"{bins} curve units need at least {bins} channels, got [{start}, {stop})")
    return [start + int((k + 0.5) * (stop - start) / bins) for k in range(bins)]


def curve_unit_facings(bins: int = UNIT_BINS) -> list[float]:
    """Degrees asked of the units of :func:`curve_unit_indices`, in their order: 0, 180, 45, 225, ... (8 bins)."""
    _check_bins(bins)
    step = 360.0 / bins
    return [((k // 2) * step + (k % 2) * 180.0) % 360.0 for k in range(bins)]


def _check_bins(bins: int) -> None:
    if bins < 4 or bins % 2:
        raise ValueError(f"--unit-bins must be an even number of facings >= 4 (8: every 45 degrees), got {bins}")


class UnitCurveHeads(_HookedHeads):
    """Training-only per-position curve-facing targets read from single units, not from a learned readout.

    A learned readout (:class:`LocalCurveHeads`) is satisfied by any basis of the layer, so the network
    spreads orientation over many mixed units. Here the logit of facing bin ``k`` at each position is
    ``softplus(g_k) * a_u(k) + b_k`` where ``a_u(k)`` is the pre-ReLU activation of one fixed unit
    (:func:`curve_unit_indices`, :func:`curve_unit_facings`) and "no curve" has logit 0: each of those
    units must itself fire where a curve of its facing is, and stay quiet otherwise. Which units read
    which facing is fixed; how they are wired to the layers before them is learned, as is every
    other unit. Labels as in :class:`LocalCurveHeads` (local facing, or the midpoint cell with
    ``labels=scenes.curve_midpoint_cells``). The heads are not part of the shipped checkpoint.
    """

    def __init__(
        self,
        model: ShapesNet,
        weights: dict[str, float],
        *,
        labels=scenes.local_curve_facing,
        branches: dict[str, str] | None = None,
        bins: int = UNIT_BINS,
        no_curve_weight: float = NO_CURVE_WEIGHT,
    ):
        super().__init__()
        self.weights = dict(weights)
        self.labels = labels
        self.bins = bins
        self.grids: dict[str, int] = {}
        self.units: dict[str, list[int]] = {}
        self.gains = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        facing_bins = [round(f / (360.0 / bins)) % bins for f in curve_unit_facings(bins)]
        # position in curve_unit_indices() of the unit that reads bin k, for k = 0 .. bins - 1
        self.by_bin = [facing_bins.index(k) for k in range(bins)]
        for layer in self.weights:
            channels, self.grids[layer] = _square_grid(model, layer, "unit curve")
            span = branch_span(model, layer, (branches or {}).get(layer))
            self.units[layer] = curve_unit_indices(channels, span, bins)
            self.gains[layer] = nn.Parameter(torch.zeros(bins))
            self.biases[layer] = nn.Parameter(torch.zeros(bins))
            # The logits read the units before their ReLU: read after it, a unit pushed below zero everywhere by
            # the many "no curve" cells gets no gradient again (most of the chosen units died that way).
            self._read(model, layer, f"{layer}_pre_relu")
        self.class_weights = _no_curve_weights(bins, no_curve_weight)

    def loss(self, orientation: torch.Tensor, arc: torch.Tensor, size: int) -> torch.Tensor:
        """Weighted per-position cross-entropy over ``bins`` facings + "no curve"."""
        total = orientation.new_zeros(())
        for layer, weight in self.weights.items():
            target = _facing_targets(self.labels(orientation, arc, self.grids[layer], size=size), self.bins)
            units = [self.units[layer][i] for i in self.by_bin]
            act = self.outputs[layer][:, units]  # [N, bins, h, w]: channel k reads facing bin k
            logits = F.softplus(self.gains[layer]).view(1, -1, 1, 1) * act + self.biases[layer].view(1, -1, 1, 1)
            logits = torch.cat([logits, torch.zeros_like(logits[:, :1])], dim=1)
            total = total + weight * F.cross_entropy(logits, target, weight=self.class_weights)
        return total


def branch_span(model: ShapesNet, layer: str, branch: str | None) -> tuple[int, int] | None:
    """Channel range ``[start, stop)`` of ``branch`` in block ``layer`` (None: the whole layer)."""
    if branch is None:
        return None
    ranges = model.branch_ranges(layer)
    if branch not in ranges:
        raise ValueError(f"--curve-branch {layer}:{branch}: {layer} has branches {sorted(ranges)}")
    return ranges[branch]


class ZeroUnitBiases:
    """Keeps the biases of chosen single curve units at zero (set to zero before training and after every step).

    A unit with a bias can stay below zero off its curve by the bias alone, the cheapest way under an L1
    penalty on the weights: it then sits far below zero everywhere but on its curve, with no specific
    inhibition. Without a bias, a 1x1 unit reading a ReLU layer is below zero only where inhibitory inputs
    are active, so the targets' "not this facing" cells ask for inhibition from the units of the other facings.
    """

    def __init__(self, model: ShapesNet, units: dict[str, list[int]]):
        self.entries = []  # (bias parameter, channel inside it)
        for layer, chosen in units.items():
            ranges = model.branch_ranges(layer)
            for unit in chosen:
                branch, (start, _) = next((b, r) for b, r in ranges.items() if r[0] <= unit < r[1])
                self.entries.append((model.layer(f"{layer}_{branch}_pre_relu_conv").bias, unit - start))
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for bias, channel in self.entries:
            bias[channel] = 0.0


def parse_layers(text: str) -> list[str]:
    """``"mixed3a,mixed3b"`` -> ``["mixed3a", "mixed3b"]`` (empty string -> none)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_branches(text: str) -> dict[str, str]:
    """``"mixed3b:5x5"`` -> ``{"mixed3b": "5x5"}`` (empty string -> none)."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        layer, sep, branch = item.partition(":")
        if not sep or not branch:
            raise ValueError(f"--curve-branch {item!r}: expected LAYER:BRANCH, e.g. mixed3b:5x5")
        out[layer] = branch
    return out


def rotate_kernels(kernels: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """``kernels [..., S, S]`` turned ``angle_deg`` counter-clockwise on screen (y up), bilinear; exact at 90s.

    The convention of the toolkit's kernel transforms (a kernel rotated by ``a`` detects its pattern turned by
    ``a``); kept here because the models package does not depend on the analysis package.
    """
    quarter = angle_deg / 90.0
    if abs(quarter - round(quarter)) < 1e-9:
        return torch.rot90(kernels, k=int(round(quarter)) % 4, dims=(-2, -1))
    shape = kernels.shape
    flat = kernels.reshape(1, -1, shape[-2], shape[-1])
    a = math.radians(angle_deg)
    theta = flat.new_tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
    grid = F.affine_grid(theta, list(flat.shape), align_corners=True)
    return F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True).reshape(shape)


class RotationTie:
    """A soft weight-sharing prior: the curve units of a mixed3b branch are one kernel on mixed3a's curve units, rotated.

    Each of the :func:`curve_unit_indices` units of ``branch`` (3x3 or 5x5, through its bottleneck) has
    expanded weights ``E_k [C_mixed3a, S, S]`` from mixed3a: ``bottleneck^T`` composed with the branch's
    kernel, the linear path a ReLU-free reading gives. Unit ``k`` is asked for facing ``f_k``; its canonical
    form turns ``E_k`` by ``-f_k`` and reads at mixed3a's curve unit of facing ``t`` what ``E_k`` reads at the
    one of facing ``t + f_k`` (the mixed3a units of :class:`UnitCurveHeads`, which face every 45 degrees), as the
    rotation of the whole picture would. The loss is the mean ``1 - cos`` between each canonical form and
    their mean, inside the inscribed disk (corners leave the square when turned by 45 degrees), plus the mean
    fraction of each ``E_k``'s energy on mixed3a's other channels: zero exactly when every unit is one template
    on mixed3a's curve units turned to its facing, the equivariant construction of mixed3b's curve detectors
    from mixed3a's early curves that Curve Circuits describes. (Without the second term the tie is met by
    kernels that leave the curve units out and share one centre-heavy pattern on the other channels.) What the
    template is, and every other weight, is learned.
    """

    def __init__(self, model: ShapesNet, branch: str, sources: list[int] | None = None):
        """``sources``: mixed3a's curve units in facing order (default :func:`curve_unit_indices` of the whole layer;
        pass the heads' units when they sit in one branch)."""
        if branch not in ("3x3", "5x5"):
            raise ValueError(f"--rotation-tie needs the curve units in mixed3b's 3x3 or 5x5 branch, got {branch!r}")
        self.model = model
        self.branch = branch
        start, stop = model.branch_ranges("mixed3b")[branch]
        self.units = curve_unit_indices(int(layer_shape(model, "mixed3b", model.input_size)[0]), (start, stop))
        self.local = [u - start for u in self.units]
        channels = int(layer_shape(model, "mixed3a", model.input_size)[0])
        sources = list(sources) if sources is not None else curve_unit_indices(channels)
        facings = self.facings = curve_unit_facings()
        size = model.layer(f"mixed3b_{branch}_pre_relu_conv").weight.shape[-1]
        yy, xx = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2, indexing="ij")
        self.disk = ((yy**2 + xx**2) <= ((size - 1) / 2) ** 2 + 1e-6).float()
        # index[k]: channel map of the canonical form of unit k (channel c reads channel index[k][c])
        by_facing = {round(f) % 360: u for u, f in zip(sources, facings)}
        maps = []
        for f in facings:
            index = list(range(channels))
            for u, g in zip(sources, facings):
                index[u] = by_facing[round(g + f) % 360]
            maps.append(index)
        self.index = torch.tensor(maps)
        self.sources = sources

    def kernels(self) -> torch.Tensor:
        """Expanded weights ``[UNIT_BINS, C_mixed3a, S, S]`` of the tied units from mixed3a (differentiable)."""
        kernel = self.model.layer(f"mixed3b_{self.branch}_pre_relu_conv").weight[self.local]
        bottleneck = self.model.layer(f"mixed3b_{self.branch}_bottleneck_pre_relu_conv").weight[:, :, 0, 0]
        return torch.einsum("ubhw,bc->uchw", kernel, bottleneck)

    def loss(self) -> torch.Tensor:
        """Mean ``1 - cos(canonical form, their mean)`` + mean off-curve-unit energy fraction: a scalar in [0, 3]."""
        weights = self.kernels()
        energy = weights.pow(2).sum((2, 3))  # [UNIT_BINS, C_mixed3a]
        off = 1.0 - energy[:, self.sources].sum(1) / energy.sum(1).clamp_min(1e-12)
        canonical = (
            torch.stack([rotate_kernels(weights[k], -f)[self.index[k]] for k, f in enumerate(self.facings)]) * self.disk
        )
        flat = F.normalize(canonical.flatten(1), dim=1)
        template = F.normalize(flat.mean(0), dim=0)
        return (1.0 - flat @ template).mean() + off.mean()


def parse_aux(text: str, what: str = "auxiliary head") -> dict[str, float]:
    """``"mixed3a:0.2,mixed3b:0.5"`` -> ``{"mixed3a": 0.2, "mixed3b": 0.5}`` (empty string -> none); errors name ``what``."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        layer, sep, weight = item.partition(":")
        try:
            out[layer] = float(weight)
        except ValueError:
            raise ValueError(f"{what} {item!r}: expected LAYER:WEIGHT, e.g. mixed3b:0.5") from None
        if not sep or out[layer] < 0:
            raise ValueError(f"{what} {item!r}: expected LAYER:WEIGHT with WEIGHT >= 0")
    return out


def parse_widths(text: str) -> tuple[int, int]:
    """``"64,32"`` -> ``(64, 32)``: mixed3b's 3x3 and 5x5 bottleneck widths."""
    try:
        b3, b5 = (int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--mixed3b-bottlenecks {text!r}: expected two widths, e.g. 64,32") from None
    return b3, b5


def block_weights(model: ShapesNet, layer: str) -> list[torch.Tensor]:
    """The convolution weights of block ``layer`` (for mixed3b: its 1x1, bottleneck, 3x3, 5x5 and pool-reduce convs)."""
    weights = [p for name, p in model.named_parameters() if name.startswith(f"{layer}_") and p.dim() == 4]
    if not weights:
        blocks = sorted({name.split("_")[0] for name, p in model.named_parameters() if p.dim() == 4})
        raise ValueError(f"--l1 {layer!r}: no convolution weights in that block; blocks: {blocks}")
    return weights


def l1_penalty(model: ShapesNet, strengths: dict[str, float]) -> torch.Tensor:
    """``sum_layer strength * sum |w|`` over the convolution weights of each block (a sparse-wiring prior)."""
    total = torch.zeros(())
    for layer, strength in strengths.items():
        total = total + strength * sum(w.abs().sum() for w in block_weights(model, layer))
    return total


def heads_loss(model: ShapesNet, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model.split_logits(model(images))
    return F.cross_entropy(logits["shape"], labels["shape"]) + COLOR_LOSS_WEIGHT * F.cross_entropy(
        logits["color"], labels["color"]
    )


@torch.no_grad()
def evaluate(model: ShapesNet, n: int, seed: int, *, batch_size: int = 256, size: int = 64) -> dict[str, float]:
    """Accuracy of each head on ``n`` scenes drawn with ``seed`` -> ``{"shape": acc, "color": acc}``."""
    generator = torch.Generator().manual_seed(seed)
    correct = {head: 0 for head in HEADS}
    with eval_mode(model):
        for start in range(0, n, batch_size):
            images, labels = scenes.random_scenes(min(batch_size, n - start), generator, size=size)
            logits = model.split_logits(model(images))
            for head in HEADS:
                correct[head] += int((logits[head].argmax(1) == labels[head]).sum())
    return {head: correct[head] / n for head in HEADS}


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` (for tensors) or JSON (for dicts of plain values) to a temp file, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if path.suffix == ".json":
                f.write((json.dumps(obj, indent=2) + "\n").encode())
            else:
                torch.save(obj, f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; package data must be readable by all
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    heldout: int = 2048,
    checkpoint_every: int = 100,
    log_every: int = 25,
    size: int = 64,
    command: str | None = None,
    aux: dict[str, float] | None = None,
    local_curves: dict[str, float] | None = None,
    curve_centres: dict[str, float] | None = None,
    unit_curves: dict[str, float] | None = None,
    unit_centres: dict[str, float] | None = None,
    aux_start: int = 0,
    weight_decay: float = 0.0,
    l1: dict[str, float] | None = None,
    curve_branches: dict[str, str] | None = None,
    rotation_tie: float = 0.0,
    unit_bins: int = UNIT_BINS,
    unit_no_curve_weight: float = NO_CURVE_WEIGHT,
    unit_zero_bias: Sequence[str] = (),
    mixed3b_bottlenecks: tuple[int, int] = MIXED3B_BOTTLENECKS,
    log=print,
) -> dict:
    """Train from the seed-``seed`` initialisation for ``steps`` steps; write ``out`` (.pt) and its .json.

    ``aux``: ``{layer: weight}`` of training-only orientation heads (:class:`OrientationHeads`),
    ``local_curves`` of per-position curve-facing heads (:class:`LocalCurveHeads`), ``curve_centres`` of
    per-position whole-curve heads (:class:`LocalCurveHeads` on ``scenes.curve_midpoint_cells``); ``unit_curves``
    and ``unit_centres`` the same two targets read from single units (:class:`UnitCurveHeads`); all are off for the first ``aux_start`` steps and ramped in linearly over the next ``aux_start`` (from the
    start, the extra loss kept the network at chance for 1000+ steps in our runs). ``l1``: ``{block: strength}``,
    an L1 penalty on the block's convolution weights (:func:`l1_penalty`), ramped in with the heads.
    ``curve_branches``: ``{layer: branch}`` puts that layer's single curve units inside one branch;
    ``rotation_tie``: weight of :class:`RotationTie` on mixed3b's (needs ``unit_curves`` on mixed3a, single curve
    units on mixed3b and ``curve_branches["mixed3b"]`` 3x3 or 5x5), ramped in with the heads. ``unit_bins``: how
    many single curve units (one facing each, ``360 / unit_bins`` degrees apart) the unit targets train per layer;
    ``unit_no_curve_weight`` the weight of their "no curve" cells (lower: less push below zero off the curve);
    ``unit_zero_bias``: layers whose single curve units have no bias (:class:`ZeroUnitBiases`).
    Returns the metadata written to the .json file.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    out = Path(out) if out is not None else default_weights_path()
    model = ShapesNet(generator=torch.Generator().manual_seed(seed), mixed3b_bottlenecks=mixed3b_bottlenecks).train()
    aux = dict(aux or {})
    heads = OrientationHeads(model, aux, torch.Generator().manual_seed(seed + AUX_SEED_OFFSET))
    local_curves = dict(local_curves or {})
    local_heads = LocalCurveHeads(model, local_curves, torch.Generator().manual_seed(seed + 2 * AUX_SEED_OFFSET))
    curve_centres = dict(curve_centres or {})
    centre_heads = LocalCurveHeads(
        model,
        curve_centres,
        torch.Generator().manual_seed(seed + 3 * AUX_SEED_OFFSET),
        labels=scenes.curve_midpoint_cells,
    )
    unit_curves, unit_centres = dict(unit_curves or {}), dict(unit_centres or {})
    l1 = dict(l1 or {})
    for layer in l1:
        block_weights(model, layer)  # fail before training on an unknown block
    curve_branches = dict(curve_branches or {})
    unit_heads = UnitCurveHeads(
        model, unit_curves, branches=curve_branches, bins=unit_bins, no_curve_weight=unit_no_curve_weight
    )
    unit_centre_heads = UnitCurveHeads(
        model,
        unit_centres,
        labels=scenes.curve_midpoint_cells,
        branches=curve_branches,
        bins=unit_bins,
        no_curve_weight=unit_no_curve_weight,
    )
    unit_zero_bias = list(unit_zero_bias)
    for layer in unit_zero_bias:
        if layer not in unit_heads.units and layer not in unit_centre_heads.units:
            raise ValueError(
                f"--unit-zero-bias {layer}: {layer} has no single curve units (--unit-curves/--unit-centres)"
            )
    zero_biases = ZeroUnitBiases(
        model, {layer: {**unit_heads.units, **unit_centre_heads.units}[layer] for layer in unit_zero_bias}
    )
    tie = None
    if rotation_tie:
        if unit_bins != UNIT_BINS:
            raise ValueError(f"--rotation-tie ties {UNIT_BINS} curve units per layer; drop --unit-bins {unit_bins}")
        if "mixed3a" not in unit_curves or "mixed3b" not in {**unit_curves, **unit_centres}:
            raise ValueError(
                "--rotation-tie ties mixed3b's single curve units to mixed3a's: pass --unit-curves mixed3a:W and "
                "--unit-curves or --unit-centres mixed3b:W"
            )
        tie = RotationTie(model, curve_branches.get("mixed3b", ""), unit_heads.units["mixed3a"])
    heads_parameters = [
        *heads.parameters(),
        *local_heads.parameters(),
        *centre_heads.parameters(),
        *unit_heads.parameters(),
        *unit_centre_heads.parameters(),
    ]
    if weight_decay:  # decoupled (AdamW) decay of the model's conv and linear weights; biases and heads stay free
        decayed = [p for p in model.parameters() if p.dim() > 1]
        free = [p for p in model.parameters() if p.dim() <= 1]
        optimizer = torch.optim.AdamW(
            [
                {"params": decayed, "weight_decay": weight_decay},
                {"params": free + heads_parameters, "weight_decay": 0.0},
            ],
            lr=lr,
        )
    else:
        optimizer = torch.optim.Adam([*model.parameters(), *heads_parameters], lr=lr)
    data = torch.Generator().manual_seed(seed)
    warmup = min(100, steps // 10 + 1)
    started = time.time()
    running = None
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup)
        images, labels = scenes.random_scenes(batch_size, data, size=size)
        loss = heads_loss(model, images, labels)
        ramp = min(1.0, max(0.0, (step - aux_start) / max(aux_start, 1))) if aux_start else 1.0
        if aux and ramp > 0:
            loss = loss + ramp * heads.loss(labels["orientation"])
        if local_curves and ramp > 0:
            loss = loss + ramp * local_heads.loss(labels["orientation"], labels["arc"], size)
        if curve_centres and ramp > 0:
            loss = loss + ramp * centre_heads.loss(labels["orientation"], labels["arc"], size)
        if unit_curves and ramp > 0:
            loss = loss + ramp * unit_heads.loss(labels["orientation"], labels["arc"], size)
        if unit_centres and ramp > 0:
            loss = loss + ramp * unit_centre_heads.loss(labels["orientation"], labels["arc"], size)
        if l1 and ramp > 0:
            loss = loss + ramp * l1_penalty(model, l1)
        if tie is not None and ramp > 0:
            loss = loss + ramp * rotation_tie * tie.loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        zero_biases.apply()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log(
                f"step {step + 1}/{steps} loss {running:.4f} lr {optimizer.param_groups[0]['lr']:.2e} "
                f"{time.time() - started:.0f}s"
            )
        if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            atomic_save(model.state_dict(), out)
    heads.remove()
    local_heads.remove()
    centre_heads.remove()
    unit_heads.remove()
    unit_centre_heads.remove()
    atomic_save(model.state_dict(), out)
    heldout_seed = seed + HELDOUT_SEED_OFFSET
    accuracy = evaluate(model, heldout, heldout_seed, size=size)
    log(f"held-out accuracy {accuracy}")
    metadata = {
        "model": "shapes",
        "architecture": "circuits_vision.models.shapes.shapes_spec()"
        if model.mixed3b_bottlenecks == MIXED3B_BOTTLENECKS
        else f"circuits_vision.models.shapes.shapes_spec(mixed3b_bottlenecks={model.mixed3b_bottlenecks})",
        "mixed3b_bottlenecks": list(model.mixed3b_bottlenecks),
        "command": command
        or f"python -m circuits_vision.models.train_shapes --steps {steps} "
        f"--batch-size {batch_size} --lr {lr} --seed {seed}",
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": lr,
        "optimizer": (f"AdamW (weight decay {weight_decay} on conv and linear weights)" if weight_decay else "Adam")
        + f", linear warm-up {warmup} steps, cosine decay to 5%",
        "weight_decay": weight_decay,
        "l1": l1,
        "loss": f"cross-entropy(shape) + {COLOR_LOSS_WEIGHT} * cross-entropy(color)"
        + "".join(
            f" + {w} * cross-entropy({layer} object orientation, {ORIENTATION_BINS} bins)" for layer, w in aux.items()
        )
        + "".join(
            f" + {w} * per-position cross-entropy({layer} local curve facing, {ORIENTATION_BINS} bins + none)"
            for layer, w in local_curves.items()
        )
        + "".join(
            f" + {w} * per-position cross-entropy({layer} curve midpoint cell orientation, {ORIENTATION_BINS} bins + none)"
            for layer, w in curve_centres.items()
        )
        + "".join(
            f" + {w} * per-position cross-entropy({layer} local curve facing read from {unit_bins} single units)"
            for layer, w in unit_curves.items()
        )
        + "".join(
            f" + {w} * per-position cross-entropy({layer} curve midpoint cell orientation read from {unit_bins} "
            "single units)"
            for layer, w in unit_centres.items()
        )
        + "".join(f" + {w} * sum |{layer} convolution weights|" for layer, w in l1.items())
        + (f" + {rotation_tie} * rotation tie (mixed3b {curve_branches.get('mixed3b')} curve units)" if tie else ""),
        "curve_branches": curve_branches,
        "rotation_tie": {
            "weight": rotation_tie,
            "units": tie.units,
            "mixed3a_units": tie.sources,
            "final_loss": round(float(tie.loss().detach()), 4),
        }
        if tie
        else None,
        "auxiliary_heads": {
            layer: {
                "weight": w,
                "bins": ORIENTATION_BINS,
                "off_steps": aux_start,
                "ramp_steps": aux_start,
                "reads": "global average pool, linear",
                "shipped": False,
            }
            for layer, w in aux.items()
        },
        "local_curve_heads": {
            layer: {
                "weight": w,
                "bins": ORIENTATION_BINS,
                "no_curve_weight": NO_CURVE_WEIGHT,
                "off_steps": aux_start,
                "ramp_steps": aux_start,
                "reads": "1x1 convolution at every position",
                "shipped": False,
            }
            for layer, w in local_curves.items()
        },
        "curve_centre_heads": {
            layer: {
                "weight": w,
                "bins": ORIENTATION_BINS,
                "no_curve_weight": NO_CURVE_WEIGHT,
                "off_steps": aux_start,
                "ramp_steps": aux_start,
                "reads": "1x1 convolution at every position; labels the curve's midpoint cell",
                "shipped": False,
            }
            for layer, w in curve_centres.items()
        },
        "unit_curve_heads": {
            layer: {
                "weight": w,
                "labels": "curve midpoint cell" if kind == "centres" else "local curve facing",
                "units": head.units[layer],
                "facings_deg": curve_unit_facings(unit_bins),
                "no_curve_weight": unit_no_curve_weight,
                "zero_bias": layer in unit_zero_bias,
                "off_steps": aux_start,
                "ramp_steps": aux_start,
                "reads": "softplus(gain) * the unit's pre-ReLU activation + bias per facing bin; 'no curve' has logit 0",
                "shipped": False,
            }
            for kind, head, chosen in (
                ("curves", unit_heads, unit_curves),
                ("centres", unit_centre_heads, unit_centres),
            )
            for layer, w in chosen.items()
        },
        "final_running_loss": round(running, 4),
        "heldout": {"n": heldout, "seed": heldout_seed, "accuracy": accuracy},
        "training_seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        "input_size": size,
        "heads": {"shape": list(scenes.SHAPE_CLASSES), "color": list(scenes.COLOR_NAMES)},
        "dataset": " ".join((scenes.__doc__ or "").split()),
    }
    atomic_save(metadata, out.with_suffix(".json"))
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout", type=int, default=2048, help="held-out scenes to measure accuracy on")
    # One thread: on a shared, oversubscribed CPU, multi-threaded kernels spin-wait for descheduled
    # threads and ran ~20x slower per step than a single thread in our measurements.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--out", default=None, help="checkpoint path (.pt); default: the packaged shapes.pt")
    parser.add_argument("--aux", default="", help="training-only orientation heads, e.g. mixed3a:0.2,mixed3b:0.5")
    parser.add_argument(
        "--local-curves", default="", help="training-only per-position curve-facing heads, e.g. mixed3a:0.3"
    )
    parser.add_argument(
        "--curve-centres",
        default="",
        help="training-only per-position whole-curve heads (the midpoint's cell), e.g. mixed3b:0.3",
    )
    parser.add_argument(
        "--unit-curves",
        default="",
        help="training-only per-position curve-facing targets read from single units, e.g. mixed3a:0.3",
    )
    parser.add_argument(
        "--unit-centres",
        default="",
        help="training-only whole-curve targets at the midpoint cell read from single units, e.g. mixed3b:0.3",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="decoupled weight decay (AdamW) of the conv and linear weights; 0 = plain Adam",
    )
    parser.add_argument(
        "--l1", default="", help="L1 penalty on a block's convolution weights (sparse wiring), e.g. mixed3b:3e-5"
    )
    parser.add_argument(
        "--curve-branch",
        default="",
        help="put a layer's single curve units (--unit-curves/--unit-centres) in one branch, e.g. mixed3b:5x5",
    )
    parser.add_argument(
        "--rotation-tie",
        type=float,
        default=0.0,
        help="weight of the soft rotation tie of mixed3b's curve units to mixed3a's (needs --curve-branch mixed3b:5x5)",
    )
    parser.add_argument(
        "--unit-bins",
        type=int,
        default=UNIT_BINS,
        help="single curve units per layer for --unit-curves/--unit-centres, one facing each (8: every 45 degrees)",
    )
    parser.add_argument(
        "--unit-no-curve-weight",
        type=float,
        default=NO_CURVE_WEIGHT,
        help="weight of the 'no curve' cells in --unit-curves/--unit-centres (lower: less push below zero)",
    )
    parser.add_argument(
        "--unit-zero-bias",
        default="",
        help="layers whose single curve units have no bias, e.g. mixed3b (then only inhibition keeps them off)",
    )
    parser.add_argument(
        "--mixed3b-bottlenecks",
        default=",".join(map(str, MIXED3B_BOTTLENECKS)),
        help="widths of mixed3b's 3x3 and 5x5 bottlenecks, e.g. 96,48 (the shipped model: 64,32)",
    )
    parser.add_argument("--aux-start", type=int, default=0, help="steps before the auxiliary heads ramp in")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m circuits_vision.models.train_shapes " + " ".join(sys.argv[1:] if argv is None else argv)
    train(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        out=args.out,
        heldout=args.heldout,
        checkpoint_every=args.checkpoint_every,
        command=command.strip(),
        aux=parse_aux(args.aux),
        local_curves=parse_aux(args.local_curves),
        curve_centres=parse_aux(args.curve_centres),
        unit_curves=parse_aux(args.unit_curves),
        unit_centres=parse_aux(args.unit_centres),
        aux_start=args.aux_start,
        weight_decay=args.weight_decay,
        l1=parse_aux(args.l1, "--l1 penalty"),
        curve_branches=parse_branches(args.curve_branch),
        rotation_tie=args.rotation_tie,
        unit_bins=args.unit_bins,
        unit_no_curve_weight=args.unit_no_curve_weight,
        unit_zero_bias=parse_layers(args.unit_zero_bias),
        mixed3b_bottlenecks=parse_widths(args.mixed3b_bottlenecks),
        log=lambda line: print(line, flush=True),
    )


if __name__ == "__main__":
    main()
