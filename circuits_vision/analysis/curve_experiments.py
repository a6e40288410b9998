"""The two circuit edits of "Curve Circuits" (Cammarata et al., Distill 2021), on any InceptionV1-style model.

- :func:`echo`: remove the inhibition one downstream curve detector receives from upstream curves of
  the opposite orientation and watch a response to the curve facing 180 degrees away (the "echo")
  appear in its tuning curve; :func:`echo_survey` makes that edit on every downstream detector, each
  beside a control edit of as many orthogonal curves, and counts the echoes.
- :func:`replace_curve_detectors`: the "artificial artificial neural network": replace the downstream
  curve detectors by hand-built units made from one template rotated to each member's orientation,
  and compare the classifier's accuracy original / curve detectors ablated / hand-built in their place
  (:func:`circuits_vision.analysis.ablation.ablate`).

Both work in the expanded weights ``E [C_target, C_source, kh, kw]`` from the upstream layer (see
:func:`circuits_vision.weights.expand`), the linearised map from each upstream unit to each downstream
unit through any bottleneck in between. An edit or a hand-built unit is applied by a forward hook
that adds ``conv(upstream activations, dE)`` to the downstream unit's pre-ReLU value: for a unit fed
directly by a convolution of the upstream layer (a 1x1 branch) that is exactly a weight edit; through a
bottleneck it is the edit of the linearised circuit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from circuits_vision import stimuli
from circuits_vision.analysis.ablation import AblationReport, ablate
from circuits_vision.analysis.curve_circuits import orientation_difference
from circuits_vision.analysis.stats import sign_test
from circuits_vision.analysis.tuning import CurveDetector, find_curve_detectors, tuning_curves
from circuits_vision.hooks import eval_mode, get_layer, model_input_size, resolve_layer
from circuits_vision.results import Result

__all__ = [
    "EchoReport",
    "EchoSurvey",
    "ReplacementReport",
    "echo",
    "echo_survey",
    "replace_curve_detectors",
    "replace_curve_detectors_on_scenes",
    "rotate_kernels",
]

REPLACEMENT_SCENES = 1024
REPLACEMENT_SEED = 2_000_003
"""Seed of the fresh labelled scenes the replacement is scored on (templates are fitted on 256 more from
``REPLACEMENT_SEED + 1``): disjoint from the shapes model's training stream and held-out draws."""

OPPOSITE = 45.0
"""Upstream units within this many degrees of the opposite orientation count as "opposite"."""

ECHO_GROWTH = 0.1
"""Echo-ratio growth (a fraction of the preferred response) at which an echo counts as appearing."""


# --------------------------------------------------------------------------------------------------
# Applying a change of expanded weights by a hook


def _branch_of(model: nn.Module, layer: str, unit: int) -> tuple[str, int]:
    """``(ReLU module name, channel inside it)`` of ``unit`` of a mixed block ``layer``."""
    ranges = getattr(model, "branch_ranges", None)
    if ranges is None:
        raise ValueError(f"{type(model).__name__} has no branch_ranges(): edits need an InceptionV1-style mixed block")
    for branch, (start, stop) in ranges(layer).items():
        if start <= unit < stop:
            return f"{layer}_{branch}", unit - start
    raise IndexError(f"unit {unit} is outside the branches of {layer!r}")


