"""Model-level entry point: which kernels (or curves, or images) each unit gets, then the detectors."""

from __future__ import annotations

import torch
from torch import nn

from circuits_vision.analysis._arguments import check_family_search
from circuits_vision.analysis.equivariance import _detect as D
from circuits_vision.analysis.equivariance import transforms as T
from circuits_vision.analysis.equivariance._kernels import family_gather, unit_kernels, validate_units
from circuits_vision.analysis.equivariance._mirror import reflection_pairs_from_kernels
from circuits_vision.analysis.equivariance._result import EquivarianceResult, Family, Settings
from circuits_vision.hooks import layer_names, layer_shape, model_input_size, resolve_layer

MAX_EARLIER = 4  # earlier layers tried for units without spatial extent at the chosen source


def report(
    model: nn.Module,
    layer: str,
    *,
    source: str | None = None,
    kind: str = "rotation",
    method: str = "weights",
    units: list[int] | None = None,
    steps: int | None = None,
    alpha: float = D.ALPHA,
    threshold: float | None = None,
    invariant_threshold: float = D.INVARIANT_THRESHOLD,
    min_members: int = D.MIN_MEMBERS,
    min_span: float | None = None,
    source_families: list[Family] | str | None = None,
    extent: bool = True,
    null: str = "scramble",
    null_units: int | None = None,
    seed: int = 0,
    images: torch.Tensor | None = None,
    render_kwargs: dict | None = None,
    tuning_null: str = "network",
) -> EquivarianceResult:
    """Find the ``kind`` families of ``layer``, calibrated against a null.

    Args:
        kind: "rotation", "hue", "scale" or "reflection".
        method: "weights" (expanded weights from ``source`` to ``layer``; ``source=None``: to the RGB
            input, through the linearised model), "tuning" (orientation tuning curves to drawn curves,
            :func:`orientation_tuning`) or "visualization" (feature visualizations of every unit,
            rendered with :func:`circuits_vision.optvis.render` unless ``images [N, 3, H, W]`` are given).
        units: restrict to these unit indices (default: all units of the layer).
        steps: angles in [0, 360) searched (default 72) / log2 scales in [-1, 1] (default 9).
        alpha: the false-discovery rate (the default rule: q < 0.05 for pairs, families, invariant units).
        threshold: a cosine similarity that pairs must reach instead of the pair test (the family-level
            shuffled-angle test still applies). For comparison with fixed-threshold searches.
        min_span: smallest spread of a family's values (default 90 deg; 1.5 steps for scale).
        source_families: rotation families of ``source`` (from a report on it): rotating a unit then
            also moves its inputs from each member of those families to the member rotated by the same
            angle. Needed when ``source`` is not the input and holds oriented units (edges -> curves).
            ``"auto"``: find them first (rotation families of ``source``, kernels from the input);
            ``"tuning"``: find them from ``source``'s orientation tuning curves (``method="tuning"``), for a
            source whose oriented units are not rotated copies in their own weights.
        extent: units whose kernels from ``source`` have no spatial extent (1x1 and pool branches) take
            their kernels from the nearest earlier layer (up to 4 back) that gives them a spatial pattern
            through a convolution (a pooling window alone does not count); ``sources`` says which.
            Units of different sources are searched separately (their kernels live in different spaces).
        null, null_units, seed: the structure null (see :mod:`circuits_vision.analysis.equivariance.null`).
        tuning_null: the pair null of ``method="tuning"``: "network" (default) compares the units' response
            surfaces (arcs at every orientation x 4 radii and their tangent line, :func:`orientation_surfaces`)
            with those of units of copies of the model with shuffled weights
            (:func:`~circuits_vision.analysis.equivariance.null.shuffle_weights`); "layer" shuffles only the
            weights between ``source`` (default: the layer before) and ``layer``
            (:func:`~circuits_vision.analysis.equivariance.null.layer_parameters`), so that null units read the
            real source units through random wiring and a family that passes is made by this layer's wiring, not
            inherited from tuned inputs; "phase" compares one-radius tuning curves (:func:`orientation_tuning`) with
            their own phase-randomised surrogates (reports families in random-weight networks: kept for comparison).
    Returns:
        An :class:`EquivarianceResult`; empty with an ``explanation`` when the layer has no spatial
        dimensions or extent, too few units, or nothing is significant.
    Raises:
        UnknownLayerError (unknown layer), IndexError (unit out of range), ValueError (bad kind/method).
    """
    check_family_search(
        threshold=threshold, invariant_threshold=invariant_threshold, min_members=min_members, units=units, steps=steps
    )
    if kind not in D.KINDS:
        raise ValueError(f"kind must be one of {D.KINDS}, got {kind!r}")
    if method not in ("weights", "visualization", "tuning"):
        raise ValueError(f"method must be 'weights', 'visualization' or 'tuning', got {method!r}")
    if method == "tuning" and kind != "rotation":
        raise ValueError("method='tuning' finds rotation families (orientation tuning curves); use method='weights'")
    if kind == "hue" and source is not None:
        raise ValueError("hue families rotate the RGB input's colours: use source=None (expanded weights to the input)")
    options = dict(
        alpha=alpha, threshold=threshold, min_members=min_members, null=null, null_units=null_units, seed=seed
    )
    flat = _not_spatial(model, layer, source if method == "weights" else None)
    if flat:
        result = EquivarianceResult(
            kind, layer, source, method, settings=Settings(alpha=alpha, threshold=threshold, min_members=min_members)
        )
        result.explanation = flat
        return result
    unit_list = validate_units(model, layer, units)
    if method == "tuning":
        if tuning_null not in ("network", "layer", "phase"):
            raise ValueError(
                f"tuning_null must be 'network' (units of weight-shuffled copies), 'layer' (only the weights "
                f"between source and layer shuffled) or 'phase', got {tuning_null!r}"
            )
        options = dict(
            alpha=alpha, threshold=threshold, min_members=min_members, min_span=min_span, units=unit_list, seed=seed
        )
        if tuning_null == "phase":
            curves = orientation_tuning(model, layer, unit_list, steps=steps or 72)
            result = D.families_from_tuning(curves, null_units=null_units, **options)
        else:
            curves = orientation_surfaces(model, layer, unit_list, steps=steps or 72)
            # enough null pairs that BH over all pairs of tuned units has resolution (and the families are
            # stable across seeds: with fewer than ~256 tuned null units the shipped model's groups changed)
            wanted = max(4 * int(D.tuned(curves).sum()), null_units or 0, MIN_NULL_TUNED)
            only, note = None, ""
            if tuning_null == "layer":
                from circuits_vision.analysis.equivariance import null as N

                upstream = source or next(iter(earlier_layers(model, layer)), None)  # None: the input
                only = N.layer_parameters(model, layer, upstream)
                note = (
                    f"null units: copies with the {len(only)} parameter tensors between "
                    f"{upstream or 'the input'} and {layer} shuffled"
                )
            null_curves = network_null_curves(
                model, layer, unit_list, steps=steps or 72, at_least=wanted, seed=seed, only=only
            )
            result = D.families_from_tuning(curves, null_curves=null_curves, null_name=tuning_null, **options)
            if note:
                result.explanation = "; ".join(part for part in (result.explanation, note) if part)
        result.layer = layer
        return result
    if method == "visualization":
        kernels = _visualizations(model, layer, unit_list, images, render_kwargs or {})
        result = _detect(kernels, kind, unit_list, None, steps, invariant_threshold, min_span, True, options)
        result.layer, result.method = layer, "visualization"
        return result
    if isinstance(source_families, str):
        if source_families not in ("auto", "tuning"):
            raise ValueError(
                f"source_families must be a list of families, 'auto', 'tuning' or None, got {source_families!r}"
            )
        how = "weights" if source_families == "auto" else "tuning"
        source_families = report(model, source, kind="rotation", method=how, seed=seed).families if source else None
    kernels = unit_kernels(model, layer, source, units=unit_list)
    gather = null_gather = None
    if source_families:  # the null's map: the source members' angles shuffled (a stream of its own)
        gather = family_gather(source_families, kernels.shape[1], kernels)
        shuffled = torch.Generator().manual_seed(int(seed) + 2)
        null_gather = family_gather(source_families, kernels.shape[1], kernels, shuffle=shuffled)
    source_name = source or "input"
    groups = [(source_name, unit_list, kernels, gather)]
    if extent and source is not None and kind in ("rotation", "scale", "reflection"):
        groups = _with_extent(model, layer, source, unit_list, kernels, gather)
    parts = [
        _detect(k, kind, us, g, steps, invariant_threshold, min_span, False, options, null_gather if g else None)
        for _, us, k, g in groups
    ]
    for (name, us, _, _), part in zip(groups, parts):
        part.sources = {u: name for u in us}
        for fam in part.families:
            fam.source = name
    result = parts[0] if len(parts) == 1 else _merge(parts, [g[0] for g in groups])
    result.layer, result.source, result.method = layer, source_name, "weights"
    return result


