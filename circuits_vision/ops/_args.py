"""Argument normalisation shared by the public op functions."""

from __future__ import annotations

from collections.abc import Sequence


def int_pair(value: int | Sequence[int], requirement: str) -> tuple[int, int]:
    """``value`` (an int, or two ints) as ``(a, b)``; anything else raises ``ValueError("<requirement>, got ...")``."""
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{requirement}, got {value}")
    return value  # type: ignore[return-value]
