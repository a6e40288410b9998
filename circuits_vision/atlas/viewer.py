"""The atlas's static viewer: ``index.html``, one grid page per layer, one page per unit.

Plain HTML with relative links (works from ``file://``, no server); the layer pages' search, filters
and sorting are one local script (``atlas.js``, no dependencies; without it every unit is listed). Thumbnails use
``loading="lazy"`` with fixed sizes, so a layer of thousands of units opens at once. Pages are written from
:mod:`~circuits_vision.atlas.templates`, so everything taken from the model, the settings or the user
(layer names, labels, file names, error messages) is escaped by construction.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from importlib import resources
from pathlib import Path

from circuits_vision.atlas import views_section
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import atomic_write_text
from circuits_vision.atlas.templates import Safe, escape, html, join

STYLE = "atlas.css"
SCRIPT = "atlas.js"  # the layer pages' filters: a local file, so pages work from file:// and offline


def _page(title: str, body: Safe, depth: int) -> Safe:
    """A complete HTML page; ``depth`` = folders below the atlas root (for the stylesheet's path)."""
    return html(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<title>{title}</title><link rel="stylesheet" href="{root}{style}"></head>\n'
        "<body>\n{body}\n</body></html>\n",
        title=title,
        root="../" * depth,
        style=STYLE,
        body=body,
    )


def _write(path: Path, text: Safe) -> None:
    atomic_write_text(path, text, fsync=False)


def _layer_page(layer: str) -> str:
    return f"layers/{slug(layer)}.html"


def write_viewer(
    directory: str | Path,
    manifest: list[dict],
    settings: dict,
    *,
    report: Path | None = None,
    links: list[tuple[str, str]] = (),
) -> Path:
    """Write the viewer for ``manifest`` (records in layer order) into ``directory``; returns ``index.html``.

    ``links``: more ``(relative href, text)`` pages the index links to (e.g. a dictionary comparison).
    """
    directory = Path(directory)
    for name in (STYLE, SCRIPT):
        with resources.as_file(resources.files("circuits_vision.atlas") / "static" / name) as source:
            shutil.copyfile(source, directory / name)
    by_layer: dict[str, list[dict]] = defaultdict(list)
    for record in manifest:
        by_layer[record["layer"]].append(record)
    present = {(r["layer"], r["unit"]) for r in manifest}
    layers = list(by_layer)
    for i, layer in enumerate(layers):
        _write(directory / _layer_page(layer), _layer_html(layer, by_layer[layer], layers, i))
        records = by_layer[layer]
        for j, record in enumerate(records):
            neighbours = (records[j - 1] if j > 0 else None, records[j + 1] if j + 1 < len(records) else None)
            _write(directory / record["page"], _unit_html(record, present, neighbours))
    index = directory / "index.html"
    _write(index, _index_html(by_layer, settings, directory, report, links))
    return index


def _settings_html(settings: dict) -> Safe:
    shown = {key: settings.get(key) for key in ("model", "steps", "size", "seed", "units_per_layer")}
    shown["weights sha256"] = str(settings.get("weights_sha256", ""))[:16]
    items = join((html("{key}: {value}", key=k, value=v) for k, v in shown.items() if v is not None), ", ")
    note = (
        html('<p class="note">circuit report: {error}</p>', error=settings["report_error"])
        if settings.get("report_error")
        else ""
    )
    return html('<p class="settings">{items}</p>{note}', items=items, note=note)


def _index_html(
    by_layer: dict[str, list[dict]], settings: dict, directory: Path, report: Path | None, links=()
) -> Safe:
    rows = []
    for layer, records in by_layer.items():
        preview = join(
            html(
                '<img loading="lazy" width="40" height="40" src="{src}" alt="{layer}:{unit}">',
                src=grid_image(r)[0],
                layer=layer,
                unit=r["unit"],
            )
            for r in records[:8]
        )
        rows.append(
            html(
                '<tr><td><a class="layer" href="{href}">{layer}</a></td><td>{count} units</td><td>{preview}</td></tr>',
                href=_layer_page(layer),
                layer=layer,
                count=len(records),
                preview=preview,
            )
        )
    report_link = ""
    if report is not None:
        relative = Path(report).resolve().relative_to(directory.resolve()).as_posix()
        report_link = html('<p><a id="report" href="{href}">circuit report</a></p>', href=relative)
    report_link = join(
        [
            report_link,
            *(html('<p><a class="extra" href="{href}">{text}</a></p>', href=href, text=text) for href, text in links),
        ]
    )
    body = html(
        "<h1>Atlas of {model}</h1>{settings}{report}"
        '<table class="layers"><tr><th>layer</th><th>units</th><th></th></tr>{rows}</table>',
        model=settings.get("model", "model"),
        settings=_settings_html(settings),
        report=report_link,
        rows=join(rows),
    )
    return _page(f"Atlas of {settings.get('model', 'model')}", body, 0)


def _facets(record: dict) -> dict[str, str]:
    """The values a layer page filters and sorts a unit by (empty where not computed)."""
    family = record.get("family")
    tuning = record.get("tuning") if isinstance(record.get("tuning"), dict) else {}
    poly = record.get("polysemanticity") if isinstance(record.get("polysemanticity"), dict) else {}
    return {
        "unit": str(record["unit"]),
        "label": str(record.get("label") or ""),
        "family": str(family["family"]) if isinstance(family, dict) and "family" in family else "",
        "branch": str(record.get("branch") or ""),
        "category": str(tuning.get("color_category") or ""),
        "selectivity": str(tuning.get("orientation_selectivity", "")),
        "score": str(poly.get("score", "")),
    }


def _options(name: str, values, title: str) -> Safe:
    items = join(html('<option value="{value}">{value}</option>', value=v) for v in sorted(set(values) - {""}))
    return html(
        '<label>{title} <select name="{name}"><option value="">any</option>{items}</select></label>',
        title=title,
        name=name,
        items=items,
    )


_FILTERS = (
    '<form id="filters" class="filters">'
    '<label>search <input name="q" type="search" placeholder="unit number or label"></label>'
    '<label>family <select name="family"><option value="">any</option><option value="yes">in a family'
    '</option><option value="no">in none</option></select></label>'
    "{branch}{category}"
    '<label>polysemanticity &ge; <input name="minscore" type="number" step="0.05" min="0"></label>'
    '<label>sort <select name="sort"><option value="unit">unit</option><option value="selectivity">'
    'orientation selectivity</option><option value="score">polysemanticity</option></select></label>'
    '<span id="shown" class="note"></span></form>'
)


def _layer_html(layer: str, records: list[dict], layers: list[str], i: int) -> Safe:
    cells = []
    facets = [_facets(r) for r in records]
    for r, facet in zip(records, facets):
        label = html('<span class="label">{label}</span>', label=r["label"]) if r.get("label") else ""
        data = join((html('data-{key}="{value}"', key=key, value=value) for key, value in facet.items()), " ")
        image, is_neuron = grid_image(r)
        cells.append(
            html(
                '<a class="unit{kind}" {data} href="../{page}"><img loading="lazy" decoding="async" width="100" '
                'height="100" src="../{image}" alt="{layer}:{unit}"{title}>{unit}{label}</a>',
                kind=" neuron" if is_neuron else "",
                data=data,
                page=r["page"],
                image=image,
                layer=layer,
                unit=r["unit"],
                title=Safe(' title="neuron visualization: the channel objective never activated this unit"')
                if is_neuron
                else "",
                label=label,
            )
        )
    links = [Safe('<a href="../index.html">index</a>')]
    if i > 0:
        links.append(
            html('<a href="../{href}">&larr; {layer}</a>', href=_layer_page(layers[i - 1]), layer=layers[i - 1])
        )
    if i + 1 < len(layers):
        links.append(
            html('<a href="../{href}">{layer} &rarr;</a>', href=_layer_page(layers[i + 1]), layer=layers[i + 1])
        )
    filters = html(
        _FILTERS,
        branch=_options("branch", [f["branch"] for f in facets], "branch"),
        category=_options("category", [f["category"] for f in facets], "colour"),
    )
    body = html(
        "<nav>{links}</nav><h1>{layer}</h1><p>{count} units</p>{filters}"
        '<div class="grid" id="units">{cells}</div><script src="../{script}" defer></script>',
        links=join(links, " | "),
        layer=layer,
        count=len(records),
        filters=filters,
        cells=join(cells),
        script=SCRIPT,
    )
    return _page(f"{layer} - atlas", body, 1)


def _unit_link(layer: str, unit, present: set, text: Safe) -> Safe:
    if unit is not None and (layer, unit) in present:
        return html('<a href="../../units/{layer}/{unit}.html">{text}</a>', layer=slug(layer), unit=unit, text=text)
    return html('<span class="weight">{text}</span>', text=text)


def _weights_html(title: str, links, present: set, css_id: str) -> Safe:
    if isinstance(links, str):
        return html('<h2>{title}</h2><p class="note" id="{id}">{text}</p>', title=title, id=css_id, text=links)
    if not links:
        return html('<h2>{title}</h2><p class="note" id="{id}">none in this atlas</p>', title=title, id=css_id)
    items = []
    for link in links:
        name = link["layer"] if link.get("unit") is None else f"{link['layer']}:{link['unit']}"
        text = html(
            '<img src="{picture}" alt="weights {name}">{name}<br>{norm:.3g}',
            picture=link["picture"],
            name=name,
            norm=float(link["norm"]),
        )
        items.append(_unit_link(link["layer"], link.get("unit"), present, text))
    return html(
        '<h2>{title}</h2><div class="weights" id="{id}">{items}</div>', title=title, id=css_id, items=join(items)
    )


def _curve_family_html(record: dict, present: set) -> Safe:
    """The tuning-based curve-detector family the unit belongs to, or "" when it is not a curve detector."""
    tuning = record.get("tuning")
    if not isinstance(tuning, dict) or not tuning.get("curve_detector") or not tuning.get("curve_family"):
        return Safe("")
    members = join((_unit_link(record["layer"], m, present, escape(m)) for m in tuning["curve_family"]), ", ")
    return html(
        "curve detector family (by tuning, {count} units), orientation {orientation}&deg;; members: {members}",
        count=len(tuning["curve_family"]),
        orientation=tuning.get("curve_orientation"),
        members=members,
    )


def _family_html(record: dict, present: set) -> Safe:
    family = record.get("family")
    curve = _curve_family_html(record, present)
    if not isinstance(family, dict):
        weights = escape(family if family is not None else "not computed")
        return html("{curve}<br>by weights: {weights}", curve=curve, weights=weights) if curve else weights
    if family.get("kind") == "rotation-invariant":
        return Safe("rotation-invariant (equals its own rotations)")
    members = join((_unit_link(record["layer"], m, present, escape(m)) for m in family.get("members", [])), ", ")
    rotation = html(
        "rotation family {family} ({size} units, score {score}), angle {angle}&deg;; members: {members}",
        family=family["family"],
        size=family["size"],
        score=family["score"],
        angle=family["angle"],
        members=members,
    )
    return html("{curve}<br>by weights: {rotation}", curve=curve, rotation=rotation) if curve else rotation


def _tuning_html(tuning) -> Safe:
    if not isinstance(tuning, dict):
        return escape(tuning if tuning is not None else "not computed")
    curve = (
        html(
            "curve detector, preferred orientation {orientation}\u00b0 (peak {peak} sd, curve vs line {ratio})",
            orientation=tuning.get("curve_orientation"),
            peak=tuning.get("curve_peak"),
            ratio=tuning.get("curve_vs_line"),
        )
        if tuning.get("curve_detector")
        else "not a curve detector"
    )
    return html(
        "{curve}; colour (uniform fields): {category} (colour drive {colour}, black-and-white drive {bw}); "
        "grating orientation selectivity {selectivity}",
        curve=curve,
        category=tuning.get("color_category"),
        colour=tuning.get("color_drive"),
        bw=tuning.get("bw_drive"),
        selectivity=tuning.get("orientation_selectivity"),
    )


def _note(value) -> Safe:
    return html('<p class="note">{text}</p>', text=value if value is not None else "not computed")


def _examples_html(examples) -> Safe:
    if isinstance(examples, dict) and examples.get("image"):
        values = ", ".join(f"{v:.3g}" for v in examples.get("values", []))
        parts = [
            html(
                '<img class="examples" id="examples" src="../../{image}" '
                'alt="dataset examples, the activating crop outlined"><p>activations: {values}</p>',
                image=examples["image"],
                values=values,
            )
        ]
        if examples.get("labels"):
            parts.append(html('<p class="note">scenes: {labels}</p>', labels=", ".join(examples["labels"])))
        if examples.get("crops"):
            parts.append(
                html(
                    '<img class="examples" id="example-crops" src="../../{crops}" alt="activating crops">',
                    crops=examples["crops"],
                )
            )
        return join(parts)
    if isinstance(examples, dict):
        return Safe('<p class="note">no images</p>')
    return _note(examples)


def _polysemanticity_html(value) -> Safe:
    if not isinstance(value, dict):
        return _note(value)
    source = value.get("previous") or "input pixels"
    label_h = value.get("label_entropy")
    note = html(' <span class="note">({note})</span>', note=value["note"]) if value.get("note") else ""
    parts = [
        html(
            '<p>score <b id="poly-score">{score}</b>: {clusters} cluster(s) of its top examples by what '
            "drives it in {source} (separation {separation}); scene-label entropy {entropy} bits{note}</p>",
            score=value.get("score"),
            clusters=value.get("n_clusters"),
            source=source,
            separation=value.get("separation"),
            entropy=label_h if label_h is not None else "-",
            note=note,
        )
    ]
    rows = []
    for i, cluster in enumerate(value.get("clusters") or []):
        counts: dict[str, int] = {}
        for label in cluster.get("labels", []):
            counts[label] = counts.get(label, 0) + 1
        common = ", ".join(f"{name} x{n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:4])
        rows.append(
            html(
                "<tr><td>{number}</td><td>{size}</td><td>{common}</td></tr>",
                number=i + 1,
                size=cluster.get("size"),
                common=common,
            )
        )
    if rows:
        parts.append(
            html(
                '<table class="facts" id="clusters"><tr><th>cluster</th><th>examples</th>'
                "<th>commonest scenes</th></tr>{rows}</table>",
                rows=join(rows),
            )
        )
    return join(parts)


def _facets_html(value) -> Safe:
    if isinstance(value, dict) and value.get("image"):
        return html(
            '<img class="facets" id="facets" src="../../{image}" alt="diversity facets">'
            '<p class="note">{k} facets optimised together with the diversity term '
            "(weight {weight}); pairwise Gram similarity {similarity}</p>",
            image=value["image"],
            k=value.get("k"),
            weight=value.get("weight"),
            similarity=value.get("similarity"),
        )
    return _note(value)


def _never_active_html(record: dict) -> Safe:
    if not record.get("never_active"):
        return Safe("")
    return Safe(
        ' <span class="note" id="never-active">never active: the unit stayed off at every step, '
        "so the image is the barely changed start</span>"
    )


def _neuron(record: dict) -> dict | None:
    """The unit's neuron visualization (the ``neuron`` part), or None where it was not computed."""
    value = record.get("neuron")
    return value if isinstance(value, dict) and "image" in value else None


def grid_image(record: dict) -> tuple[str, bool]:
    """``(image, is_neuron)``: what the layer grid shows for a unit. The channel visualization, unless it
    never activated the unit and the neuron visualization did (a unit too selective for a channel objective
    would otherwise show its unchanged start image)."""
    neuron = _neuron(record)
    if record.get("never_active") and neuron is not None and not neuron.get("never_active"):
        return neuron["image"], True
    return record["image"], False


def _neuron_html(record: dict) -> Safe:
    neuron = _neuron(record)
    if neuron is None:
        return _note(record.get("neuron"))
    state = (
        "never active: the image is the barely changed start"
        if neuron.get("never_active")
        else f"activation at the centre {neuron.get('activation')}"
    )
    return html(
        '<img class="vis" id="neuron" src="../../{image}" alt="neuron visualization">'
        '<p class="note">the unit at the centre position maximised; {state}</p>',
        image=neuron["image"],
        state=state,
    )


_UNIT = (
    "<nav>{links}</nav><h1>{name}</h1>{label}"
    '<div class="views"><div><h2>channel</h2><img class="vis" id="vis" '
    'src="../../{image}" alt="feature visualization of {name}"><p class="note">the channel maximised '
    "at every position</p></div>"
    "<div><h2>neuron</h2>{neuron}</div>"
    "<div><h2>facets</h2>{facets}</div>"
    "<div><h2>polysemanticity</h2>{polysemanticity}</div></div>"
    '<table class="facts"><tr><th>curve and weight family</th><td id="family">{family}</td></tr>'
    '<tr><th>rotation families, three views</th><td id="views">{views}</td></tr>'
    '<tr><th>branch</th><td id="branch">{branch}</td></tr>'
    '<tr><th>tuning</th><td id="tuning">{tuning}</td></tr>'
    "<tr><th>final objective</th><td>{loss}{never_active}</td></tr></table>"
    "<h2>circuit neighbourhood</h2>{neighbourhood}{inputs}{outputs}<h2>dataset examples</h2>{examples}"
)


def _unit_href(present: set):
    """``(layer, unit) -> relative page`` from a unit page, or None for a unit this atlas has no page of."""
    return lambda layer, unit: (
        f"../../units/{slug(layer)}/{unit}.html" if unit is not None and (layer, unit) in present else None
    )


def _neighbourhood_html(record: dict, present: set) -> Safe:
    """The strongest inputs and outputs as an inline SVG graph (edges by the sign of the net weight)."""
    from circuits_vision.atlas.neighbourhood import neighbourhood_svg

    def nodes(links) -> list[dict]:
        return (
            [
                {
                    "layer": link["layer"],
                    "unit": link.get("unit"),
                    "strength": float(link.get("norm") or 0),
                    "sign": link.get("net"),
                }
                for link in links
            ]
            if isinstance(links, list)
            else []
        )

    inputs, outputs = nodes(record.get("inputs")), nodes(record.get("outputs"))
    if not inputs and not outputs:
        return Safe('<p class="note" id="neighbourhood">no weight links computed</p>')
    return Safe(neighbourhood_svg(f"{record['layer']}:{record['unit']}", inputs, outputs, _unit_href(present)))


def _unit_html(record: dict, present: set, neighbours) -> Safe:
    if record.get("dictionary_of"):  # a dictionary feature, not a neuron
        from circuits_vision.atlas.dictionary_pages import unit_html

        return Safe(unit_html(record, present, neighbours))
    layer, unit = record["layer"], record["unit"]
    name = f"{layer}:{unit}"
    label = html('<p class="unitlabel" id="label">{label}</p>', label=record["label"]) if record.get("label") else ""
    branch = record.get("branch")
    links = [
        Safe('<a href="../../index.html">index</a>'),
        html('<a id="layer" href="../../{href}">{layer}</a>', href=_layer_page(layer), layer=layer),
    ]
    previous, following = neighbours
    if previous:
        links.append(html('<a href="../../{page}">&larr; {unit}</a>', page=previous["page"], unit=previous["unit"]))
    if following:
        links.append(html('<a href="../../{page}">{unit} &rarr;</a>', page=following["page"], unit=following["unit"]))
    body = html(
        _UNIT,
        links=join(links, " | "),
        name=name,
        label=label,
        image=record["image"],
        neuron=_neuron_html(record),
        facets=_facets_html(record.get("facets")),
        polysemanticity=_polysemanticity_html(record.get("polysemanticity")),
        family=_family_html(record, present),
        views=views_section.unit_html(record.get("views")),
        branch=branch if branch is not None else "not a branch layer",
        tuning=_tuning_html(record.get("tuning")),
        loss=record.get("loss"),
        never_active=_never_active_html(record),
        inputs=_weights_html("strongest inputs (expanded weights)", record.get("inputs"), present, "inputs"),
        outputs=_weights_html("strongest outputs (expanded weights)", record.get("outputs"), present, "outputs"),
        examples=_examples_html(record.get("examples")),
        neighbourhood=_neighbourhood_html(record, present),
    )
    return _page(f"{name} - atlas", body, 2)
