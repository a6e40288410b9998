"""Circuit motifs between feature families ("Curve Circuits", "Naturally Occurring Equivariance").

All functions take expanded weights ``E [C_target, C_source, kh, kw]`` between two layers (see
:func:`circuits_vision.weights.expanded_weights`) and families from
:mod:`circuits_vision.analysis.equivariance` (members with angles):

- :func:`equivariant_circuit`: does the weight from source member ``i`` (angle ``a``) to target member
  ``j`` (angle ``b``) depend only on ``b - a``, rotated by ``a``? A score against a shuffled-angle null,
  and the parameter reduction the symmetry buys.
- :func:`curve_pattern`: similar orientations excite, opposite ones inhibit.
- :func:`union_units`: units fed by two units that are transformations of each other.
- :func:`invariant_transitions`: families feeding an invariant unit (curves -> circle) and
  invariant units feeding a whole family.
- :func:`zero_inhibition` / :func:`echo_experiment`: edit the circuit on a deep copy of the model and
  measure how the downstream tuning changes (the "echo" experiment of Curve Circuits);
  :func:`restrict` keeps the members of a family one edit can reach.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits_vision.analysis._circuit_edit import ConvLinks, conv_links, layer_read_by
from circuits_vision.analysis.equivariance import Family, circular_difference
from circuits_vision.analysis.equivariance import transforms as T
from circuits_vision.hooks import model_input_size
from circuits_vision.results import Result

__all__ = [
    "CircuitEquivariance",
    "CurvePattern",
    "EchoResult",
    "Transition",
    "UnionUnit",
    "curve_pattern",
    "echo_experiment",
    "equivariant_circuit",
    "invariant_transitions",
    "restrict",
    "union_units",
    "zero_inhibition",
]


def _check_block(weights: torch.Tensor, source: Family, target: Family) -> None:
    if weights.ndim != 4:
        raise ValueError(f"weights must be expanded weights [C_target, C_source, kh, kw], got {tuple(weights.shape)}")
    for name, fam, width in (("source", source, weights.shape[1]), ("target", target, weights.shape[0])):
        bad = [u for u in fam.members if not 0 <= u < width]
        if bad:
            raise IndexError(
                f"{name} family members {bad} are outside the weights' {width} {name} channels "
                f"(weights are [C_target={weights.shape[0]}, C_source={weights.shape[1]}, kh, kw])"
            )


def _angles(fam: Family) -> torch.Tensor:
    return torch.tensor([fam.values[u] for u in fam.members], dtype=torch.float64)


def _step(fam: Family) -> float:
    return float(fam.period or 360.0) / max(len(fam.members), 1)


# --------------------------------------------------------------------------------------------------
# Equivariant circuits


@dataclass(repr=False)
class CircuitEquivariance(Result):
    """How well the weights between two families follow the rotation symmetry.

    Attributes:
        score: fraction of the (canonicalised) weight energy explained by one kernel per relative angle
            (1 = the weights depend only on ``b - a`` and rotate with ``a``).
        null_score: the same with the members' angles shuffled (mean over shuffles): what the score is
            without the symmetry.
        relative_angles: the relative angles ``b - a`` (deg) that occur, one kernel each.
        kernels: ``[len(relative_angles), kh, kw]`` the canonical kernel per relative angle.
        n_weights: numbers in the block without the symmetry (target x source members x kh x kw).
        n_parameters: numbers with it (one kernel per relative angle).
        reduction: ``n_weights / n_parameters``.
    """

    score: float
    null_score: float
    relative_angles: list[float]
    kernels: torch.Tensor
    n_weights: int
    n_parameters: int
    reduction: float

    def table(self) -> list[dict]:
        """One row per relative angle: its canonical kernel's energy (sum of squares) and net weight."""
        return [
            {"relative_angle": a, "energy": float(k.pow(2).sum()), "net_weight": float(k.sum())}
            for a, k in zip(self.relative_angles, self.kernels)
        ]


