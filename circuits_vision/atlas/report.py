"""The circuit report of a layer pair: feature families, equivariant circuits, branch specialization.

``circuit_report(model, "mixed3a", "mixed3b", "report/")`` writes ``report/index.html`` with matplotlib
(Agg) figures as PNGs beside it. Each section runs on its own; one that cannot be computed for this
model says why instead of failing the report. The page is written from
:mod:`~circuits_vision.atlas.templates`, so layer names, results and error messages are escaped by construction.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from circuits_vision._utils import first_line
from circuits_vision.atlas import views_section
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import CorruptAtlasFileError, atomic_write_bytes, atomic_write_text, read_json
from circuits_vision.atlas.templates import Safe, html, join
from circuits_vision.results import format_table

MAX_FAMILY_FIGURES = 4
MAX_CIRCUITS = 12


class LayerOrderError(ValueError):
    """The report's source layer does not run before its target layer."""


def check_order(model: nn.Module, source: str, target: str) -> None:
    """:class:`LayerOrderError` unless ``source`` finishes before ``target`` in a forward pass.

    The report reads weights from ``source`` into ``target``; swapped layers would leave most of
    it empty. The order is observed (one forward of a probe image), not taken from definition order.
    """
    from circuits_vision import hooks

    if source == target:
        raise LayerOrderError(
            f"the report needs two layers, got {source} twice: report SOURCE TARGET, e.g. report mixed3a mixed3b"
        )
    order: list[str] = []

    def seen(name: str):
        return lambda module, inputs, output: order.append(name) if name not in order else None

    size = hooks.model_input_size(model)
    with torch.no_grad(), hooks.eval_mode(model), hooks.hooked(model, {source: seen(source), target: seen(target)}):
        model(hooks.probe_input(model, size))
    missing = [name for name in (source, target) if name not in order]
    if missing:
        raise LayerOrderError(
            f"{', '.join(missing)} did not run in a forward pass of {type(model).__name__}; "
            "choose layers the model uses"
        )
    if order.index(source) > order.index(target):
        raise LayerOrderError(
            f"{source} runs after {target}, but the report reads from the earlier layer into "
            f"the later one: swap them (report {target} {source})"
        )


