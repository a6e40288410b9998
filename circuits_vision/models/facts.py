"""Published unit-level facts about InceptionV1 from the Distill Circuits thread, with their sources.

The facts are packaged as ``circuits_vision/data/inceptionv1_circuits_facts.json``, extracted from the
articles' source repositories (commits in :func:`source_commits`). Unit ids are channel indices into
the layers of lucid's InceptionV1 (:func:`circuits_vision.models.inceptionv1`), e.g. ``mixed3b`` 379.
Every accessor returns a fresh copy, so callers may modify what they get::

    from circuits_vision.models import facts
    facts.families("mixed3b")["Curves"]     # [379, 406, 385, 343, 342, 388, 340, 330, 349, 324]
    facts.curve_orientations("mixed3b")     # {379: 243.0, 406: 268.5, ...}
    facts.source("families")               # 'distillpub/post--circuits-early-overview:layer_data/...'
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

from circuits_vision.errors import UnknownNameError, close_names, did_you_mean

FACTS_FILE = "inceptionv1_circuits_facts.json"

# Friendlier names for the top-level keys of the facts file, as accepted by source() and notes().
_KEY_ALIASES = {
    "curve_orientations": "curve_preferred_orientation_deg",
    "aligned_curve_pairs": "aligned_curve_pairs_3a_to_3b",
    "high_low_frequency_units": "high_low_frequency",
    "branch_specialization": "branch_specialization_claims",
    "branch_specialization_categories": "branch_specialization_claims",
    "branch_specialization_figure5_categories": "branch_specialization_claims",
    "equivariance": "equivariance_examples",
}


class UnknownFactError(UnknownNameError):
    """A layer, family or key with no published fact; the message lists the valid choices."""


@functools.lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files("circuits_vision").joinpath("data", FACTS_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def all_facts() -> dict[str, Any]:
    """The whole facts file as a dict (a copy)."""
    return copy.deepcopy(_raw())


def about() -> str:
    """What the facts are, how they were extracted, and the conventions they follow."""
    return _raw()["about"]


def _pick(table: dict[str, Any], key: str, what: str) -> Any:
    if key not in table:
        close = close_names(key, table, n=3)
        hint = f" ({did_you_mean(close)})" if close else ""
        raise UnknownFactError(f"no {what} {key!r}{hint}; known: {sorted(table)}", close)
    return copy.deepcopy(table[key])


def layer_widths() -> dict[str, int]:
    """Channels of every named layer of lucid's InceptionV1 (conv2d0 64 ... mixed5b 1024)."""
    return copy.deepcopy(_raw()["layer_widths"])


def layer_width(layer: str) -> int:
    return _pick(_raw()["layer_widths"], layer, "layer")


def family_layers() -> list[str]:
    """Layers with published families: conv2d0..mixed3b complete, mixed4a..mixed4d partial."""
    return list(_raw()["families"])


def published_layers() -> list[str]:
    """Layers whose families are complete partitions, as published in "An Overview of Early Vision"."""
    return list(_raw()["families_notes"]["published_layers"])


def families(layer: str) -> dict[str, list[int]]:
    """``{family name: unit ids}`` of ``layer`` in the source's order (names exactly as published)."""
    return _pick(_raw()["families"], layer, "families for layer")


def family(layer: str, name: str) -> list[int]:
    """Unit ids of one family, e.g. ``family("mixed3a", "BW vs Color")``."""
    return _pick(families(layer), name, f"family in {layer}: family")


def families_of(layer: str, unit: int) -> list[str]:
    """Names of the families of ``layer`` that list ``unit`` (one for published layers)."""
    return [name for name, units in families(layer).items() if unit in units]


def curve_orientations(layer: str) -> dict[int, float]:
    """Curve detectors' preferred orientations ``{unit: degrees}`` (argmax of the radial tuning curve,
    in the Curve Detectors article's stimulus-rotation convention) for conv2d2, mixed3a, mixed3b, mixed4a."""
    table = _pick(_raw()["curve_preferred_orientation_deg"], layer, "curve orientations for layer")
    return {int(unit): float(angle) for unit, angle in table.items()}


def curve_units(layer: str) -> list[int]:
    """The curve detectors of ``layer`` with a published orientation."""
    return list(curve_orientations(layer))


def aligned_curve_pairs() -> dict[int, int]:
    """``{mixed3b curve unit: mixed3a early-curve unit}`` as paired in the Curve Circuits figure."""
    return {int(k): int(v) for k, v in _raw()["aligned_curve_pairs_3a_to_3b"].items()}


def branch_ranges(layer: str) -> dict[str, tuple[int, int]]:
    """``{branch: (start, stop)}`` half-open channel ranges of a mixed layer, branches in concat order
    ``1x1, 3x3, 5x5, pool``."""
    table = _pick(_raw()["branch_ranges"], layer, "branch ranges for layer")
    return {branch: (int(start), int(stop)) for branch, (start, stop) in table.items()}


def high_low_frequency_units() -> list[int]:
    """The 15 high-low frequency detectors of mixed3a."""
    return list(_raw()["high_low_frequency"]["mixed3a_units"])


def high_low_frequency() -> dict[str, Any]:
    """Everything published about high-low frequency detectors (units, NMF factors, notes)."""
    return copy.deepcopy(_raw()["high_low_frequency"])


def branch_specialization_claims() -> list[dict[str, Any]]:
    """The Branch Specialization article's claims: a family lying wholly inside one branch."""
    return copy.deepcopy(_raw()["branch_specialization_claims"])


def branch_specialization_categories(branch: str) -> dict[str, list[int]]:
    """Figure 5 of Branch Specialization: ``{category: units}`` of ``mixed3a_5x5``, ``mixed3b_5x5`` or
    ``mixed4a_5x5`` (unit ids index the whole layer)."""
    return _pick(_raw()["branch_specialization_figure5_categories"], branch, "figure-5 branch")


def equivariance_examples() -> dict[str, Any]:
    """Units shown in Naturally Occurring Equivariance (rotation, scale, hue, flip, circuits)."""
    return copy.deepcopy(_raw()["equivariance_examples"])


def sources() -> dict[str, str]:
    """``{fact key: where it comes from}`` ("owner/repo:path ..."), for every fact."""
    return dict(_raw()["sources"])


def source(key: str) -> str:
    """Where fact ``key`` comes from, e.g. ``source("families")`` or ``source("curve_orientations")``."""
    return _pick(_raw()["sources"], _KEY_ALIASES.get(key, key), "source for fact")


def source_commits() -> dict[str, str]:
    """``{"owner/repo": commit}`` of the source repositories the facts were read from."""
    return dict(_raw()["source_commits"])


def notes(key: str) -> Any:
    """The extraction notes for fact ``key`` (caveats, coverage, conventions)."""
    raw = _raw()
    key = _KEY_ALIASES.get(key, key)
    candidates = {
        "families": raw["families_notes"],
        "curve_preferred_orientation_deg": raw["curve_orientation_notes"],
        "aligned_curve_pairs_3a_to_3b": raw["aligned_curve_pairs_notes"],
        "branch_specialization_claims": raw["branch_specialization_notes"],
        "high_low_frequency": raw["high_low_frequency"]["notes"],
        "equivariance_examples": raw["equivariance_examples"]["notes"],
    }
    return _pick(candidates, key, "notes for fact")