def _delta_conv(act: torch.Tensor, delta: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """``[N, 1, h, w]``: target pixel ``(y, x)`` gets ``sum delta[s, u, v] * act[s, y - oy + u, x - ox + v]``."""
    kh, kw = delta.shape[-2:]
    oy, ox = offset
    padded = F.pad(act, (ox, kw - 1 - ox, oy, kh - 1 - oy))
    return F.conv2d(padded, delta[None].to(act.dtype))


class _ExpandedEdit:
    """Forward hooks that add ``conv(source activations, delta[j])`` to target units' pre-ReLU values.

    ``deltas``: ``{target unit: [C_source, kh, kw]}`` expanded-weight changes.
    """

    def __init__(self, model, source, target, deltas, offset):
        self.model, self.source, self.target = model, source, target
        self.deltas, self.offset = deltas, offset
        self.handles: list = []
        self.source_act: torch.Tensor | None = None

    def __enter__(self):
        def keep(module, inputs, output):
            self.source_act = output

        self.handles.append(get_layer(self.model, self.source).register_forward_hook(keep))
        by_conv: dict[str, list[tuple[int, int]]] = {}
        for unit in self.deltas:
            relu, channel = _branch_of(self.model, self.target, unit)
            by_conv.setdefault(f"{relu}_pre_relu_conv", []).append((unit, channel))
        for conv, pairs in by_conv.items():
            self.handles.append(get_layer(self.model, conv).register_forward_hook(self._editor(pairs)))
        return self

    def _editor(self, pairs):
        def hook(module, inputs, output):
            if self.source_act is None:
                raise RuntimeError(f"layer {self.source!r} did not run before {self.target!r}")
            out = output.clone()
            for unit, channel in pairs:
                extra = _delta_conv(self.source_act, self.deltas[unit], self.offset)[:, 0]
                if extra.shape[-2:] != out.shape[-2:]:
                    raise ValueError(
                        f"edit of {self.target}:{unit} has shape {tuple(extra.shape)}, the unit {tuple(out.shape[-2:])}"
                    )
                out[:, channel] = out[:, channel] + extra
            return out

        return hook

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _expansion(model, source, target):
    from circuits_vision.weights import expand

    found = expand(model, source, target)
    if tuple(found.stride) != (1, 1):
        raise ValueError(
            f"{source!r} -> {target!r} is strided {found.stride}; these edits need the two layers "
            "at the same resolution (adjacent mixed blocks)"
        )
    return found


# --------------------------------------------------------------------------------------------------
# Echo


@dataclass
class EchoReport(Result):
    """One downstream curve detector's tuning before and after removing its opposite-orientation inhibition.

    Attributes:
        source, target, unit: the layers and the downstream unit (channel of ``target``).
        preferred_orientation: the unit's preferred orientation (deg) before the edit.
        opposite_units: upstream curve detectors within 45 deg of the opposite orientation, whose negative
            expanded weights into the unit were removed; ``removed_weight``: the summed weight removed (< 0).
        orientations: ``[A]`` stimulus orientations (deg); ``before`` / ``after``: ``[A]`` responses
            (curves averaged over radii, baseline standard deviations of the original unit).
        echo_before / echo_after: the response at preferred + 180 deg over the response at preferred.
    """

    source: str
    target: str
    unit: int
    preferred_orientation: float
    opposite_units: list[int]
    removed_weight: float
    orientations: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    echo_before: float
    echo_after: float
    notes: list[str] = field(default_factory=list)

    @property
    def echo_appears(self) -> bool:
        """The response 180 deg away grew by at least a tenth of the preferred response."""
        return self.echo_after - self.echo_before >= ECHO_GROWTH

    def table(self) -> list[dict]:
        return [
            {"orientation": float(o), "before": float(b), "after": float(a)}
            for o, b, a in zip(self.orientations, self.before, self.after)
        ]

    def summary(self) -> dict:
        return {
            "unit": self.unit,
            "preferred_orientation": self.preferred_orientation,
            "opposite_units": self.opposite_units,
            "removed_weight": round(self.removed_weight, 4),
            "echo_before": round(self.echo_before, 4),
            "echo_after": round(self.echo_after, 4),
        }

    def __str__(self) -> str:
        peak = int(self.before.argmax())
        opposite = (peak + len(self.orientations) // 2) % len(self.orientations)
        return (
            f"echo of {self.target}:{self.unit} (prefers {self.preferred_orientation:.0f} deg): removed "
            f"{self.removed_weight:+.3g} net weight from {len(self.opposite_units)} opposite {self.source} curve "
            f"unit(s) {self.opposite_units}\n"
            f"  response at {float(self.orientations[opposite]):.0f} deg (180 away): "
            f"{float(self.before[opposite]):.2f} -> {float(self.after[opposite]):.2f}; at preferred "
            f"{float(self.before[peak]):.2f} -> {float(self.after[peak]):.2f}\n"
            f"  echo ratio {self.echo_before:.3f} -> {self.echo_after:.3f} "
            f"({'echo appears' if self.echo_appears else 'no echo'})" + "".join(f"\n  {n}" for n in self.notes)
        )

    def __repr__(self) -> str:
        return f"EchoReport({self.target}:{self.unit}, echo {self.echo_before:.3f} -> {self.echo_after:.3f})"


def _tuning(model, layer, unit, baseline=None, size=None):
    size = int(size or model_input_size(model))
    radii = [size / 8, size / 6, size / 4.5, size / 3.5]  # find_curve_detectors' defaults
    return tuning_curves(
        model,
        layer,
        [unit],
        stimuli.curves,
        {"orientation": list(range(0, 360, 5)), "radius": radii},
        fixed={"angular_width": 90.0, "thickness": max(1.5, size / 32)},
        baseline=baseline,
        size=size,
    )


def _detectors_of(model, source, target, source_detectors, target_detectors, size):
    src = (
        list(source_detectors)
        if source_detectors is not None
        else find_curve_detectors(model, source, size=size).detectors
    )
    tgt = (
        list(target_detectors)
        if target_detectors is not None
        else find_curve_detectors(model, target, size=size).detectors
    )
    if not src or not tgt:
        raise ValueError(
            f"echo needs curve detectors in both layers; found {len(src)} in {source!r}, {len(tgt)} in {target!r}"
        )
    return src, tgt


def _facing_units(det: CurveDetector, src: Sequence[CurveDetector], low: float, high: float) -> list[int]:
    """Source curve detectors whose orientation lies more than ``low`` and less than ``high`` deg from ``det``'s."""
    a = torch.tensor([d.preferred_orientation for d in src])
    delta = orientation_difference(torch.tensor(det.preferred_orientation), a).abs()
    return [src[i].unit for i in range(len(src)) if low < float(delta[i]) < high]


def _opposite_units(det: CurveDetector, src: Sequence[CurveDetector]) -> list[int]:
    """Source curve detectors facing within :data:`OPPOSITE` deg of the opposite of ``det``'s orientation."""
    return _facing_units(det, src, 180.0 - OPPOSITE, math.inf)


def _orthogonal_units(det: CurveDetector, src: Sequence[CurveDetector]) -> list[int]:
    """Source curve detectors facing 45-135 deg away from ``det``'s orientation."""
    return _facing_units(det, src, OPPOSITE, 180.0 - OPPOSITE)


def _remove_inhibition(edited, source, target, unit, removed, found, before, size):
    """``(delta [C_source, kh, kw], tuning after)`` once the negative weights of ``removed`` into ``unit`` are gone.

    ``edited``: a copy of the model, which the edit's hooks leave as it was on exit. ``before``: the
    unedited unit's tuning, whose baseline normalises the edited one too.
    """
    E = found.weights
    delta = torch.zeros_like(E[unit])
    if removed:
        delta[removed] = -E[unit, removed].clamp(max=0)
    with _ExpandedEdit(edited, source, target, {unit: delta}, found.offset):
        after = _tuning(edited, target, unit, baseline=(before.baseline_mean, before.baseline_std), size=size)
    return delta, after


def _echo_report(source, target, unit, opposite, delta, before, after, notes=()) -> EchoReport:
    """The :class:`EchoReport` of one edit, from the unit's tunings before and after it."""
    b, aft = before.orientation_curve()[0], after.orientation_curve()[0]
    peak = int(b.argmax())
    scale = max(float(b[peak]), 1e-12)
    return EchoReport(
        source,
        target,
        unit,
        float(before.orientations[peak]),
        opposite,
        -float(delta.sum()),
        before.orientations,
        b,
        aft,
        _echo_ratio(b, peak, scale),
        _echo_ratio(aft, peak, scale),
        list(notes),
    )


def _echo_ratio(curve: torch.Tensor, peak: int, scale: float) -> float:
    """Response 180 deg from ``peak`` over ``scale`` (the unedited preferred response)."""
    return float(curve[(peak + len(curve) // 2) % len(curve)]) / scale


def echo(
    model: nn.Module,
    source: str = "mixed3a",
    target: str = "mixed3b",
    unit: int | None = None,
    *,
    source_detectors: Sequence[CurveDetector] | None = None,
    target_detectors: Sequence[CurveDetector] | None = None,
    size: int | None = None,
) -> EchoReport:
    """Remove the negative expanded weights from opposite-orientation ``source`` curves into one ``target`` curve detector.

    Works on a deep copy (``model`` is untouched). ``unit`` defaults to the target curve detector that
    receives the most inhibition from opposite curves. Detectors default to :func:`find_curve_detectors`.
    ``size``: the tuning stimuli's size in px (default the model's ``input_size``, else 224).
    :func:`echo_survey` makes the same edit on every detector, beside a control edit.
    """
    source = resolve_layer(model, source)[0]
    target = resolve_layer(model, target)[0]
    src, tgt = _detectors_of(model, source, target, source_detectors, target_detectors, size)
    found = _expansion(model, source, target)
    E = found.weights

    def inhibition(det):
        units = _opposite_units(det, src)
        return float(E[det.unit, units].clamp(max=0).sum()) if units else 0.0

    if unit is None:
        chosen = min(tgt, key=inhibition)
    else:
        chosen = next((d for d in tgt if d.unit == unit), None)
        if chosen is None:
            raise ValueError(f"{target}:{unit} is not one of the curve detectors {[d.unit for d in tgt]}")
    opposite = _opposite_units(chosen, src)
    notes = []
    if not opposite:
        notes.append(f"no {source} curve detector faces within {OPPOSITE:g} deg of the opposite orientation")
    before = _tuning(model, target, chosen.unit, size=size)
    delta, after = _remove_inhibition(copy.deepcopy(model), source, target, chosen.unit, opposite, found, before, size)
    return _echo_report(source, target, chosen.unit, opposite, delta, before, after, notes)


@dataclass(repr=False)
class EchoSurvey(Result):
    """The echo edit made on every downstream curve detector, each beside a control edit.

    For each detector the edit removes the negative expanded weights from the upstream curve detectors
    facing within 45 deg of its opposite orientation. The control removes them from as many upstream
    curve detectors facing 45-135 deg away (the orthogonal ones; the most inhibitory of them): the same
    kind of unit and, typically, as much inhibition, from the wrong orientation. An echo appears where
    the response 180 deg from the preferred orientation grows by a tenth of the preferred response; if
    it is specific to opposite curves, the edit makes echoes and the control does not.

    Attributes:
        source, target: the layers.
        reports: one :class:`EchoReport` per detector (the edit), in the detectors' order.
        control_curves: the ``[A]`` tuning curve after the control edit, per detector (on the
            ``orientations`` of the reports).
        control_units: the orthogonal upstream curve detectors whose inhibition the control removed, per
            detector; ``control_removed_weight``: the summed weight it removed (< 0), per detector.
    """

    source: str
    target: str
    reports: list[EchoReport]
    control_curves: list[torch.Tensor]
    control_units: list[list[int]]
    control_removed_weight: list[float]

    @property
    def control_echo_after(self) -> list[float]:
        """Echo ratio after the control edit, per detector (scaled like the edit's: the unedited peak)."""
        ratios = []
        for report, curve in zip(self.reports, self.control_curves):
            peak = int(report.before.argmax())
            ratios.append(_echo_ratio(curve, peak, max(float(report.before[peak]), 1e-12)))
        return ratios

    @property
    def p_value(self) -> float:
        """One-sided exact sign test that the edit grows the echo more than the control does, over the
        detectors where the two differ."""
        return sign_test(*self.sign_counts)

    @property
    def growth(self) -> list[float]:
        """Echo-ratio growth of the edit, per detector."""
        return [r.echo_after - r.echo_before for r in self.reports]

    @property
    def control_growth(self) -> list[float]:
        """Echo-ratio growth of the control edit, per detector."""
        return [c - r.echo_before for r, c in zip(self.reports, self.control_echo_after)]

    @property
    def sign_counts(self) -> tuple[int, int]:
        """``(wins, losses)``: detectors where the edit grows the echo more / less than the control (ties out)."""
        edges = [g - c for g, c in zip(self.growth, self.control_growth)]
        return sum(e > 1e-9 for e in edges), sum(e < -1e-9 for e in edges)

    @property
    def n_echo(self) -> int:
        """Detectors in which the edit makes an echo appear."""
        return sum(g >= ECHO_GROWTH for g in self.growth)

    @property
    def n_control_echo(self) -> int:
        """Detectors in which the control edit makes an echo appear."""
        return sum(g >= ECHO_GROWTH for g in self.control_growth)

    @property
    def strongest(self) -> int:
        """Index (into ``reports``) of the detector whose echo grew most under the edit."""
        growth = self.growth
        return max(range(len(growth)), key=growth.__getitem__)

    def table(self) -> list[dict]:
        return [
            {
                "unit": r.unit,
                "preferred_orientation": round(r.preferred_orientation, 1),
                "opposite_units": len(r.opposite_units),
                "removed_weight": round(r.removed_weight, 4),
                "echo_before": round(r.echo_before, 4),
                "echo_after": round(r.echo_after, 4),
                "control_removed_weight": round(w, 4),
                "control_echo_after": round(c, 4),
            }
            for r, c, w in zip(self.reports, self.control_echo_after, self.control_removed_weight)
        ]

    def summary(self) -> dict:
        best = self.reports[self.strongest]
        return {
            "detectors": len(self.reports),
            "echo": self.n_echo,
            "control_echo": self.n_control_echo,
            "removed_weight": round(sum(r.removed_weight for r in self.reports), 4),
            "control_removed_weight": round(sum(self.control_removed_weight), 4),
            "p_value": self.p_value,
            "median_growth": round(float(torch.tensor(self.growth).median()), 4),
            "median_control_growth": round(float(torch.tensor(self.control_growth).median()), 4),
            "strongest": best.summary(),
        }

    def title(self) -> str:
        best = self.reports[self.strongest]
        return (
            f"echo edit on {len(self.reports)} {self.target} curve detectors: an echo appears in {self.n_echo} "
            f"(control edit: {self.n_control_echo}); the edit grows the echo more than the control in a sign "
            f"test at p = {self.p_value:.2g}; strongest {self.target}:{best.unit}, echo ratio "
            f"{best.echo_before:.2f} -> {best.echo_after:.2f}"
        )

    def __repr__(self) -> str:
        return f"EchoSurvey({self.target}: echo in {self.n_echo}/{len(self.reports)}, control {self.n_control_echo})"


def echo_survey(
    model: nn.Module,
    source: str = "mixed3a",
    target: str = "mixed3b",
    *,
    source_detectors: Sequence[CurveDetector] | None = None,
    target_detectors: Sequence[CurveDetector] | None = None,
    size: int | None = None,
) -> EchoSurvey:
    """:func:`echo` on every ``target`` curve detector, each beside a control edit (see :class:`EchoSurvey`).

    Three tuning sweeps per detector (before, edit, control) on deep copies; ``model`` is untouched.
    """
    source = resolve_layer(model, source)[0]
    target = resolve_layer(model, target)[0]
    src, tgt = _detectors_of(model, source, target, source_detectors, target_detectors, size)
    found = _expansion(model, source, target)
    E = found.weights
    edited = copy.deepcopy(model)  # each edit's hooks leave on exit, so one copy serves them all
    reports, control_curves, control_units, control_removed = [], [], [], []
    for det in tgt:
        opposite = _opposite_units(det, src)
        before = _tuning(model, target, det.unit, size=size)
        delta, after = _remove_inhibition(edited, source, target, det.unit, opposite, found, before, size)
        reports.append(_echo_report(source, target, det.unit, opposite, delta, before, after))
        # The control: as many orthogonal curve detectors, the most inhibitory first (summed over the kernel).
        inhibition = E[det.unit].clamp(max=0).flatten(1).sum(1)
        others = sorted(_orthogonal_units(det, src), key=lambda u: float(inhibition[u]))[: len(opposite)]
        control_delta, control = _remove_inhibition(edited, source, target, det.unit, others, found, before, size)
        control_curves.append(control.orientation_curve()[0])
        control_units.append(others)
        control_removed.append(-float(control_delta.sum()))
    return EchoSurvey(source, target, reports, control_curves, control_units, control_removed)


# --------------------------------------------------------------------------------------------------
# Artificial artificial neural network


def rotate_kernels(kernels: torch.Tensor, degrees: float) -> torch.Tensor:
    """``[..., k, k]`` spatial kernels rotated counter-clockwise (image y up) by ``degrees``, bilinear, zero outside."""
    shape = kernels.shape
    flat = kernels.reshape(-1, 1, *shape[-2:]).double()
    t = math.radians(degrees)
    # affine_grid maps output coords to input coords; y points down in tensor rows, so a counter-clockwise
    # rotation in y-up coordinates samples the input at the clockwise-rotated position.
    theta = torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]], dtype=torch.float64)
    grid = F.affine_grid(theta[None].expand(flat.shape[0], -1, -1), list(flat.shape), align_corners=True)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(shape).to(kernels.dtype)


@dataclass
class ReplacementReport(Result):
    """Accuracy with the downstream curve detectors original, ablated, and replaced by hand-built units.

    Attributes:
        units, orientations: the replaced curve detectors of ``target`` and their preferred orientations.
        source_units: the upstream curve detectors the hand-built units read.
        template_parameters / original_parameters: free weights of the template (one kernel per
            45-degree orientation-difference bin) vs the replaced units' expanded weights from those units.
        fit_r2: ``[U]`` how much of each original unit's pre-ReLU variance its hand-built unit explains
            (on the fit scenes).
        ablated, replaced: :class:`~circuits_vision.analysis.ablation.AblationReport` (``before`` is the
            original model in both).
        curve_classes: class names whose per-class deltas are shown.
        curve_inputs_only: the control that bounds any hand-built unit reading only the source curve
            detectors: each unit rebuilt the same way from its *own* expanded weights from those detectors
            (no template), with ``curve_inputs_r2`` its fit. What the template loses is the gap between
            ``replaced`` and this; what the curve units alone cannot carry, the gap between this and the original.
    """

    source: str
    target: str
    units: list[int]
    orientations: list[float]
    source_units: list[int]
    template_parameters: int
    original_parameters: int
    fit_r2: list[float]
    ablated: AblationReport
    replaced: AblationReport
    curve_classes: list[str]
    curve_inputs_only: AblationReport
    curve_inputs_r2: list[float]

    @property
    def original_accuracy(self) -> float:
        return self.ablated.before

    def table(self) -> list[dict]:
        """Per curve class (then all classes): accuracy original, ablated, hand-built, own curve weights only."""
        rows = []
        for name in self.curve_classes:
            a, r, c = (x.class_delta(name) for x in (self.ablated, self.replaced, self.curve_inputs_only))
            rows.append(
                {
                    "class": name,
                    "n": a.n,
                    "original": a.before,
                    "ablated": a.after,
                    "hand_built": r.after,
                    "curve_inputs_only": c.after,
                }
            )
        rows.append(
            {
                "class": "(all)",
                "n": self.ablated.n,
                "original": self.ablated.before,
                "ablated": self.ablated.after,
                "hand_built": self.replaced.after,
                "curve_inputs_only": self.curve_inputs_only.after,
            }
        )
        return rows

    def summary(self) -> dict:
        return {
            "units": self.units,
            "orientations": self.orientations,
            "source_units": self.source_units,
            "template_parameters": self.template_parameters,
            "original_parameters": self.original_parameters,
            "fit_r2": [round(v, 3) for v in self.fit_r2],
            "curve_inputs_r2": [round(v, 3) for v in self.curve_inputs_r2],
            "n": self.ablated.n,
            "accuracy": {
                "original": self.ablated.before,
                "ablated": self.ablated.after,
                "hand_built": self.replaced.after,
                "curve_inputs_only": self.curve_inputs_only.after,
            },
            "curve_classes": {
                r["class"]: {k: r[k] for k in ("original", "ablated", "hand_built", "curve_inputs_only")}
                for r in self.table()[:-1]
            },
        }

    def __str__(self) -> str:
        lines = [
            f"artificial artificial network: {len(self.units)} {self.target} curve detectors replaced by one "
            f"template rotated to each orientation ({self.template_parameters} template weights for "
            f"{self.original_parameters} expanded weights from {len(self.source_units)} {self.source} curve units; "
            f"median fit R^2 {sorted(self.fit_r2)[len(self.fit_r2) // 2]:.2f})",
            f"  accuracy on {self.ablated.n} scenes: original {100 * self.ablated.before:.1f}% -> ablated "
            f"{100 * self.ablated.after:.1f}% -> hand-built {100 * self.replaced.after:.1f}%",
            f"  control, each unit from its own weights from the same curve units (no template; median fit R^2 "
            f"{sorted(self.curve_inputs_r2)[len(self.curve_inputs_r2) // 2]:.2f}): "
            f"{100 * self.curve_inputs_only.after:.1f}%",
            f"  {'class':<12} {'n':>4} {'original':>9} {'ablated':>8} {'hand-built':>10} {'own curve weights':>18}",
        ]
        for r in self.table()[:-1]:
            lines.append(
                f"  {r['class']:<12} {r['n']:>4} {100 * r['original']:>8.1f}% {100 * r['ablated']:>7.1f}% "
                f"{100 * r['hand_built']:>9.1f}% {100 * r['curve_inputs_only']:>17.1f}%"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"ReplacementReport({len(self.units)} units, {self.ablated.before:.3f} -> {self.ablated.after:.3f} "
            f"-> {self.replaced.after:.3f})"
        )


def _template(E, tgt, src, bins: int = 8):
    """One kernel per orientation-difference bin in each target unit's own frame, and the hand-built kernels.

    ``E [T, S, k, k]`` restricted to the curve detectors. Each pair's kernel is rotated by ``-b_t`` (the
    target's orientation) into a common frame and averaged within its ``delta`` bin; the hand-built
    kernel of pair (t, s) is its bin's template rotated back by ``b_t``. The rotation direction that
    explains more of the weights is used (it depends on the layer's orientation convention).
    """
    b = torch.tensor([d.preferred_orientation for d in tgt])
    a = torch.tensor([d.preferred_orientation for d in src])
    delta = orientation_difference(b[:, None], a[None, :])
    index = torch.remainder(torch.floor((delta + 180.0 + 180.0 / bins) / (360.0 / bins)), bins).long()
    best = None
    for sign in (1.0, -1.0):
        canonical = torch.stack([rotate_kernels(E[j], -sign * float(b[j])) for j in range(len(tgt))])
        template = torch.stack(
            [
                canonical[index == k].mean(0) if bool((index == k).any()) else torch.zeros(E.shape[-2:], dtype=E.dtype)
                for k in range(bins)
            ]
        )
        built = torch.stack([rotate_kernels(template[index[j]], sign * float(b[j])) for j in range(len(tgt))])
        error = float(((built - E) ** 2).sum())
        if best is None or error < best[0]:
            best = (error, built, template)
    return best[1], best[2]


@torch.no_grad()
def replace_curve_detectors(
    model: nn.Module,
    data,
    source: str = "mixed3a",
    target: str = "mixed3b",
    *,
    fit_images: torch.Tensor,
    curve_classes: Sequence[str] | None = None,
    logits=None,
    source_detectors: Sequence[CurveDetector] | None = None,
    target_detectors: Sequence[CurveDetector] | None = None,
) -> ReplacementReport:
    """Replace ``target``'s curve detectors by hand-built ones and compare accuracy three ways.

    Each hand-built unit reads only the ``source`` curve detectors, through kernels made from one
    template (:func:`_template`: a kernel per 45-degree orientation-difference bin, rotated to the
    unit's orientation). Its output is ``ReLU(alpha * conv(source curves, kernels) + beta)`` with the two
    numbers fitted by least squares to the original unit's pre-ReLU value on ``fit_images`` (scenes
    disjoint from ``data``), as Curve Circuits set the scale of its hand-written weights. The control
    ``curve_inputs_only`` rebuilds each unit the same way from its own weights from those detectors. ``data`` and
    ``logits`` are as in :func:`~circuits_vision.analysis.ablation.ablate`; ``curve_classes`` the class
    names to report (default: names starting with ``curve``).
    """
    source = resolve_layer(model, source)[0]
    target = resolve_layer(model, target)[0]
    src = list(source_detectors) if source_detectors is not None else find_curve_detectors(model, source).detectors
    tgt = list(target_detectors) if target_detectors is not None else find_curve_detectors(model, target).detectors
    if len(src) < 2 or len(tgt) < 2:
        raise ValueError(
            f"needs >= 2 curve detectors in each layer; found {len(src)} in {source!r}, {len(tgt)} in {target!r}"
        )
    found = _expansion(model, source, target)
    s_units, t_units = [d.unit for d in src], [d.unit for d in tgt]
    E = found.weights[t_units][:, s_units].double()
    built, template = _template(E, tgt, src)

    def kernels_from(part):  # [T, S, k, k] on the curve units -> {unit: [C_source, k, k]}
        out = {}
        for j, unit in enumerate(t_units):
            kernel = torch.zeros(found.weights.shape[1:], dtype=torch.float64)
            kernel[s_units] = part[j]
            out[unit] = kernel.float()
        return out

    full, own = kernels_from(built), kernels_from(E)

    # Fit alpha, beta per unit against the original pre-ReLU values on the fit scenes.
    captured = {}
    hooks = [get_layer(model, source).register_forward_hook(lambda m, i, o: captured.__setitem__("src", o))]
    for unit in t_units:
        relu, channel = _branch_of(model, target, unit)
        hooks.append(
            get_layer(model, f"{relu}_pre_relu_conv").register_forward_hook(
                lambda m, i, o, unit=unit, channel=channel: captured.__setitem__(unit, o[:, channel])
            )
        )
    try:
        with eval_mode(model):
            model(fit_images)
    finally:
        for h in hooks:
            h.remove()

    def fit(kernels):  # -> ({unit: (alpha, beta)}, [U] R^2) against the original pre-ReLU values
        scale_bias, r2 = {}, []
        for unit in t_units:
            x = _delta_conv(captured["src"], kernels[unit], found.offset)[:, 0].flatten().double()
            y = captured[unit].flatten().double()
            design = torch.stack([x, torch.ones_like(x)], 1)
            coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
            residual = y - design @ coef
            r2.append(float(1 - residual.var() / y.var().clamp_min(1e-30)))
            scale_bias[unit] = (float(coef[0]), float(coef[1]))
        return scale_bias, r2

    scale_bias, r2 = fit(full)
    own_scale_bias, own_r2 = fit(own)

    ablated_report = ablate(model, {target: t_units}, data, logits=logits)

    def rebuilt(kernels, coefficients):
        def replacement(inputs, output):  # -> [N, U, h, w], from the source activations of the same forward
            act = captured["src"]
            return torch.stack(
                [
                    F.relu(a * _delta_conv(act, kernels[u], found.offset)[:, 0] + b)
                    for u, (a, b) in ((u, coefficients[u]) for u in t_units)
                ],
                1,
            )

        return replacement

    hook = get_layer(model, source).register_forward_hook(lambda m, i, o: captured.__setitem__("src", o))
    try:
        replaced_report = ablate(
            model, {target: t_units}, data, logits=logits, replacement={target: rebuilt(full, scale_bias)}
        )
        own_report = ablate(
            model, {target: t_units}, data, logits=logits, replacement={target: rebuilt(own, own_scale_bias)}
        )
    finally:
        hook.remove()
    names = [c.name for c in ablated_report.classes]
    classes = list(curve_classes) if curve_classes is not None else [n for n in names if n.startswith("curve")]
    return ReplacementReport(
        source,
        target,
        t_units,
        [d.preferred_orientation for d in tgt],
        s_units,
        int(template.numel()),
        int(E.numel()),
        r2,
        ablated_report,
        replaced_report,
        classes,
        own_report,
        own_r2,
    )


def replace_curve_detectors_on_scenes(
    model: nn.Module,
    source: str = "mixed3a",
    target: str = "mixed3b",
    *,
    source_detectors: Sequence[CurveDetector] | None = None,
    target_detectors: Sequence[CurveDetector] | None = None,
    n: int = REPLACEMENT_SCENES,
    seed: int = REPLACEMENT_SEED,
) -> ReplacementReport:
    """:func:`replace_curve_detectors` scored on ``n`` fresh scenes of ``stimuli.scenes`` drawn from ``seed``.

    The templates are fitted on 256 more scenes drawn from ``seed + 1``; accuracy is that of the model's
    ``shape`` head (``model.heads``, as the shapes model has), so the report, the shipped model's
    measurements and its tests score the same experiment.
    """
    heads = getattr(model, "heads", None)
    if not heads or "shape" not in heads:
        raise ValueError(
            "replace_curve_detectors_on_scenes needs a model trained on the labelled scenes of "
            "circuits_vision.stimuli.scenes (heads with a 'shape' head, as the shapes model has); "
            "use replace_curve_detectors with your own data"
        )
    from circuits_vision.stimuli import scenes

    images, labels = scenes.random_scenes(int(n), torch.Generator().manual_seed(int(seed)))
    fit, _ = scenes.random_scenes(256, torch.Generator().manual_seed(int(seed) + 1))
    return replace_curve_detectors(
        model,
        (images, labels["shape"], scenes.SHAPE_CLASSES),
        source,
        target,
        fit_images=fit,
        logits=slice(0, heads["shape"]),
        source_detectors=source_detectors,
        target_detectors=target_detectors,
    )