def _save_figure(figure, path: Path) -> str:
    """Save a matplotlib figure as PNG with the Agg canvas (no pyplot state, no display); returns the file name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    try:
        import matplotlib.pyplot as plt

        plt.close(figure)
    except Exception:  # a Figure made without pyplot is not registered with it
        pass
    return path.name


def _figure_html(name: str, caption: str) -> Safe:
    return html(
        '<figure class="figure"><img src="{name}" alt="{caption}"><figcaption>{caption}</figcaption></figure>',
        name=name,
        caption=caption,
    )


def _atlas_pictures(atlas_dir: Path | None, layer: str, units: list[int]) -> tuple[dict[int, torch.Tensor], str] | None:
    """``(pictures, kind)``: the atlas's neuron visualizations of ``units`` if all are there, else its channel
    visualizations if all are there, else None."""
    for kind in ("neuron", "channel"):
        shown, images = views_section.atlas_images(atlas_dir, layer, units, kind)
        if images is not None and shown == list(units):
            return {u: images[i] for i, u in enumerate(shown)}, f"{kind} visualizations"
    return None


def _families_section(model, layer, source, out: Path, atlas_dir, title: str, detection: dict):
    """Rotation families of ``layer`` (``detection``: more arguments of ``equivariance.report``); returns (html, report)."""
    from circuits_vision.analysis import equivariance
    from circuits_vision.viz import families as viz_families

    found = equivariance.report(model, layer, source=source, kind="rotation", **detection)
    units = detection.get("units")
    among = "all units" if units is None else f"units {units[0]}-{units[-1]} only" if units else "no units"
    rule = (
        f"FDR q < {detection.get('alpha', equivariance.ALPHA)}"
        if detection.get("threshold") is None
        else f"threshold {detection['threshold']}"
    )
    settings = f"{rule}, at least {detection.get('min_members', equivariance.MIN_MEMBERS)} members, {among}"
    parts = [
        html(
            '<h2>{title}</h2><p class="settings" id="detection-{id}">detection: {settings}</p><pre>{found}</pre>',
            title=title,
            id=slug(layer),
            settings=settings,
            found=found,
        )
    ]
    if found.families:
        members = sorted({m for f in found.families[:MAX_FAMILY_FIGURES] for m in f.members})
        found_pictures = _atlas_pictures(atlas_dir, layer, members)
        if found_pictures is None:
            kernels = equivariance.unit_kernels(model, layer, None, units=members)
            pictures, kind = {m: kernels[i] for i, m in enumerate(members)}, "kernels on the input"
        else:
            pictures, kind = found_pictures
        for number, family in enumerate(found.families[:MAX_FAMILY_FIGURES]):
            figure = viz_families.family_figure(family, pictures, title=f"{layer} family {number}")
            name = _save_figure(figure, out / f"{slug(layer)}_family{number}.png")
            parts.append(_figure_html(name, f"{layer} family {number}: {kind}, ordered by angle"))
        if found.similarity is not None:
            name = _save_figure(viz_families.similarity_figure(found), out / f"{slug(layer)}_similarity.png")
            parts.append(_figure_html(name, f"{layer}: best similarity after rotation, units grouped by family"))
    return join(parts), found


def _circuits_section(model, source, target, source_families, target_families, out: Path) -> Safe:
    from circuits_vision.analysis import motifs
    from circuits_vision.viz import families as viz_families
    from circuits_vision.weights import expanded_weights

    if not source_families or not target_families:
        return Safe(
            '<h2>Equivariant circuits</h2><p class="note">not computed: needs rotation families (from the weights) '
            "in both layers; the families sections above say what the weight search found. The curve circuit "
            "section below scores the same equivariance between the tuning-based curve-detector families.</p>"
        )
    E = expanded_weights(model, source, target)
    rows, best = [], None
    for i, sf in enumerate(source_families):
        for j, tf in enumerate(target_families):
            if len(rows) >= MAX_CIRCUITS:
                break
            try:
                circuit = motifs.equivariant_circuit(E, sf, tf)
                pattern = motifs.curve_pattern(E, sf, tf)
            except ValueError as error:
                rows.append(
                    html('<tr><td>{i}</td><td>{j}</td><td colspan="4">{error}</td></tr>', i=i, j=j, error=error)
                )
                continue
            rows.append(
                html(
                    "<tr><td>{i}</td><td>{j}</td><td>{score:.3f}</td><td>{null:.3f}</td><td>{reduction:.1f}x</td>"
                    "<td>{holds}</td></tr>",
                    i=i,
                    j=j,
                    score=circuit.score,
                    null=circuit.null_score,
                    reduction=circuit.reduction,
                    holds="yes" if pattern.holds else "no",
                )
            )
            if best is None or circuit.score - circuit.null_score > best[0]:
                best = (circuit.score - circuit.null_score, pattern, i, j)
    page = html(
        "<h2>Equivariant circuits</h2><p>For each source family x target family: the fraction of weight energy "
        "explained by one kernel per relative angle (score), the same with shuffled angles (null), the parameter "
        "reduction the symmetry buys, and whether similar orientations excite and opposite ones inhibit.</p>"
        '<table class="facts"><tr><th>source family</th><th>target family</th><th>score</th><th>null</th>'
        "<th>reduction</th><th>curve pattern</th></tr>{rows}</table>",
        rows=join(rows),
    )
    if best is not None:
        name = _save_figure(viz_families.pattern_figure(best[1]), out / "circuit_pattern.png")
        page += _figure_html(name, f"net weight vs relative angle, source family {best[2]} -> target family {best[3]}")
    return page


def _categories_from_atlas(atlas_dir: Path | None, layer: str) -> dict[str, dict[str, list[int]]]:
    """Colour and orientation categories from the atlas's tuning summary of ``layer``, when it has one.

    The rules are those of :func:`~circuits_vision.analysis.unit_categories.color_categories` and
    :func:`~circuits_vision.analysis.unit_categories.orientation_categories` (default thresholds), applied
    to the drives the atlas already measured, so the stimuli are not run twice.
    """
    path = atlas_dir / "analysis" / f"{slug(layer)}.tuning.json" if atlas_dir is not None else None
    if path is None or not path.is_file():
        return {}
    stored = read_json(path, fix="delete it and rerun the atlas to compute it again")
    if not isinstance(stored, dict):
        raise CorruptAtlasFileError(
            f"{path} holds no per-unit object: delete it and rerun the atlas to compute it again"
        )
    tuning = {int(u): v for u, v in stored.items() if u != "*"}
    if not tuning:
        return {}
    colour: dict[str, list[int]] = {"color": [], "black_and_white": [], "both": [], "unresponsive": []}
    orientation: dict[str, list[int]] = {"oriented": [], "unoriented": [], "unresponsive": []}
    drive_scale = max(v["grating_drive"] for v in tuning.values())
    for unit in sorted(tuning):
        colour[tuning[unit]["color_category"]].append(unit)
        value = tuning[unit]
        key = (
            "unresponsive"
            if value["grating_drive"] <= 1e-3 * drive_scale
            else "oriented"
            if value["orientation_selectivity"] >= 0.2
            else "unoriented"
        )
        orientation[key].append(unit)
    return {"color": colour, "orientation": orientation}


def _branches_section(
    model, target, out: Path, atlas_dir: Path | None, curve_detectors=None, searched: list[int] | None = None
) -> Safe:
    """Colour, orientation and (when found) curve-detector units per branch; ``searched``: the units the
    curve search covered (default all), the others of them form the "other" category."""
    from circuits_vision.analysis import branches
    from circuits_vision.hooks import layer_shape
    from circuits_vision.viz import branches as viz_branches

    parts = [html("<h2>Branch specialization of {target}</h2>", target=target)]
    width = int(layer_shape(model, target)[0])
    measured = _categories_from_atlas(atlas_dir, target)
    if any(len({u for units in found.values() for u in units}) < width for found in measured.values()):
        # The atlas rendered a part of the layer: its categories would test the sample's branches, not the
        # layer's, so the colour and orientation categories are measured on every unit instead.
        measured = {}
    kinds = ["color", "orientation"]
    population = {}
    if curve_detectors:
        units = {d.unit for d in curve_detectors}
        pool = range(width) if searched is None else searched
        measured["curve"] = {"curve_detector": sorted(units), "other": [u for u in pool if u not in units]}
        population["curve"] = sorted(set(pool) | units)
        kinds.append("curve")
    for categories in kinds:
        found = branches.report(
            model, target, measured.get(categories, categories), population=population.get(categories)
        )
        significant = found.significant(0.01)
        cells = (
            join(
                (
                    html(
                        "{category} over-represented in the {branch} branch ({count}/{size}, Bonferroni p = {p:.2g})",
                        category=r.category,
                        branch=r.branch,
                        count=r.count,
                        size=r.category_size,
                        p=r.p_bonferroni,
                    )
                    for r in significant
                ),
                "; ",
            )
            if significant
            else Safe("no category x branch cell reaches Bonferroni p &lt; 0.01")
        )
        parts.append(html("<p>{categories} categories: {cells}</p>", categories=categories, cells=cells))
        name = _save_figure(
            viz_branches.plot_report(found, title=f"{target}: {categories} units per branch"),
            out / f"{slug(target)}_branches_{categories}.png",
        )
        parts.append(
            html(
                "<pre>{table}</pre>{figure}",
                table=str(found),
                figure=_figure_html(name, f"{categories} categories per branch"),
            )
        )
    return join(parts)


def _branch_name(model, layer: str, unit: int) -> str:
    ranges = getattr(model, "branch_ranges", None)
    if ranges is None:
        return ""
    try:
        return next((name for name, (a, b) in ranges(layer).items() if a <= unit < b), "")
    except Exception:  # not a mixed block
        return ""


def _curve_detector_section(model, layer: str, out: Path, state: dict, units: list[int] | None = None) -> Safe:
    """The curve detectors of ``layer`` (tuning-based family; among ``units`` when given): members, angles,
    radial plot, small multiples."""
    from circuits_vision.analysis.tuning import find_curve_detectors
    from circuits_vision.viz import tuning as viz_tuning

    search = find_curve_detectors(model, layer, units=units)
    state[layer] = search.detectors
    title = html("<h2>Curve detector family of {layer} (tuning curves)</h2>", layer=layer)
    explain = Safe(
        "<p>find_curve_detectors with its defaults: black arcs on white at every 5 deg x 4 radii, read at "
        "the centre unit; a detector peaks at &gt;= 2 noise std, has selectivity &gt;= 0.15, prefers curves "
        "to lines and keeps its orientation across radii.</p>"
    )
    if not search.detectors:
        return title + explain + Safe('<p class="note">no unit of this layer passes those criteria.</p>')
    rows = join(
        html(
            "<tr><td>{unit}</td><td>{branch}</td><td>{orientation:.0f}</td><td>{peak:.1f}</td>"
            "<td>{selectivity:.2f}</td><td>{ratio:.2f}</td></tr>",
            unit=d.unit,
            branch=_branch_name(model, layer, d.unit),
            orientation=d.preferred_orientation,
            peak=d.peak_response,
            selectivity=d.selectivity_index,
            ratio=d.curve_vs_line,
        )
        for d in search.detectors
    )
    page = (
        title
        + explain
        + html(
            '<p>{count} detectors covering {sectors} of 8 45-degree sectors.</p><table class="facts"><tr><th>unit</th>'
            "<th>branch</th><th>orientation (deg)</th><th>peak (std)</th><th>selectivity</th><th>curve vs line</th></tr>"
            "{rows}</table>",
            count=len(search.detectors),
            sectors=len(search.sectors()),
            rows=rows,
        )
    )
    curves = search.curves.subset([d.unit for d in search.detectors])
    name = _save_figure(
        viz_tuning.radial_tuning_plot(curves, title=f"{layer}: curve detectors' orientation tuning"),
        out / f"{slug(layer)}_curve_radial.png",
    )
    page += _figure_html(name, f"{layer}: radial tuning of the curve detectors (averaged over radii)")
    name = _save_figure(viz_tuning.tuning_curve_grid(curves, columns=6), out / f"{slug(layer)}_curve_grid.png")
    return page + _figure_html(name, f"{layer}: each detector's response vs orientation, one line per radius")


def _curve_circuit_section(model, source: str, target: str, out: Path, state: dict) -> Safe:
    from circuits_vision.analysis import curve_circuits, motifs
    from circuits_vision.viz import curve_circuits as viz_curves

    src, tgt = state.get(source), state.get(target)
    head = html("<h2>Curve circuit {source} &rarr; {target}</h2>", source=source, target=target)
    if not src or len(src) < 2 or not tgt or len(tgt) < 2:
        return head + html(
            '<p class="note">not computed: needs at least 2 curve detectors in each layer (found '
            "{found_source} in {source}, {found_target} in {target}).</p>",
            found_source=len(src or []),
            source=source,
            found_target=len(tgt or []),
            target=target,
        )
    circuit = curve_circuits.curve_circuit(model, source, target, source_detectors=src, target_detectors=tgt)
    state["circuit"] = circuit
    page = head + html(
        "<p>Every (target curve detector, source curve detector) pair: the net expanded weight (summed "
        "over the kernel) against the difference of their preferred orientations, as in Curve Circuits. "
        "The statistic is the correlation with cos(difference); the null shuffles which source unit has "
        "which orientation.</p><pre>{circuit}</pre>",
        circuit=circuit,
    )
    name = _save_figure(viz_curves.weight_vs_orientation_figure(circuit), out / "curve_circuit_weights.png")
    page += _figure_html(name, "net expanded weight vs orientation difference (grey: shuffled-orientation band)")
    weights = _expanded(model, source, target, state)
    fam_s, fam_t = curve_circuits.detector_family(src), curve_circuits.detector_family(tgt)
    equivariance = motifs.equivariant_circuit(weights, fam_s, fam_t)
    page += html(
        "<p>Equivariance of the same circuit (families by tuning; weights rotated by the source angle and "
        "grouped by relative angle): score {score:.3f} against {null:.3f} with shuffled angles; one kernel per "
        "relative angle needs {parameters} numbers instead of {weights} ({reduction:.1f}x fewer).</p>",
        score=equivariance.score,
        null=equivariance.null_score,
        parameters=equivariance.n_parameters,
        weights=equivariance.n_weights,
        reduction=equivariance.reduction,
    )
    return page


def _expanded(model, source, target, state):
    if "expanded" not in state:
        from circuits_vision.weights import expanded_weights

        state["expanded"] = expanded_weights(model, source, target)
    return state["expanded"]


def _echo_section(model, source: str, target: str, out: Path, state: dict) -> Safe:
    from circuits_vision.analysis import curve_experiments
    from circuits_vision.viz import curve_circuits as viz_curves

    head = Safe("<h2>Echo: removing opposite-curve inhibition</h2>")
    src, tgt = state.get(source), state.get(target)
    if not src or not tgt:
        return head + Safe('<p class="note">not computed: needs curve detectors in both layers.</p>')
    survey = curve_experiments.echo_survey(model, source, target, source_detectors=src, target_detectors=tgt)
    best = survey.reports[survey.strongest]
    page = head + html(
        "<p>On a copy of the model, for each target curve detector in turn, the negative expanded weights from "
        "the source curve detectors facing within 45 deg of its opposite orientation are removed; Curve "
        "Circuits saw a response to the opposite curve appear (the echo). The control removes the "
        "inhibition of as many source curve detectors facing 45-135 deg away instead. An echo appears where "
        "the response 180 deg from the preferred orientation grows by a tenth of the preferred response.</p>"
        "<p><b>{title}</b></p><pre>{best}</pre>",
        title=survey.title(),
        best=best,
    )
    rows = [r for r in survey.table() if r["echo_after"] - r["echo_before"] >= curve_experiments.ECHO_GROWTH]
    if rows:
        page += html("<p>Detectors where the echo appears:</p><pre>{rows}</pre>", rows=format_table(rows))
    name = _save_figure(viz_curves.echo_survey_figure(survey), out / "echo.png")
    return page + _figure_html(name, f"the echo edit on {len(survey.reports)} {target} curve detectors")


def _replacement_section(model, source: str, target: str, out: Path, state: dict) -> Safe:
    from circuits_vision.analysis import curve_experiments
    from circuits_vision.viz import curve_circuits as viz_curves

    head = Safe("<h2>Artificial artificial network: hand-built curve detectors</h2>")
    src, tgt = state.get(source), state.get(target)
    heads = getattr(model, "heads", None)
    if not src or len(src) < 2 or not tgt or len(tgt) < 2:
        return head + Safe('<p class="note">not computed: needs at least 2 curve detectors in each layer.</p>')
    if not heads or "shape" not in heads:
        return head + Safe(
            '<p class="note">not computed: needs a model trained on the labelled scenes of '
            "circuits_vision.stimuli.scenes (the shapes model), to measure its accuracy.</p>"
        )
    result = curve_experiments.replace_curve_detectors_on_scenes(
        model, source, target, source_detectors=src, target_detectors=tgt
    )
    page = head + html(
        "<p>Every target curve detector is replaced by a unit that reads only the source curve "
        "detectors, through one template (a kernel per 45-degree orientation difference) rotated to the "
        "unit's orientation, with a fitted gain and offset. Accuracy of the shape head on fresh scenes: "
        "original, curve detectors ablated (set to 0), hand-built units in their place; Curve Circuits "
        "measured 88.6% &rarr; 86.3% &rarr; 87.6% top-5 on ImageNet. The control rebuilds each unit the "
        "same way from its own weights from the source curve detectors (no template): no unit reading only "
        "those detectors this way can be expected to do better, so the gap from the hand-built units to it "
        "is what the template loses, and the gap from it to the original what the curve units alone cannot "
        "carry.</p><pre>{result}</pre>",
        result=result,
    )
    name = _save_figure(viz_curves.replacement_figure(result), out / "replacement.png")
    return page + _figure_html(name, "accuracy per curve class: original, ablated, hand-built, own curve weights")


def circuit_report(
    model: nn.Module,
    source: str,
    target: str,
    out: str | os.PathLike,
    *,
    atlas_dir: str | os.PathLike | None = None,
    units_per_layer: int | None = None,
    threshold: float | None = None,
    min_members: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the circuit report of ``source -> target`` into ``out``; returns ``out/index.html``.

    Sections: rotation families of ``source`` (kernels on the input) and ``target`` (kernels from
    ``source``, with the source families' rotation), the equivariant circuits between them (motifs),
    the curve detectors of both layers (tuning), the curve circuit between them (weight vs orientation,
    its equivariance), the echo edit, the hand-built replacement of the target's curve detectors
    (models with a ``shape`` head), and the branch specialization of ``target`` (colour, orientation and
    curve-detector units per branch). Figures
    show feature visualizations from ``atlas_dir`` when given, else kernels.

    ``units_per_layer``: families among the first N units of each layer only (the cost follows N);
    ``threshold``, ``min_members``: family detection settings of
    :func:`circuits_vision.analysis.equivariance.report` (default its own). ``progress``: a bar of the
    sections with an ETA.

    Raises:
        LayerOrderError: ``source`` does not run before ``target`` (e.g. the two swapped).
        UnknownLayerError: an unknown layer name.
    """
    from circuits_vision import hooks

    source, target = hooks.resolve_layer(model, source)[0], hooks.resolve_layer(model, target)[0]
    check_order(model, source, target)
    detection = {
        key: value for key, value in (("threshold", threshold), ("min_members", min_members)) if value is not None
    }

    def units_of(layer: str) -> dict:
        if units_per_layer is None:
            return {}
        return {"units": list(range(min(int(hooks.layer_shape(model, layer)[0]), int(units_per_layer))))}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atlas_path = Path(atlas_dir) if atlas_dir is not None else None
    sections, found = [], {}
    bar = tqdm(total=12, disable=not progress, desc="circuit report", unit="section", dynamic_ncols=True)

    def section(name: str, make: Callable[[], str]) -> None:
        bar.set_postfix_str(name)
        if not progress:
            log(f"report: {name}")
        try:
            sections.append(make())
        except Exception as error:  # this section cannot be computed here: say why, keep the others
            first = first_line(error)
            sections.append(
                html(
                    '<h2>{name}</h2><p class="note">not computed: {kind}: {first}</p>',
                    name=name,
                    kind=type(error).__name__,
                    first=first,
                )
            )
        finally:
            bar.update(1)

    def families_of(layer, kernels_from, title):
        html, result = _families_section(
            model, layer, kernels_from, out, atlas_path, title, {**detection, **units_of(layer)}
        )
        found[layer] = result
        return html

    section(
        f"Families of {source}",
        lambda: families_of(source, None, f"Rotation families of {source} (kernels on the input)"),
    )
    section(
        f"Families of {target}",
        lambda: families_of(target, source, f"Rotation families of {target} (kernels from {source})"),
    )
    for layer, kernels_from in ((source, None), (target, source)):  # weights, tuning, visualizations side by side
        section(
            f"Three views of {layer}",
            lambda layer=layer, kernels_from=kernels_from: views_section.section_html(
                model,
                layer,
                out,
                weights=found.get(layer),
                source=kernels_from,
                atlas_dir=atlas_path,
                detection={**detection, **units_of(layer)},
            ),
        )
    section(
        "Equivariant circuits",
        lambda: _circuits_section(
            model,
            source,
            target,
            getattr(found.get(source), "families", None),
            getattr(found.get(target), "families", None),
            out,
        ),
    )
    curves: dict = {}
    section(
        f"Curve detectors of {source}",
        lambda: _curve_detector_section(model, source, out, curves, units_of(source).get("units")),
    )
    section(
        f"Curve detectors of {target}",
        lambda: _curve_detector_section(model, target, out, curves, units_of(target).get("units")),
    )
    section("Curve circuit", lambda: _curve_circuit_section(model, source, target, out, curves))
    section("Echo", lambda: _echo_section(model, source, target, out, curves))
    section("Artificial artificial network", lambda: _replacement_section(model, source, target, out, curves))
    section(
        f"Branch specialization of {source}",
        lambda: _branches_section(model, source, out, atlas_path, curves.get(source), units_of(source).get("units")),
    )
    section(
        f"Branch specialization of {target}",
        lambda: _branches_section(model, target, out, atlas_path, curves.get(target), units_of(target).get("units")),
    )
    bar.close()
    title = f"Circuit report: {source} -> {target}"
    back = Safe('<p><a href="../index.html">atlas index</a></p>' if atlas_path is not None else "")
    page = html(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<title>{title}</title><link rel="stylesheet" href="../atlas.css"></head><body>'
        "{back}<h1>{title}</h1>{sections}</body></html>\n",
        title=title,
        back=back,
        sections=join(sections),
    )
    index = out / "index.html"
    atomic_write_text(index, page)
    return index
