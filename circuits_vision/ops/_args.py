"""Argument normalisation shared by the public op functions."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _one_int(v, requirement: str, value):
    """``v`` as an int: a SymInt under torch.compile stays symbolic; bools, floats and other types are refused
    (int() would silently truncate 2.5 to 2), and so are ints the op's int64 arguments cannot hold."""
    if isinstance(v, bool):
        raise TypeError(f"{requirement}, got {value!r}")
    if not isinstance(v, (int, torch.SymInt)):  # (dynamo traces a SymInt as an int; index() would specialise it)
        try:
            v = operator.index(v)
        except TypeError:
            raise TypeError(f"{requirement}, got {value!r}") from None
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise ValueError(f"{requirement} of values that fit in int64, got {value!r}")
    return v


def int_pair(value: int | Sequence[int], requirement: str) -> tuple[int, int]:
    """``value`` (an int, or two ints) as ``(a, b)``.

    Raises ``ValueError("<requirement>, got ...")`` for a sequence of another length or an int outside int64,
    ``TypeError`` for something that is not an int (a float, a bool).
    """
    given = value
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, str):
        value = (value, value)
    pair = tuple(_one_int(v, requirement, given) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{requirement}, got {given!r}")
    return pair  # type: ignore[return-value]