def _detect(
    kernels, kind, units, gather, steps, invariant_threshold, min_span, center, options, null_gather=None
) -> EquivarianceResult:
    if kind == "reflection":
        return reflection_pairs_from_kernels(
            kernels,
            units=units,
            gather=None,
            alpha=options["alpha"],
            threshold=options["threshold"],
            null=options["null"],
            null_units=options["null_units"],
            seed=options["seed"],
        )
    return D.families_from_kernels(
        kernels,
        kind,
        steps=steps,
        invariant_threshold=invariant_threshold,
        units=units,
        gather=gather,
        null_gather=null_gather,
        center=center,
        min_span=min_span,
        **options,
    )


def _not_spatial(model: nn.Module, layer: str, source: str | None) -> str:
    """Why ``layer`` (or ``source``) cannot hold spatial families, or ""."""
    for name, role in ((layer, "layer"), (source, "source layer")):
        if name is None:
            continue
        shape = tuple(layer_shape(model, name))
        if len(shape) != 3:
            return (
                f"{role} {name!r} has output shape {shape}, not [channels, height, width]: a layer without "
                f"spatial dimensions (a classifier or pooled layer) has no rotation, hue, scale or reflection "
                f"families; pick a convolutional layer"
            )
    return ""


def earlier_layers(model: nn.Module, source: str) -> list[str]:
    """Layers before ``source`` in the model's order, nearest first, skipping ``source``'s own sub-layers."""
    name, _ = resolve_layer(model, source)
    names = layer_names(model)
    if name not in names:
        return []
    inside = (f"{name}.", f"{name}_")
    return [n for n in reversed(names[: names.index(name)]) if not n.startswith(inside) and "pre_relu" not in n]


