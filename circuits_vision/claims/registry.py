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
    plot: Callable | None = None
    """``plot(numbers, ax)``: draws the measurement on a matplotlib axes for the report's figure."""
    suite: str = "inceptionv1"
    """Which model the claim is about: ``"inceptionv1"`` (published unit ids) or ``"shapes"`` (the shipped model)."""


SUITES = ("inceptionv1", "shapes")


CLAIMS: dict[str, Claim] = {}


def claim(
    name: str,
    *,
    article: str,
    figure: str,
    published: str,
    requires: tuple[str, ...] = (),
    plot: Callable | None = None,
    suite: str = "inceptionv1",
):
    """Register the decorated ``check(ctx)`` as claim ``name`` of ``suite``."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")

    def register(check: Callable) -> Callable:
        if name in CLAIMS:
            raise ValueError(f"claim {name!r} is registered twice")
        CLAIMS[name] = Claim(name, article, figure, published, check, tuple(requires), plot, suite)
        return check

    return register


def select(pattern: str | list[str] | None, suite: str = "inceptionv1") -> list[Claim]:
    """The registered claims of ``suite`` matching ``pattern`` (a name, a glob such as ``"curve*"``, or a
    list of them)."""
    # Importing the claim modules registers their claims, in this order (most central claims first).
    from circuits_vision.claims import curves, echo, families, branches, equivariance, frequency, banding  # noqa: F401, I001
    from circuits_vision.claims import shipped  # noqa: F401

    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    known = [c for c in CLAIMS.values() if c.suite == suite]
    if pattern is None:
        return known
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    chosen = [c for c in known if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not chosen:
        raise ValueError(
            f"no claim matches {patterns}; known claims of the {suite} suite: {sorted(c.name for c in known)}"
        )
    return chosen


def missing_layers(model: nn.Module, layers: tuple[str, ...], published_widths: bool = True) -> list[str]:
    """The lucid layer names of ``layers`` that ``model`` does not have (or, with ``published_widths``, has
    with another width than lucid InceptionV1's)."""
    from circuits_vision.hooks import UnknownLayerError, layer_shape
    from circuits_vision.models import facts

    missing = []
    for layer in layers:
        try:
            width = int(layer_shape(model, layer, 64)[0])
        except (UnknownLayerError, KeyError, ValueError, RuntimeError):
            missing.append(layer)
            continue
        if published_widths and layer in facts.layer_widths() and width != facts.layer_width(layer):
            missing.append(f"{layer} ({width} channels, published {facts.layer_width(layer)})")
    return missing
