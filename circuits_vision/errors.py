"""The "unknown name" error every lookup by name raises, with the closest valid names.

This module imports nothing from the package, so every subpackage may use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UnknownNameError", "close_names", "did_you_mean"]


class UnknownNameError(KeyError, ValueError):
    """A name (layer, model, fact, ...) that is not known; ``suggestions`` holds the closest valid ones.

    Subclasses both ``KeyError`` (a failed lookup) and ``ValueError`` (a bad argument), so either
    ``except`` catches it; ``str(error)`` is the message itself (a ``KeyError`` would quote it).
    """

    def __init__(self, message: str, suggestions: Iterable[str] | None = None):
        super().__init__(message)
        self.message = message
        self.suggestions = list(suggestions or [])

    def __str__(self) -> str:
        return self.message


def close_names(name: object, valid: Iterable[str], n: int = 5, cutoff: float = 0.5) -> list[str]:
    """Up to ``n`` names of ``valid`` closest to ``name`` (``difflib`` ratio at least ``cutoff``)."""
    return difflib.get_close_matches(str(name), list(valid), n=n, cutoff=cutoff)


def did_you_mean(suggestions: Iterable[str]) -> str:
    """``"did you mean 'a', 'b'?"`` for the suggestions, or ``""`` without any."""
    names = [repr(s) for s in suggestions]
    return f"did you mean {', '.join(names)}?" if names else ""