def _with_extent(model, layer, source, units, kernels, gather):
    """Split the units by kernel source: those without spatial extent at ``source`` walk back to earlier layers."""
    trivial = D.spatially_trivial(kernels) & ~D.dead_kernels(kernels)
    if gather is not None and bool(trivial.any()):  # moved by the source family's map: structure at ``source``
        params = D.default_parameters("rotation", None, kernels)
        mask = T.disk_mask(kernels.shape[-1], kernels)
        trivial &= ~D.moved_by_channel_map(kernels, params, T.rotate, mask, gather)
    groups = []
    keep = [i for i in range(len(units)) if not bool(trivial[i])]
    waiting = [units[i] for i in range(len(units)) if bool(trivial[i])]
    tried = 0
    for candidate in earlier_layers(model, source):
        if not waiting or tried >= MAX_EARLIER:
            break
        if len(tuple(layer_shape(model, candidate))) != 3:
            continue
        tried += 1
        try:
            found = unit_kernels(model, layer, candidate, units=waiting)
        except ValueError:  # not an ancestor, or nothing linear connects them
            continue
        ok = ~D.spatially_trivial(found) & ~D.dead_kernels(found) & ~D.pooled_profile(found)
        if bool(ok.any()):
            rows = ok.nonzero().flatten()
            groups.append((candidate, [waiting[i] for i in rows.tolist()], found[rows], None))
            waiting = [u for i, u in enumerate(waiting) if not bool(ok[i])]
    rows = torch.tensor(keep + [units.index(u) for u in waiting], dtype=torch.long)
    primary = (source, [units[i] for i in rows.tolist()], kernels[rows], gather)
    return [primary] + groups


