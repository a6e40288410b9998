"""The ground truth planted models carry, as typed records (``model.truth``).

Each record is a frozen dataclass that also reads like the nested dicts it replaces, so both
``truth.curves.units`` and ``truth["curves"]["units"]`` work; its keys are the fields that are set
(not ``None``). Unit numbers are channel indices of the record's ``layer``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch

__all__ = [
    "BranchBlockTruth",
    "CircuitInputs",
    "CurveCircuitTruth",
    "CurveLayer",
    "DownstreamTruth",
    "EdgeLayer",
    "HueFamilyTruth",
    "HueLayer",
    "MirrorLayer",
    "ReflectionTruth",
    "SuperpositionTruth",
    "UnionTruth",
]


class _Record(Mapping):
    """Read access by key (``record["units"]``), over the fields whose value is not ``None``."""

    def _keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str):
        if isinstance(key, str) and key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


@dataclass(frozen=True, eq=True)
class EdgeLayer(_Record):
    """Line detectors: each unit's orientation (degrees, 0..180) and polarity ("bright" or "dark")."""

    layer: str
    units: list[int]
    orientation_deg: dict[int, float]
    polarity: dict[int, str]


@dataclass(frozen=True, eq=True)
class CurveLayer(_Record):
    """Curve detectors: the orientation each faces (degrees, 0..360) and the arcs' radius in pixels."""

    layer: str
    units: list[int]
    orientation_deg: dict[int, float]
    radius_px: float | None = None


@dataclass(frozen=True, eq=True)
class CircuitInputs(_Record):
    """The edge units a curve unit is excited by (along the tangent at its apex) and inhibited by."""

    excite: list[int]
    inhibit: list[int]


@dataclass(frozen=True, eq=True)
class UnionTruth(_Record):
    """A unit that responds to either of two cases (curves facing ``cases_deg``) and not to ``not_deg``."""

    layer: str
    unit: int
    cases_deg: list[float]
    not_deg: list[float]
    case_units: list[int]


@dataclass(frozen=True, eq=True)
class CurveCircuitTruth(_Record):
    """:func:`~circuits_vision.models.planted.curve_circuit`, its random control and the union unit.

    ``rotation_step_deg``: the angle between consecutive curve units; rotating a curve by one step
    moves its edge inputs by ``edge_shift_per_step`` orientation channels. The random control sets
    ``seed`` and leaves every family empty; ``union_unit`` adds ``union``.
    """

    edges: EdgeLayer
    curves: CurveLayer
    circuit: dict[int, CircuitInputs]
    rotation_step_deg: float | None = None
    edge_shift_per_step: int | None = None
    seed: int | None = None
    union: UnionTruth | None = None


@dataclass(frozen=True, eq=True)
class HueLayer(_Record):
    """Colour units: the hue each prefers (degrees around the grey axis, 0 = red)."""

    layer: str
    units: list[int]
    hue_deg: dict[int, float]


@dataclass(frozen=True, eq=True)
class HueFamilyTruth(_Record):
    hues: HueLayer


@dataclass(frozen=True, eq=True)
class MirrorLayer(_Record):
    """Units in left/right mirror ``pairs`` (``b`` is ``a`` with ``x -> -x``) and their own mirrors."""

    layer: str
    units: list[int]
    pairs: list[tuple[int, int]]
    self_symmetric: list[int]
    normal_deg: dict[int, float] | None = None


@dataclass(frozen=True, eq=True)
class ReflectionTruth(_Record):
    lines: MirrorLayer
    corners: MirrorLayer


@dataclass(frozen=True, eq=True)
class DownstreamTruth(_Record):
    """The layer after the block and which category feeds each of its units."""

    layer: str
    fed_by: dict[int, str]


@dataclass(frozen=True, eq=True)
class BranchBlockTruth(_Record):
    """:func:`~circuits_vision.models.planted.branch_block`: branch channel ranges, unit categories,
    the branch each category sits in (``None`` when spread), oriented units, colour units' hues."""

    layer: str
    branches: dict[str, tuple[int, int]]
    categories: dict[str, list[int]]
    branch_of_category: dict[str, str | None]
    orientation: dict[str, list[int]]
    color_hue_deg: dict[int, float]
    downstream: DownstreamTruth
    specialized: bool
    seed: int


@dataclass(frozen=True, eq=False)
class SuperpositionTruth(_Record):
    """The unit direction ``[n_neurons]`` each of ``F`` features is written along: ``directions [F, n_neurons]``."""

    directions: torch.Tensor = field(repr=False)
    layer: str = "neurons"
