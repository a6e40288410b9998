"""The atlas's static viewer: ``index.html``, one grid page per layer, one page per unit.

Plain HTML with relative links (works from ``file://``, no server); the layer pages' search, filters
and sorting are one local script (``atlas.js``, no dependencies; without it every unit is listed). Thumbnails use
``loading="lazy"`` with fixed sizes, so a layer of thousands of units opens at once. Everything taken
from the model, the settings or the user (layer names, labels, file names) goes through
:func:`html.escape`.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from html import escape
from importlib import resources
from pathlib import Path

from circuits_vision.atlas import views_section
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import atomic_write_text

STYLE = "atlas.css"
SCRIPT = "atlas.js"  # the layer pages' filters: a local file, so pages work from file:// and offline


def _e(value) -> str:
    return escape(str(value), quote=True)


def _page(title: str, body: str, depth: int) -> str:
    """A complete HTML page; ``depth`` = folders below the atlas root (for the stylesheet's path)."""
    root = "../" * depth
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><link rel=\"stylesheet\" href=\"{root}{STYLE}\"></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, text, fsync=False)


def _layer_page(layer: str) -> str:
    return f"layers/{slug(layer)}.html"


def write_viewer(directory: str | Path, manifest: list[dict], settings: dict, *, report: Path | None = None) -> Path:
    """Write the viewer for ``manifest`` (records in layer order) into ``directory``; returns ``index.html``."""
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
    _write(index, _index_html(by_layer, settings, directory, report))
    return index


def _settings_html(settings: dict) -> str:
    shown = {key: settings.get(key) for key in ("model", "steps", "size", "seed", "units_per_layer")}
    shown["weights sha256"] = str(settings.get("weights_sha256", ""))[:16]
    items = ", ".join(f"{_e(k)}: {_e(v)}" for k, v in shown.items() if v is not None)
    note = f"<p class=\"note\">circuit report: {_e(settings['report_error'])}</p>" if settings.get("report_error") else ""
    return f"<p class=\"settings\">{items}</p>{note}"


def _index_html(by_layer: dict[str, list[dict]], settings: dict, directory: Path, report: Path | None) -> str:
    rows = []
    for layer, records in by_layer.items():
        preview = "".join(
            f"<img loading=\"lazy\" width=\"40\" height=\"40\" src=\"{_e(r['image'])}\" alt=\"{_e(layer)}:{r['unit']}\">"
            for r in records[:8]
        )
        rows.append(f"<tr><td><a class=\"layer\" href=\"{_e(_layer_page(layer))}\">{_e(layer)}</a></td>"
                    f"<td>{len(records)} units</td><td>{preview}</td></tr>")
    report_link = ""
    if report is not None:
        relative = Path(report).resolve().relative_to(directory.resolve()).as_posix()
        report_link = f"<p><a id=\"report\" href=\"{_e(relative)}\">circuit report</a></p>"
    body = (f"<h1>Atlas of {_e(settings.get('model', 'model'))}</h1>{_settings_html(settings)}{report_link}"
            f"<table class=\"layers\"><tr><th>layer</th><th>units</th><th></th></tr>{''.join(rows)}</table>")
    return _page(f"Atlas of {settings.get('model', 'model')}", body, 0)


def _facets(record: dict) -> dict[str, str]:
    """The values a layer page filters and sorts a unit by (empty where not computed)."""
    family = record.get("family")
    tuning = record.get("tuning") if isinstance(record.get("tuning"), dict) else {}
    poly = record.get("polysemanticity") if isinstance(record.get("polysemanticity"), dict) else {}
    return {
        "unit": str(record["unit"]), "label": str(record.get("label") or ""),
        "family": str(family["family"]) if isinstance(family, dict) and "family" in family else "",
        "branch": str(record.get("branch") or ""), "category": str(tuning.get("color_category") or ""),
        "selectivity": str(tuning.get("orientation_selectivity", "")), "score": str(poly.get("score", "")),
    }


def _options(name: str, values, title: str) -> str:
    items = "".join(f"<option value=\"{_e(v)}\">{_e(v)}</option>" for v in sorted(set(values) - {""}))
    return f"<label>{_e(title)} <select name=\"{name}\"><option value=\"\">any</option>{items}</select></label>"


def _layer_html(layer: str, records: list[dict], layers: list[str], i: int) -> str:
    cells = []
    facets = [_facets(r) for r in records]
    for r, facet in zip(records, facets):
        label = f"<span class=\"label\">{_e(r['label'])}</span>" if r.get("label") else ""
        data = " ".join(f"data-{key}=\"{_e(value)}\"" for key, value in facet.items())
        cells.append(
            f"<a class=\"unit\" {data} href=\"../{_e(r['page'])}\"><img loading=\"lazy\" decoding=\"async\" width=\"100\" "
            f"height=\"100\" src=\"../{_e(r['image'])}\" alt=\"{_e(layer)}:{r['unit']}\">{r['unit']}{label}</a>"
        )
    links = ["<a href=\"../index.html\">index</a>"]
    if i > 0:
        links.append(f"<a href=\"../{_e(_layer_page(layers[i - 1]))}\">&larr; {_e(layers[i - 1])}</a>")
    if i + 1 < len(layers):
        links.append(f"<a href=\"../{_e(_layer_page(layers[i + 1]))}\">{_e(layers[i + 1])} &rarr;</a>")
    filters = (
        "<form id=\"filters\" class=\"filters\">"
        "<label>search <input name=\"q\" type=\"search\" placeholder=\"unit number or label\"></label>"
        "<label>family <select name=\"family\"><option value=\"\">any</option><option value=\"yes\">in a family"
        "</option><option value=\"no\">in none</option></select></label>"
        + _options("branch", [f["branch"] for f in facets], "branch")
        + _options("category", [f["category"] for f in facets], "colour")
        + "<label>polysemanticity &ge; <input name=\"minscore\" type=\"number\" step=\"0.05\" min=\"0\"></label>"
        "<label>sort <select name=\"sort\"><option value=\"unit\">unit</option><option value=\"selectivity\">"
        "orientation selectivity</option><option value=\"score\">polysemanticity</option></select></label>"
        f"<span id=\"shown\" class=\"note\"></span></form>"
    )
    body = (f"<nav>{' | '.join(links)}</nav><h1>{_e(layer)}</h1><p>{len(records)} units</p>{filters}"
            f"<div class=\"grid\" id=\"units\">{''.join(cells)}</div><script src=\"../{SCRIPT}\" defer></script>")
    return _page(f"{layer} - atlas", body, 1)


def _unit_link(layer: str, unit, present: set, text: str) -> str:
    if unit is not None and (layer, unit) in present:
        return f"<a href=\"../../units/{_e(slug(layer))}/{_e(unit)}.html\">{text}</a>"
    return f"<span class=\"weight\">{text}</span>"


def _weights_html(title: str, links, present: set, css_id: str) -> str:
    if isinstance(links, str):
        return f"<h2>{_e(title)}</h2><p class=\"note\" id=\"{css_id}\">{_e(links)}</p>"
    if not links:
        return f"<h2>{_e(title)}</h2><p class=\"note\" id=\"{css_id}\">none in this atlas</p>"
    items = []
    for link in links:
        name = link["layer"] if link.get("unit") is None else f"{link['layer']}:{link['unit']}"
        text = (f"<img src=\"{_e(link['picture'])}\" alt=\"weights {_e(name)}\">"
                f"{_e(name)}<br>{float(link['norm']):.3g}")
        items.append(_unit_link(link["layer"], link.get("unit"), present, text))
    return f"<h2>{_e(title)}</h2><div class=\"weights\" id=\"{css_id}\">{''.join(items)}</div>"


def _curve_family_html(record: dict, present: set) -> str:
    """The tuning-based curve-detector family the unit belongs to, or "" when it is not a curve detector."""
    tuning = record.get("tuning")
    if not isinstance(tuning, dict) or not tuning.get("curve_detector") or not tuning.get("curve_family"):
        return ""
    members = ", ".join(_unit_link(record["layer"], m, present, _e(m)) for m in tuning["curve_family"])
    return (f"curve detector family (by tuning, {_e(len(tuning['curve_family']))} units), orientation "
            f"{_e(tuning.get('curve_orientation'))}&deg;; members: {members}")


def _family_html(record: dict, present: set) -> str:
    family = record.get("family")
    curve = _curve_family_html(record, present)
    if not isinstance(family, dict):
        weights = _e(family if family is not None else "not computed")
        return f"{curve}<br>by weights: {weights}" if curve else weights
    if family.get("kind") == "rotation-invariant":
        return "rotation-invariant (equals its own rotations)"
    members = ", ".join(_unit_link(record["layer"], m, present, _e(m)) for m in family.get("members", []))
    rotation = (f"rotation family {_e(family['family'])} ({_e(family['size'])} units, score {_e(family['score'])}), "
                f"angle {_e(family['angle'])}&deg;; members: {members}")
    return f"{curve}<br>by weights: {rotation}" if curve else rotation


def _tuning_html(tuning) -> str:
    if not isinstance(tuning, dict):
        return _e(tuning if tuning is not None else "not computed")
    curve = (f"curve detector, preferred orientation {_e(tuning.get('curve_orientation'))}° "
             f"(peak {_e(tuning.get('curve_peak'))} sd, curve vs line {_e(tuning.get('curve_vs_line'))})"
             if tuning.get("curve_detector") else "not a curve detector")
    return (f"{curve}; colour (uniform fields): {_e(tuning.get('color_category'))} (colour drive "
            f"{_e(tuning.get('color_drive'))}, black-and-white drive {_e(tuning.get('bw_drive'))}); "
            f"grating orientation selectivity {_e(tuning.get('orientation_selectivity'))}")


def _examples_html(examples) -> str:
    if isinstance(examples, dict) and examples.get("image"):
        values = ", ".join(f"{v:.3g}" for v in examples.get("values", []))
        html = (f"<img class=\"examples\" id=\"examples\" src=\"../../{_e(examples['image'])}\" "
                f"alt=\"dataset examples, the activating crop outlined\"><p>activations: {_e(values)}</p>")
        if examples.get("labels"):
            html += f"<p class=\"note\">scenes: {_e(', '.join(examples['labels']))}</p>"
        if examples.get("crops"):
            html += (f"<img class=\"examples\" id=\"example-crops\" src=\"../../{_e(examples['crops'])}\" "
                     f"alt=\"activating crops\">")
        return html
    if isinstance(examples, dict):
        return "<p class=\"note\">no images</p>"
    return f"<p class=\"note\">{_e(examples if examples is not None else 'not computed')}</p>"


def _polysemanticity_html(value) -> str:
    if not isinstance(value, dict):
        return f"<p class=\"note\">{_e(value if value is not None else 'not computed')}</p>"
    source = value.get("previous") or "input pixels"
    label_h = value.get("label_entropy")
    html = (f"<p>score <b id=\"poly-score\">{_e(value.get('score'))}</b>: {_e(value.get('n_clusters'))} "
            f"cluster(s) of its top examples by what drives it in {_e(source)} (separation "
            f"{_e(value.get('separation'))}); scene-label entropy {_e(label_h if label_h is not None else '-')} bits"
            + (f" <span class=\"note\">({_e(value['note'])})</span>" if value.get("note") else "") + "</p>")
    rows = []
    for i, cluster in enumerate(value.get("clusters") or []):
        counts: dict[str, int] = {}
        for label in cluster.get("labels", []):
            counts[label] = counts.get(label, 0) + 1
        common = ", ".join(f"{name} x{n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:4])
        rows.append(f"<tr><td>{i + 1}</td><td>{_e(cluster.get('size'))}</td><td>{_e(common)}</td></tr>")
    if rows:
        html += ("<table class=\"facts\" id=\"clusters\"><tr><th>cluster</th><th>examples</th>"
                 "<th>commonest scenes</th></tr>" + "".join(rows) + "</table>")
    return html


def _facets_html(value) -> str:
    if isinstance(value, dict) and value.get("image"):
        return (f"<img class=\"facets\" id=\"facets\" src=\"../../{_e(value['image'])}\" alt=\"diversity facets\">"
                f"<p class=\"note\">{_e(value.get('k'))} facets optimised together with the diversity term "
                f"(weight {_e(value.get('weight'))}); pairwise Gram similarity {_e(value.get('similarity'))}</p>")
    return f"<p class=\"note\">{_e(value if value is not None else 'not computed')}</p>"


def _never_active_html(record: dict) -> str:
    if not record.get("never_active"):
        return ""
    return (" <span class=\"note\" id=\"never-active\">never active: the unit stayed off at every step, "
            "so the image is the barely changed start</span>")


def _unit_html(record: dict, present: set, neighbours) -> str:
    layer, unit = record["layer"], record["unit"]
    name = f"{layer}:{unit}"
    label = f"<p class=\"unitlabel\" id=\"label\">{_e(record['label'])}</p>" if record.get("label") else ""
    branch = record.get("branch")
    links = ["<a href=\"../../index.html\">index</a>", f"<a id=\"layer\" href=\"../../{_e(_layer_page(layer))}\">{_e(layer)}</a>"]
    previous, following = neighbours
    if previous:
        links.append(f"<a href=\"../../{_e(previous['page'])}\">&larr; {_e(previous['unit'])}</a>")
    if following:
        links.append(f"<a href=\"../../{_e(following['page'])}\">{_e(following['unit'])} &rarr;</a>")
    body = (
        f"<nav>{' | '.join(links)}</nav><h1>{_e(name)}</h1>{label}"
        f"<div class=\"views\"><div><h2>feature visualization</h2><img class=\"vis\" id=\"vis\" "
        f"src=\"../../{_e(record['image'])}\" alt=\"feature visualization of {_e(name)}\"></div>"
        f"<div><h2>facets</h2>{_facets_html(record.get('facets'))}</div>"
        f"<div><h2>polysemanticity</h2>{_polysemanticity_html(record.get('polysemanticity'))}</div></div>"
        f"<table class=\"facts\"><tr><th>family</th><td id=\"family\">{_family_html(record, present)}</td></tr>"
        f"<tr><th>three views</th><td id=\"views\">{views_section.unit_html(record.get('views'))}</td></tr>"
        f"<tr><th>branch</th><td id=\"branch\">{_e(branch if branch is not None else 'not a branch layer')}</td></tr>"
        f"<tr><th>tuning</th><td id=\"tuning\">{_tuning_html(record.get('tuning'))}</td></tr>"
        f"<tr><th>final objective</th><td>{_e(record.get('loss'))}{_never_active_html(record)}</td></tr></table>"
        + _weights_html("strongest inputs (expanded weights)", record.get("inputs"), present, "inputs")
        + _weights_html("strongest outputs (expanded weights)", record.get("outputs"), present, "outputs")
        + "<h2>dataset examples</h2>" + _examples_html(record.get("examples"))
    )
    return _page(f"{name} - atlas", body, 2)