def _merge(parts: list[EquivarianceResult], names: list[str]) -> EquivarianceResult:
    """One result from detections over disjoint unit groups with kernels from different sources."""
    first = parts[0]
    units = [u for part in parts for u in part.units]
    out = EquivarianceResult(
        first.kind, first.layer, first.source, first.method, units=units, settings=first.settings, null=first.null
    )
    out.families = sorted((f for part in parts for f in part.families), key=lambda f: (-len(f), -f.score))
    out.pairs = [p for part in parts for p in part.pairs]
    out.invariant = [u for part in parts for u in part.invariant]
    out.rejected = [r for part in parts for r in part.rejected]
    out.sources = {u: s for part in parts for u, s in part.sources.items()}
    moved = set(u for part in parts[1:] for u in part.units)
    out.excluded = {u: why for part in parts for u, why in part.excluded.items() if not (part is first and u in moved)}
    sims = [part.similarity for part in parts]
    if all(s is not None for s in sims) and len({s.shape[0] for s in sims}) == 1:
        out.similarity = torch.zeros(sims[0].shape[0], len(units), len(units), dtype=sims[0].dtype)
        out.p_values = torch.ones(len(units), len(units), dtype=torch.float64)
        out.q_values = torch.ones(len(units), len(units), dtype=torch.float64)
        out.effect_sizes = torch.zeros(len(units), len(units), dtype=torch.float64)
        start = 0
        for part in parts:
            stop = start + len(part.units)
            out.similarity[:, start:stop, start:stop] = part.similarity
            for name in ("p_values", "q_values", "effect_sizes"):
                block = getattr(part, name)
                if block is not None:
                    getattr(out, name)[start:stop, start:stop] = block
            start = stop
        out.parameters = first.parameters
    notes = [
        f"{len(part.units)} units without spatial extent at {names[0]} took their kernels from {name}"
        for part, name in zip(parts[1:], names[1:])
    ]
    out.explanation = "; ".join([D.explain(out)] + notes)
    return out


def orientation_tuning(
    model: nn.Module,
    layer: str,
    units: list[int],
    *,
    steps: int = 72,
    radius: float | None = None,
    thickness: float | None = None,
) -> torch.Tensor:
    """Responses ``[len(units), steps]`` of the units (centre position) to curves facing ``k * 360 / steps``.

    Stimuli: :func:`circuits_vision.stimuli.curves`, black on white, centred on the layer's receptive
    field, radius ``input_size / 6`` and thickness ``input_size / 16`` unless given.
    """
    from circuits_vision import stimuli
    from circuits_vision.analysis.tuning import tuning_curves

    size = model_input_size(model)
    fixed = {"radius": radius or size / 6, "thickness": thickness or max(size / 16, 1.0)}
    angles = torch.arange(steps, dtype=torch.float32) * (360.0 / steps)
    ones = torch.ones(len(units))
    curves = tuning_curves(
        model,
        layer,
        units,
        stimuli.curves,
        {"orientation": angles},
        fixed=fixed,
        baseline=(torch.zeros_like(ones), ones),
    )
    return curves.orientation_curve()


