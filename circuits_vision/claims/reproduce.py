"""``reproduce(model)``: every published Circuits claim that applies to ``model``, measured and judged."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from circuits_vision.claims.context import Context
from circuits_vision.claims.registry import Claim, missing_layers, select
from circuits_vision.claims.report import Reproduction, write
from circuits_vision.claims.result import NOT_APPLICABLE, ClaimResult, NotApplicable
from circuits_vision.claims.store import Store, fingerprint
from circuits_vision.hooks import model_input_size


def run_claim(claim: Claim, ctx: Context) -> ClaimResult:
    """One claim on ``ctx.model``: "not applicable" (with the reason) when the model lacks its layers."""
    start = time.perf_counter()
    published_ids = claim.suite == "inceptionv1"
    missing = missing_layers(ctx.model, claim.requires, published_widths=published_ids)
    if missing:
        needs = "with lucid InceptionV1's channels" if published_ids else "(the claim reads them)"
        result = ClaimResult(
            claim.name,
            claim.article,
            claim.figure,
            claim.published,
            f"the model has no layer {', '.join(missing)} {needs}",
            NOT_APPLICABLE,
            "a claim about named InceptionV1 units needs those layers"
            if published_ids
            else "the claim needs those layers",
        )
    else:
        try:
            result = claim.check(ctx)
        except NotApplicable as reason:
            result = ClaimResult(
                claim.name,
                claim.article,
                claim.figure,
                claim.published,
                str(reason),
                NOT_APPLICABLE,
                "the measurement does not apply to this model",
            )
    return dataclasses.replace(
        result,
        claim=claim.name,
        article=claim.article,
        figure=claim.figure,
        published=claim.published,
        seconds=round(time.perf_counter() - start, 3),
    )


def reproduce(
    model: nn.Module,
    claims: str | list[str] | None = None,
    *,
    out: str | os.PathLike | None = None,
    size: int | None = None,
    progress: bool = True,
    title: str = "Circuits claims",
    suite: str | None = None,
) -> Reproduction:
    """Measure the published Circuits claims on ``model`` (lucid's InceptionV1 layer names and unit ids).

    Args:
        claims: a claim name, a glob (``"curve*"``) or a list of them; default every claim.
        out: folder for ``report.html``, ``report.json`` and ``records/`` (one JSON per claim and model
            fingerprint); a claim already recorded there for the same weights and size is read back, not
            measured again. ``None``: nothing is written.
        size: input size in px the stimuli are drawn at (default ``model.input_size`` or 224).
        suite: ``"inceptionv1"`` (the published claims at their published unit ids) or ``"shapes"`` (the
            claims that make sense on the shipped model, beside the figures recorded in its ``shapes.json``);
            default ``"shapes"`` for a :class:`~circuits_vision.models.shapes.ShapesNet`, else ``"inceptionv1"``.
    Returns a :class:`~circuits_vision.claims.report.Reproduction`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    size = int(size or model_input_size(model))
    if size < 32:
        raise ValueError(f"size must be at least 32 px (the stimuli need room), got {size}")
    if suite is None:
        from circuits_vision.models.shapes import ShapesNet

        suite = "shapes" if isinstance(model, ShapesNet) else "inceptionv1"
    chosen = select(claims, suite)
    key = fingerprint(model, size)
    store = Store(out, key) if out is not None else None
    ctx = Context(model.eval(), size)
    results = []
    bar = tqdm(chosen, disable=not progress, desc="claims", unit="claim", dynamic_ncols=True)
    for claim in bar:
        bar.set_postfix_str(claim.name)
        result = store.load(claim.name) if store is not None else None
        if result is None:
            result = run_claim(claim, ctx)
            if store is not None:
                store.save(result)
        results.append(result)
    bar.close()
    reproduction = Reproduction(results, key, size)
    if out is not None:
        write(reproduction, Path(out), title)
    return reproduction