def equivariant_circuit(
    weights: torch.Tensor,
    source: Family,
    target: Family,
    *,
    shuffles: int = 8,
    generator: torch.Generator | None = None,
) -> CircuitEquivariance:
    """Test that ``weights[j, i]`` (source member ``i`` at angle ``a`` -> target member ``j`` at ``b``) is
    ``R_a(K_{b-a})`` for one kernel ``K_d`` per relative angle ``d``.

    Each block kernel is rotated back by its source angle (``R_{-a}``), grouped by ``d = b - a``
    (rounded to the finer family step), and ``score = 1 - residual energy / energy`` of the groups around
    their means, inside the disk that rotation keeps. ``null_score`` repeats it with the angles of both
    families shuffled (``generator``; default seed 0).
    """
    _check_block(weights, source, target)
    if weights.shape[-1] < 3 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(
            f"the circuit's kernels are {tuple(weights.shape[-2:])}: equivariance needs square kernels of >= 3x3"
        )
    block = weights[target.members][:, source.members].double()  # [m_t, m_s, k, k]
    a, b = _angles(source), _angles(target)
    step = min(_step(source), _step(target))
    score, kernels, classes = _explained(block, a, b, step)
    generator = generator or torch.Generator().manual_seed(0)
    nulls = []
    for _ in range(shuffles):
        pa = a[torch.randperm(len(a), generator=generator)]
        pb = b[torch.randperm(len(b), generator=generator)]
        nulls.append(_explained(block, pa, pb, step)[0])
    n_weights = block.shape[0] * block.shape[1] * block.shape[2] * block.shape[3]
    n_parameters = len(classes) * block.shape[2] * block.shape[3]
    return CircuitEquivariance(
        score=score,
        null_score=float(sum(nulls) / max(len(nulls), 1)),
        relative_angles=classes,
        kernels=kernels.float(),
        n_weights=n_weights,
        n_parameters=n_parameters,
        reduction=n_weights / n_parameters,
    )


def _explained(block: torch.Tensor, a: torch.Tensor, b: torch.Tensor, step: float):
    m_t, m_s, k, _ = block.shape
    mask = T.disk_mask(k, block)
    canonical = torch.empty_like(block)
    for i in range(m_s):  # one rotation per source member, all its target kernels at once
        canonical[:, i] = T.rotate(block[:, i : i + 1], -float(a[i]))[:, 0] * mask
    d = torch.remainder(torch.round((b[:, None] - a[None, :]) / step) * step, 360.0)  # [m_t, m_s]
    classes = sorted(set(d.flatten().tolist()))
    kernels, residual = [], 0.0
    for c in classes:
        members = canonical[d == c]
        mean = members.mean(0)
        kernels.append(mean)
        residual += float(((members - mean) ** 2).sum())
    energy = float((canonical**2).sum()).__float__()
    score = 1.0 - residual / energy if energy > 0 else 0.0
    return score, torch.stack(kernels), classes


# --------------------------------------------------------------------------------------------------
# Curve-circuit pattern


@dataclass(repr=False)
class CurvePattern(Result):
    """Net weight between two families as a function of their relative angle.

    Attributes:
        relative_angles: ``[K]`` relative angles ``b - a`` (deg, mod ``period``), the profile's x axis.
        net_weight: ``[K]`` mean summed kernel weight of the pairs at each relative angle.
        aligned: the relative angle with the most excitation (the families' conventions may differ by an
            offset; "similar orientation" is this angle).
        opposite: ``aligned + period / 2``.
        excites_aligned / inhibits_opposite: the pattern's two halves.
    """

    relative_angles: list[float]
    net_weight: list[float]
    aligned: float
    opposite: float
    period: float
    excites_aligned: bool
    inhibits_opposite: bool

    def table(self) -> list[dict]:
        """The profile: one row per relative angle with its net weight."""
        return [{"relative_angle": a, "net_weight": w} for a, w in zip(self.relative_angles, self.net_weight)]

    @property
    def holds(self) -> bool:
        return self.excites_aligned and self.inhibits_opposite


