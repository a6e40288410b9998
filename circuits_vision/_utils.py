"""Leaf helpers that every subpackage may use; this module imports nothing from the package."""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(*parts) -> int:
    """A 63-bit seed determined by ``parts`` alone, e.g. ``derive_seed(seed, layer, unit)``.

    The parts are joined as text and hashed (BLAKE2b), so the seed is the same on every machine and
    Python and does not depend on anything else drawn in the process.
    """
    digest = hashlib.blake2b(":".join(str(part) for part in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
