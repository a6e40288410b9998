"""The claims known to :func:`reproduce`: name -> source, published statement and the function measuring it."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Claim:
    """A published claim: where it is from, what it says, and ``check(model, size) -> ClaimResult``."""

    name: str
    article: str
    figure: str
    published: str
    check: Callable
    requires: tuple[str, ...] = ()
    """Layers (lucid names) the claim reads; a model without them gets "not applicable"."""


CLAIMS: dict[str, Claim] = {}


def claim(name: str, *, article: str, figure: str, published: str, requires: tuple[str, ...] = ()):
    """Register the decorated ``check(model, size)`` as claim ``name``."""

    def register(check: Callable) -> Callable:
        if name in CLAIMS:
            raise ValueError(f"claim {name!r} is registered twice")
        CLAIMS[name] = Claim(name, article, figure, published, check, tuple(requires))
        return check

    return register


def select(pattern: str | list[str] | None) -> list[Claim]:
    """The registered claims matching ``pattern`` (a name, a glob such as ``"curve*"``, or a list of them)."""
    # Importing the claim modules registers their claims, in this order (most central claims first).
    from circuits_vision.claims import curves, families, branches, equivariance, frequency, banding  # noqa: F401, I001

    if pattern is None:
        return list(CLAIMS.values())
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    chosen = [c for c in CLAIMS.values() if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"no claim matches {patterns}; known claims: {sorted(CLAIMS)}")
    return chosen


def missing_layers(model: nn.Module, layers: tuple[str, ...]) -> list[str]:
    """The lucid layer names of ``layers`` that ``model`` does not have (or has with another width)."""
    from circuits_vision.hooks import UnknownLayerError, layer_shape
    from circuits_vision.models import facts

    missing = []
    for layer in layers:
        try:
            width = int(layer_shape(model, layer, 64)[0])
        except (UnknownLayerError, KeyError, ValueError, RuntimeError):
            missing.append(layer)
            continue
        if layer in facts.layer_widths() and width != facts.layer_width(layer):
            missing.append(f"{layer} ({width} channels, published {facts.layer_width(layer)})")
    return missing