def curve_pattern(
    weights: torch.Tensor, source: Family, target: Family, *, aligned: float | None = None
) -> CurvePattern:
    """Similar orientations excite, opposite ones inhibit? ``weights [C_target, C_source, kh, kw]``.

    The period is the smaller of the two families' (lines are 180-periodic, so their "opposite" is
    90 degrees away; curves are 360-periodic, opposite = 180 degrees). ``aligned``: the relative angle
    that means "same orientation" when both families' angles share a convention (e.g. 0 for preferred
    orientations from tuning curves); by default the most excitatory relative angle (families found
    from weights have their own reference members, so the offset is not known in advance).
    """
    _check_block(weights, source, target)
    net = weights[target.members][:, source.members].double().sum(dim=(-2, -1))  # [m_t, m_s]
    a, b = _angles(source), _angles(target)
    period = min(float(source.period or 360.0), float(target.period or 360.0))
    step = min(_step(source), _step(target))
    d = torch.remainder(torch.round((b[:, None] - a[None, :]) / step) * step, period)
    classes = sorted(set(d.flatten().tolist()))
    profile = [float(net[d == c].mean()) for c in classes]
    if aligned is None:
        best = max(range(len(classes)), key=lambda k: profile[k])
    else:
        best = min(
            range(len(classes)),
            key=lambda k: abs(float(circular_difference(torch.tensor(classes[k] - aligned), period))),
        )
    aligned = classes[best]
    opposite = (aligned + period / 2) % period
    nearest = min(
        range(len(classes)), key=lambda k: abs(float(circular_difference(torch.tensor(classes[k] - opposite), period)))
    )
    return CurvePattern(classes, profile, aligned, opposite, period, profile[best] > 0, profile[nearest] < 0)


# --------------------------------------------------------------------------------------------------
# Union over cases and invariant <-> equivariant transitions


@dataclass
class UnionUnit:
    """Target ``unit`` is fed by ``cases``, two members of one family (transformations of each other)."""

    unit: int
    cases: tuple[int, int]
    case_values: tuple[float, float]
    balance: float
    """min / max of the two cases' net weights (1 = equal)."""
    share: float
    """the two cases' share of the unit's total positive input from the family."""


def union_units(
    weights: torch.Tensor,
    family: Family,
    *,
    min_balance: float = 0.5,
    min_share: float = 0.6,
    min_separation: float = 60.0,
) -> list[UnionUnit]:
    """Target units whose two strongest positive inputs from ``family`` are members ``min_separation``
    degrees or more apart, with balanced weights (``>= min_balance``) that carry ``>= min_share`` of the
    unit's positive input from the family — "the union of two cases" (e.g. left- and right-facing).
    """
    if weights.ndim != 4:
        raise ValueError(f"weights must be [C_target, C_source, kh, kw], got {tuple(weights.shape)}")
    _check_block(weights, family, Family("rotation", [], {}, 0, None, 0.0))
    if len(family.members) < 2:
        return []
    net = weights[:, family.members].double().sum(dim=(-2, -1))  # [C_t, m]
    positive = net.clamp_min(0)
    found = []
    period = float(family.period or 360.0)
    for unit in range(net.shape[0]):
        top = torch.topk(positive[unit], 2)
        w1, w2 = float(top.values[0]), float(top.values[1])
        total = float(positive[unit].sum())
        if w2 <= 0 or total <= 0:
            continue
        i, j = (family.members[int(k)] for k in top.indices)
        separation = abs(float(circular_difference(torch.tensor(family.values[i] - family.values[j]), period)))
        balance, share = w2 / w1, (w1 + w2) / total
        if balance >= min_balance and share >= min_share and separation >= min_separation:
            found.append(
                UnionUnit(unit, (i, j), (family.values[i], family.values[j]), round(balance, 4), round(share, 4))
            )
    return found


