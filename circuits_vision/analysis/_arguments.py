"""Checks of the settings the family searches take, run before any work so a bad value fails in one line.

Family searches compare units by cosine similarity, so thresholds live in (0, 1]: 0 or less makes
every pair of units a family, more than 1 makes none. A family needs at least two members; an angle
or scale search needs at least two steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def check_threshold(name: str, value) -> None:
    """``value`` is a cosine-similarity threshold in (0, 1] (``None``: the default)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number in (0, 1] (a cosine similarity), got {type(value).__name__} {value!r}"
        )
    if math.isnan(value) or not 0 < value <= 1:
        raise ValueError(
            f"{name} must be in (0, 1] (a cosine similarity: 1 = identical after the transformation), "
            f"got {value}; e.g. {name}=0.8, or lower (0.5) for trained networks' imperfect copies"
        )


def check_count(name: str, value, minimum: int, what: str) -> None:
    """``value`` is an int >= ``minimum`` (``None``: the default)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer ({what}), got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum} ({what}), got {value}")


def check_units(units: Iterable[int] | None) -> None:
    """``units`` is ``None`` (every unit) or a non-empty collection."""
    if units is None:
        return
    if isinstance(units, (str, bytes)) or not isinstance(units, Iterable):
        raise TypeError(f"units must be a list of channel indices or None, got {type(units).__name__}")
    if len(list(units)) == 0:
        raise ValueError(
            "units is empty: pass the channel indices to search, or units=None for every unit of the layer"
        )


def check_family_search(*, threshold=None, invariant_threshold=None, min_members=None, units=None, steps=None) -> None:
    """All of a family search's settings at once; raises ``ValueError``/``TypeError`` naming the first bad one.

    Call it first in a public search function::

        check_family_search(threshold=threshold, invariant_threshold=invariant_threshold,
                            min_members=min_members, units=units, steps=steps)
    """
    check_threshold("threshold", threshold)
    check_threshold("invariant_threshold", invariant_threshold)
    check_count("min_members", min_members, 2, "the fewest units a family may have")
    check_count("steps", steps, 2, "how many angles or scales are searched")
    check_units(units)
