"""Leaf helpers that every subpackage may use; this module imports nothing from the package."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence

__all__ = ["derive_seed", "escape_html", "first_line", "int_pair"]


def derive_seed(*parts) -> int:
    """A 63-bit seed determined by ``parts`` alone, e.g. ``derive_seed(seed, layer, unit)``.

    The parts are joined as text and hashed (BLAKE2b), so the seed is the same on every machine and
    Python and does not depend on anything else drawn in the process.
    """
    digest = hashlib.blake2b(":".join(str(part) for part in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def int_pair(value: int | Sequence[int]) -> tuple[int, int]:
    """``224 -> (224, 224)``, ``(3,) -> (3, 3)``, ``(H, W) -> (H, W)``, as Python ints.

    For sizes, strides and paddings already known to be valid (torch modules' attributes, declared
    input sizes); arguments from users are checked where they are taken, with messages naming them.
    """
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) != 2:
        raise ValueError(f"expected an int or a pair of ints, got {value!r}")
    return values  # type: ignore[return-value]


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of ``str(error)`` (``""`` for an empty message), cut to ``limit`` characters."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return text if limit is None else text[:limit]


def escape_html(value: object) -> str:
    """``str(value)`` with ``& < > " '`` escaped, safe inside HTML text and quoted attributes."""
    return html.escape(str(value), quote=True)