@dataclass
class Transition:
    """An invariant unit and a family: ``direction`` "family->invariant" (curves -> circle) or
    "invariant->family"; ``uniformity`` = 1 - coefficient of variation of the members' weights."""

    direction: str
    unit: int
    family_members: list[int]
    uniformity: float
    mean_weight: float
    rotates: float | None = None
    """invariant->family only: mean cosine of ``R_{-b}(kernel to member)`` across members (the kernels
    rotate with the member's angle)."""


def invariant_transitions(
    weights: torch.Tensor,
    source_family: Family | None = None,
    target_family: Family | None = None,
    *,
    min_uniformity: float = 0.7,
    min_rotation: float = 0.8,
) -> list[Transition]:
    """Invariant <-> equivariant transitions in ``weights [C_target, C_source, kh, kw]``.

    With ``source_family``: target units fed positively and about equally by every member (all net
    weights > 0 and ``1 - std/mean >= min_uniformity``): the family is pooled into an invariant unit.
    With ``target_family``: source units feeding every member about equally with kernels that rotate
    with the member (mean cosine of the back-rotated kernels >= ``min_rotation``).
    """
    found = []
    if source_family is not None:
        _check_block(weights, source_family, Family("rotation", [], {}, 0, None, 0.0))
        net = weights[:, source_family.members].double().sum(dim=(-2, -1))
        for unit in range(net.shape[0]):
            row = net[unit]
            if len(row) >= 3 and bool((row > 0).all()):
                uniformity = 1 - float(row.std() / row.mean())
                if uniformity >= min_uniformity:
                    found.append(
                        Transition(
                            "family->invariant",
                            unit,
                            list(source_family.members),
                            round(uniformity, 4),
                            float(row.mean()),
                        )
                    )
    if target_family is not None:
        _check_block(weights, Family("rotation", [], {}, 0, None, 0.0), target_family)
        block = weights[target_family.members].double()  # [m, C_s, k, k]
        b = _angles(target_family)
        net = block.sum(dim=(-2, -1))  # [m, C_s]
        for unit in range(block.shape[1]):
            col = net[:, unit]
            if len(col) < 3 or not bool((col > 0).all()):
                continue
            uniformity = 1 - float(col.std() / col.mean())
            if uniformity < min_uniformity:
                continue
            rotates = None
            if block.shape[-1] >= 3:
                back = torch.stack([T.rotate(block[m, unit][None, None], -float(b[m]))[0, 0] for m in range(len(b))])
                flat = T.normalised_flat(back[:, None], T.disk_mask(back.shape[-1], back))
                cos = flat @ flat.T
                rotates = float((cos.sum() - cos.diagonal().sum()) / (len(b) * (len(b) - 1)))
                if rotates < min_rotation:
                    continue
            found.append(
                Transition(
                    "invariant->family",
                    unit,
                    list(target_family.members),
                    round(uniformity, 4),
                    float(col.mean()),
                    rotates,
                )
            )
    return found


# --------------------------------------------------------------------------------------------------
# Editing a circuit: the echo experiment


def restrict(family: Family, members) -> Family:
    """``family`` with only ``members`` (in the family's order); values keep their reference, so angles
    between the kept members do not change."""
    keep = [int(u) for u in members]
    outside = [u for u in keep if u not in family.values]
    if outside:
        raise ValueError(f"units {outside} are not members of the family (members: {family.members})")
    if not keep:
        raise ValueError("members is empty: keep at least one member of the family")
    ordered = [u for u in family.members if u in keep]
    reference = family.reference if family.reference in ordered else ordered[0]
    return Family(
        family.kind,
        ordered,
        {u: family.values[u] for u in ordered},
        reference,
        family.period,
        family.score,
        {u: c for u, c in family.confidence.items() if u in ordered},
        family.residual,
    )