def orientation_surfaces(model: nn.Module, layer: str, units: list[int], *, steps: int = 72) -> torch.Tensor:
    """Responses ``[len(units), steps, 5]`` of the units (centre position) to the stimuli of
    :func:`circuits_vision.analysis.tuning.find_curve_detectors` turned to ``k * 360 / steps``: black 90-degree
    arcs on white facing that way at 4 radii (1/8 to 1/3.5 of the input size, thickness 1/32), and, as the
    fifth condition, the straight line along the arcs' tangent at their midpoint (as long as the mean arc).

    Two rotated copies of a unit match at one shift under every condition; two unrelated units with one bump
    each rarely do. The line keeps units that answer an orientation whatever the stroke's curvature (line and
    edge units, which curves drive too) apart from curve detectors, which answer the line much less."""
    import math

    from circuits_vision import stimuli
    from circuits_vision.analysis.tuning import tuning_curves

    size = getattr(model, "input_size", 224)
    radii = [size / 8, size / 6, size / 4.5, size / 3.5]
    thickness = max(1.5, size / 32)
    ones = torch.ones(len(units))
    baseline = (torch.zeros_like(ones), ones)
    angles = torch.arange(steps, dtype=torch.float32) * (360.0 / steps)
    curves = tuning_curves(
        model,
        layer,
        units,
        stimuli.curves,
        {"orientation": angles, "radius": radii},
        fixed={"angular_width": 90.0, "thickness": thickness},
        baseline=baseline,
    )
    # a curve facing phi runs along phi + 90 at its midpoint (stimuli.curves puts the midpoint at the centre)
    tangents = tuning_curves(
        model,
        layer,
        units,
        stimuli.lines,
        {"orientation": (angles + 90.0) % 180.0},
        fixed={"length": sum(radii) / len(radii) * math.radians(90.0), "thickness": thickness},
        baseline=baseline,
        period=180.0,
    )
    return torch.cat([curves.responses, tangents.responses[:, :, None]], dim=2).double()


MAX_NULL_COPIES = 16
MIN_NULL_TUNED = 256


def network_null_curves(
    model: nn.Module,
    layer: str,
    units: list[int],
    *,
    steps: int = 72,
    at_least: int = 128,
    seed: int = 0,
    only: list[str] | None = None,
) -> torch.Tensor:
    """Response surfaces (:func:`orientation_surfaces`) of ``units`` in copies of ``model`` with shuffled weights
    (all of them, or the parameters named in ``only``:
    :func:`~circuits_vision.analysis.equivariance.null.shuffle_weights`, one ``torch.Generator(seed)``), copy after
    copy until ``at_least`` of them are tuned (at least 2 copies, at most ``MAX_NULL_COPIES``):
    ``[copies * U, steps, 5]``."""
    from circuits_vision.analysis.equivariance import null as N

    generator = torch.Generator().manual_seed(int(seed) + 1)  # not the stream the family tests draw from
    found, tuned = [], 0
    while len(found) < MAX_NULL_COPIES and (tuned < at_least or len(found) < 2):
        surfaces = orientation_surfaces(N.shuffle_weights(model, generator, only), layer, units, steps=steps)
        found.append(surfaces)
        tuned += int(D.tuned(surfaces).sum())
    return torch.cat(found)


def _visualizations(model, layer, units, images, render_kwargs) -> torch.Tensor:
    if images is not None:
        if images.ndim != 4 or images.shape[0] != len(units):
            raise ValueError(f"images must be [len(units)={len(units)}, C, H, W], got {tuple(images.shape)}")
        return images
    from circuits_vision.optvis import objectives, render  # the optimisation is only needed for this method

    # Neuron (centre position) objectives: a channel objective paints a texture at random phases, which
    # no rotation about the centre can align; a neuron's visualization is centred on its receptive field.
    result = render(model, [objectives.neuron(layer, u) for u in units], **render_kwargs)
    return result.images