def _edited_convs(
    model: nn.Module, source: str, target: str, source_family: Family, target_family: Family
) -> dict[int, tuple[str, int]]:
    """``{target member: (conv name, output channel)}``: the conv reading ``source`` that writes each member.

    Raises ValueError naming the members no such conv writes, what writes them instead, and the fix.
    """
    if not target_family.members or not source_family.members:
        raise ValueError("the source and target families need at least one member each")
    links = conv_links(model, source, target)
    direct = links.direct(list(target_family.members))
    missing = [j for j in target_family.members if j not in direct]
    if missing:
        raise ValueError(_unreachable(model, links, missing, sorted(direct)))
    modules = dict(model.named_modules())
    for conv_name in {name for name, _ in direct.values()}:
        width = modules[conv_name].in_channels
        bad = [i for i in source_family.members if not 0 <= i < width]
        if bad:
            raise IndexError(f"source family members {bad} are outside layer {source!r}'s {width} channels")
    return direct


def _unreachable(model: nn.Module, links: ConvLinks, missing: list[int], reachable: list[int]) -> str:
    source, target = links.source, links.target
    if not links.readers:
        return (
            f"no single convolution connects layer {source!r} to layer {target!r}: no convolution reads {source!r} "
            f"as it is; editing needs one conv from the source's channels to the target's channels. Pick adjacent "
            f"layers (the source must be the input of the conv that writes the target)"
        )
    by_conv: dict[str, list[int]] = {}
    for j in missing:
        by_conv.setdefault(links.writer[j][0] if j in links.writer else "", []).append(j)
    parts = []
    for conv_name, members in by_conv.items():
        shown = f"{members[:8]}" + (f" and {len(members) - 8} more" if len(members) > 8 else "")
        if not conv_name:
            parts.append(
                f"target members {shown} are not a convolution's output (or its ReLU) at all: a "
                f"normalisation or pool sits between their conv and {target!r}"
            )
            continue
        read = layer_read_by(model, links.conv_inputs[conv_name]) if conv_name in links.conv_inputs else None
        parts.append(
            f"target members {shown} are written by {conv_name!r}, which reads "
            f"{repr(read) if read else 'another layer'}, not {source!r}"
            + (f" (edit them with source={read!r})" if read else "")
        )
    fix = f"; or keep the members one edit reaches: motifs.restrict(target_family, {reachable})" if reachable else ""
    return (
        f"no single convolution connects layer {source!r} to all of the target family in {target!r} (convolutions "
        f"reading {source!r} directly: {links.readers}): "
        + "; ".join(parts)
        + ". Editing needs the weights of the conv that reads the source's channels and writes the target's"
        + fix
    )


def zero_inhibition(
    model: nn.Module,
    source: str,
    target: str,
    source_family: Family,
    target_family: Family,
    *,
    which: str = "opposite",
    tolerance: float | None = None,
) -> tuple[nn.Module, int]:
    """A deep copy of ``model`` with the inhibitory weights from ``source_family`` to ``target_family`` zeroed.

    The weights are those of the convolution that reads ``source`` and writes each target member's channel
    directly (found by probing). A member written by a conv behind another layer (an Inception branch's
    bottleneck) is a clear error that names that layer as the source to use, and the members one edit
    can reach (:func:`restrict`). ``which="opposite"`` zeroes only pairs whose relative angle is within
    ``tolerance`` (default: one family step) of the opposite of the most excitatory relative angle
    (see :func:`curve_pattern`); ``"all"`` every pair.
    Returns the edited copy and how many weights were zeroed; ``model`` itself is untouched.
    """
    if which not in ("opposite", "all"):
        raise ValueError(f"which must be 'opposite' or 'all', got {which!r}")
    out_channel = _edited_convs(model, source, target, source_family, target_family)
    edited = copy.deepcopy(model)
    modules = dict(edited.named_modules())
    rows = {
        j: modules[name].weight.detach()[c] for j, (name, c) in out_channel.items()
    }  # views: edits land in the copy
    shapes = {tuple(w.shape) for w in rows.values()}
    if len(shapes) > 1:
        raise ValueError(
            f"the target members are written by convolutions with different kernels {sorted(shapes)}; "
            f"edit one conv's members at a time (motifs.restrict)"
        )
    selected = torch.ones(len(target_family.members), len(source_family.members), dtype=torch.bool)
    if which == "opposite":
        first = next(iter(rows.values()))
        kernels = first.new_zeros((max(target_family.members) + 1, *first.shape))
        for j, w in rows.items():
            kernels[j] = w
        pattern = curve_pattern(kernels, source_family, target_family)
        tol = tolerance if tolerance is not None else min(_step(source_family), _step(target_family))
        a, b = _angles(source_family), _angles(target_family)
        d = torch.remainder(b[:, None] - a[None, :], pattern.period)
        selected = circular_difference(d - pattern.opposite, pattern.period).abs() <= tol + 1e-6
    zeroed = 0
    with torch.no_grad():
        for jj, j in enumerate(target_family.members):
            for ii, i in enumerate(source_family.members):
                if selected[jj, ii]:
                    w = rows[j][i]
                    negative = w < 0
                    zeroed += int(negative.sum())
                    w[negative] = 0.0
    return edited, zeroed


@dataclass(repr=False)
class EchoResult(Result):
    """Tuning of the target family before and after zeroing inhibition.

    Attributes:
        orientations: ``[A]`` stimulus orientations (deg).
        before, after: ``[m, A]`` responses of the target members (in member order).
        echo_before, echo_after: ``[m]`` response at preferred + 180 deg over the response at preferred.
        zeroed: how many weights were set to 0.
    """

    units: list[int]
    orientations: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    echo_before: torch.Tensor
    echo_after: torch.Tensor
    zeroed: int
    notes: list[str] = field(default_factory=list)

    def table(self) -> list[dict]:
        """One row per target member: its echo before and after zeroing the inhibition."""
        return [
            {"unit": u, "echo_before": float(b), "echo_after": float(a)}
            for u, b, a in zip(self.units, self.echo_before.tolist(), self.echo_after.tolist())
        ]


def echo_experiment(
    model: nn.Module,
    source: str,
    target: str,
    source_family: Family,
    target_family: Family,
    *,
    which: str = "all",
    orientations: int = 36,
    radius: float | None = None,
    thickness: float | None = None,
) -> EchoResult:
    """Zero the inhibitory weights between the families (on a copy) and compare the target's curve tuning.

    Stimuli: :func:`circuits_vision.stimuli.curves` (black on white) at ``orientations`` evenly spaced
    orientations, centred on the target's receptive field; radius and thickness default to 1/6 and 1/16
    of the model's input size. The "echo" is the response to the curve facing the opposite way.
    """
    from circuits_vision import stimuli
    from circuits_vision.analysis.tuning import tuning_curves

    edited, zeroed = zero_inhibition(model, source, target, source_family, target_family, which=which)
    size = model_input_size(model)
    fixed = {"radius": radius or size / 6, "thickness": thickness or max(size / 16, 1.0)}
    angles = torch.arange(orientations, dtype=torch.float32) * (360.0 / orientations)
    curves = []
    for net in (model, edited):
        tc = tuning_curves(
            net,
            target,
            target_family.members,
            stimuli.curves,
            {"orientation": angles},
            fixed=fixed,
            baseline=(torch.zeros(len(target_family.members)), torch.ones(len(target_family.members))),
        )
        curves.append(tc.orientation_curve())
    before, after = curves
    peak = before.argmax(1)
    opposite = (peak + orientations // 2) % orientations
    rows = torch.arange(len(peak))

    def echo(curve):
        return curve[rows, opposite] / curve[rows, peak].clamp_min(1e-12)

    return EchoResult(list(target_family.members), angles, before, after, echo(before), echo(after), zeroed)
