"""Three views of a layer's families in the circuit report and on the atlas's unit pages.

For one layer, rotation families found from the weights, from orientation tuning curves and from feature
visualizations (:func:`circuits_vision.analysis.equivariance.agreement.views`) side by side: which units
each view puts in which family at which angle, and per pair of views the Jaccard of the memberships and
the median orientation error against a shuffled baseline (with its p-value).

:func:`section_html` writes the report's section and, beside the report's ``index.html``, a
``views_<layer>.json`` with every unit's memberships; :func:`attach` reads those files into the atlas's
unit records and :func:`unit_html` shows them on a unit page. Every value shown goes through
:func:`circuits_vision.atlas.templates.escape`; the fragments are returned as ``Safe`` markup.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import CorruptAtlasFileError, atomic_write_text, read_json
from circuits_vision.atlas.templates import Safe
from circuits_vision.atlas.templates import escape as _e

VIEWS = ("weights", "tuning", "visualization")
IMAGE_SIZE = 32
"""Feature visualizations are compared at this size (area-averaged): rotating every image by every angle
and comparing all pairs costs the square of the side, and a unit's pattern survives the averaging."""
RENDER = {"steps": 128, "size": 64}
"""Render settings for the visualization view when no atlas images are there (neuron objectives, centred;
the images are compared at :data:`IMAGE_SIZE`, so a larger render buys little for its cost)."""


def file_name(layer: str) -> str:
    """The memberships file of ``layer`` beside the report's ``index.html``."""
    return f"views_{slug(layer)}.json"


def atlas_images(
    atlas_dir: Path | None, layer: str, units: list[int], kind: str = "channel"
) -> tuple[list[int], torch.Tensor | None]:
    """The atlas's renders of those ``units`` that have one: ``(units, images [n, 3, H, W] in [0, 1])``.

    ``kind``: "channel" (the atlas's feature visualizations) or "neuron" (its neuron visualizations, the
    ``neuron`` part: centred on the unit's receptive field, what rotating about the centre can align).
    """
    if kind not in ("channel", "neuron"):
        raise ValueError(f"kind must be 'channel' or 'neuron', got {kind!r}")
    if atlas_dir is None:
        return [], None
    import numpy as np
    from PIL import Image

    suffix = "_neuron" if kind == "neuron" else ""
    found, images = [], []
    for unit in units:
        path = Path(atlas_dir) / "img" / slug(layer) / f"{unit}{suffix}.png"
        if path.is_file():
            with Image.open(path) as image:
                images.append(
                    torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
                )
            found.append(unit)
    if not found or len({tuple(i.shape) for i in images}) != 1:
        return [], None
    return found, torch.stack(images)


def _shrink(images: torch.Tensor) -> torch.Tensor:
    if images.shape[-1] <= IMAGE_SIZE and images.shape[-2] <= IMAGE_SIZE:
        return images
    return torch.nn.functional.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="area")


def layer_views(
    model: nn.Module,
    layer: str,
    *,
    weights=None,
    source: str | None = None,
    atlas_dir: Path | None = None,
    detection: dict | None = None,
    render_kwargs: dict | None = None,
):
    """``(AgreementResult, where the images came from)`` for ``layer``'s three views.

    ``weights``: the weight view's result when already computed (the report's families section);
    ``detection``: more arguments of :func:`~circuits_vision.analysis.equivariance.report` (``units``,
    ``alpha``, ``threshold``, ``min_members``). The visualization view uses the atlas's neuron renders of
    the units in ``atlas_dir`` when there are any (else its channel renders), else renders neuron
    visualizations (``render_kwargs``, default :data:`RENDER`).
    """
    from circuits_vision.analysis import equivariance
    from circuits_vision.analysis.equivariance import agreement
    from circuits_vision.hooks import layer_shape

    detection = dict(detection or {})
    units = detection.pop("units", None)
    units = list(range(int(layer_shape(model, layer)[0]))) if units is None else list(units)
    families = equivariance.rotation.families
    results = {
        "weights": weights if weights is not None else families(model, layer, source=source, units=units, **detection),
        "tuning": families(model, layer, method="tuning", units=units, **detection),
    }
    kind = "neuron"
    shown, images = atlas_images(atlas_dir, layer, units, kind)
    if images is None:  # an atlas built without its neuron visualizations
        kind = "channel"
        shown, images = atlas_images(atlas_dir, layer, units, kind)
    if images is not None:
        origin = (
            f"the atlas's renders of {len(shown)} units ({kind} objectives, compared at {IMAGE_SIZE}x{IMAGE_SIZE} px)"
        )
    else:
        from circuits_vision.optvis import objectives, render

        settings = {**RENDER, **(render_kwargs or {})}
        shown = units
        images = render(model, [objectives.neuron(layer, u) for u in units], progress=False, **settings).images[:, :3]
        origin = (
            f"neuron visualizations rendered for this report ({', '.join(f'{k} {v}' for k, v in settings.items())}; "
            f"no atlas renders), compared at {IMAGE_SIZE}x{IMAGE_SIZE} px"
        )
    results["visualization"] = families(
        model, layer, method="visualization", units=shown, images=_shrink(images.float()), **detection
    )
    return agreement.views(model, layer, which=VIEWS, results=results), origin


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def memberships(found) -> dict:
    """The JSON-ready content of a :class:`~circuits_vision.analysis.equivariance.agreement.AgreementResult`."""
    units = {}
    for row in found.table():
        entry = {}
        for name, result in found.views.items():
            number = row[f"{name}_family"]
            entry[name] = (
                None
                if number is None
                else {
                    "family": number,
                    "angle": round(float(row[f"{name}_angle"]), 1),
                    "size": len(result.families[number]),
                }
            )
        units[str(row["unit"])] = entry
    agreements = [
        {
            "a": ag.a,
            "b": ag.b,
            "jaccard": ag.jaccard,
            "shared": len(ag.shared),
            "median_error_deg": _number(ag.median_error_deg),
            "shuffled_median_deg": _number(ag.shuffled_median_deg),
            "p_value": _number(ag.p_value),
        }
        for ag in found.agreements
    ]
    families = {name: [len(f) for f in result.families] for name, result in found.views.items()}
    return {
        "layer": found.layer,
        "views": list(found.views),
        "units": units,
        "agreements": agreements,
        "families": families,
    }


def _deg(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def section_html(
    model: nn.Module,
    layer: str,
    out: Path,
    *,
    weights=None,
    source: str | None = None,
    atlas_dir: Path | None = None,
    detection: dict | None = None,
) -> Safe:
    """The report section of ``layer``'s three views; writes ``out / file_name(layer)`` for the unit pages."""
    (Path(out) / file_name(layer)).unlink(missing_ok=True)  # an earlier report's memberships must not outlive a failure
    found, origin = layer_views(model, layer, weights=weights, source=source, atlas_dir=atlas_dir, detection=detection)
    content = memberships(found)
    import json

    atomic_write_text(Path(out) / file_name(layer), json.dumps(content, indent=1) + "\n")
    where = "the input" if source is None else source
    key = f"views-{_e(slug(layer))}"  # the prefix of this section's element ids
    parts = [
        f'<h2 id="{key}">Three views of {_e(layer)}</h2>'
        f"<p>Rotation families of {_e(layer)} found three ways, each at the default false-discovery rule: from the "
        f"weights (expanded weights from {_e(where)}), from orientation tuning (arcs at 4 radii and their tangent "
        f"line, at every 5 deg), and from feature visualizations ({_e(origin)}). Agreement per pair of views: "
        "Jaccard of the units each puts in a family, and over pairs of shared units in one family in both, the "
        "median error of their relative angle against the same with one view's angles shuffled (p: shuffles doing "
        "as well).</p>"
    ]
    rows = []
    for name, result in found.views.items():
        sizes = content["families"][name]
        note = "" if sizes else f' <span class="note">({_e(result.explanation or "nothing significant")})</span>'
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{len(sizes)}</td><td>{_e(sizes)}</td><td>{sum(sizes)}</td><td>{note}</td></tr>"
        )
    parts.append(
        f'<table class="facts" id="{key}-summary"><tr><th>view</th><th>families</th><th>sizes</th>'
        f"<th>units</th><th></th></tr>{''.join(rows)}</table>"
    )
    if source is not None:
        parts.append(_inherited_html(model, layer, source, found.views["tuning"], detection))
    rows = [
        f"<tr><td>{_e(a['a'])} vs {_e(a['b'])}</td><td>{a['jaccard']:.2f}</td><td>{a['shared']}</td>"
        f"<td>{_deg(a['median_error_deg'])}</td><td>{_deg(a['shuffled_median_deg'])}</td>"
        f"<td>{'-' if a['p_value'] is None else format(a['p_value'], '.3g')}</td></tr>"
        for a in content["agreements"]
    ]
    parts.append(
        f'<table class="facts" id="{key}-agreement"><tr><th>views</th><th>Jaccard</th><th>shared units</th>'
        "<th>median orientation error (deg)</th><th>shuffled (deg)</th><th>p</th></tr>"
        f"{''.join(rows)}</table>"
    )
    if content["units"]:
        head = "".join(f"<th>{_e(name)}</th>" for name in found.views)
        rows = []
        for unit, entry in content["units"].items():
            cells = "".join(
                "<td>-</td>"
                if entry[name] is None
                else f"<td>family {entry[name]['family']} at {entry[name]['angle']:.0f}&deg;</td>"
                for name in found.views
            )
            rows.append(f"<tr><td>{_e(unit)}</td>{cells}</tr>")
        parts.append(f'<table class="facts" id="{key}-units"><tr><th>unit</th>{head}</tr>{"".join(rows)}</table>')
    else:
        parts.append('<p class="note">no view puts any unit of this layer in a family.</p>')
    return Safe("".join(parts))  # every value in it went through escape


def _inherited_html(model: nn.Module, layer: str, source: str, tuning, detection: dict | None) -> Safe:
    """Whether the tuning view's families are made by ``layer``'s own wiring: the same search against copies
    with only the weights between ``source`` and ``layer`` shuffled (``tuning_null="layer"``)."""
    from circuits_vision.analysis import equivariance

    try:
        found = equivariance.rotation.families(
            model, layer, method="tuning", tuning_null="layer", source=source, **dict(detection or {})
        )
    except ValueError as error:  # e.g. no parameters between the two layers: say so, keep the rest of the section
        return Safe(f'<p class="note">Made by this layer? Not computed: {_e(error)}</p>')
    null = found.null
    spread = "" if null is None else f"; null pairs {null.mean:.2f} &plusmn; {null.std:.2f}"
    sizes = [len(f) for f in found.families]
    if tuning.families and not sizes:
        verdict = (
            f"none of the tuning view's families survives: random wirings of {_e(source)}'s units are as alike, so "
            f"the likeness of {_e(layer)}'s tuning curves is inherited from {_e(source)} rather than made by "
            f"{_e(layer)}'s weights"
        )
    elif sizes:
        counted = f"{len(sizes)} {'family' if len(sizes) == 1 else 'families'} ({_e(', '.join(map(str, sizes)))} units)"
        verdict = f"{counted} made by {_e(layer)}'s own wiring"
    else:
        verdict = "no family either"
    return Safe(
        f'<p id="views-{_e(slug(layer))}-inherited">Made by this layer? Against copies of the model with only the '
        f"weights between {_e(source)} and {_e(layer)} shuffled (the real {_e(source)} units kept{spread}): "
        f"{verdict}.</p>"
    )


def attach(report_index: Path | None, manifest: list[dict]) -> None:
    """Set ``record["views"]`` of every manifest record whose layer has a memberships file beside
    ``report_index`` (``{view: {"family", "angle", "size"} | None}``, plus ``"*"``: the layer's agreements);
    records of other layers are left alone."""
    if report_index is None:
        return
    folder = Path(report_index).parent
    cache: dict[str, dict | None] = {}
    for record in manifest:
        layer = record["layer"]
        if layer not in cache:
            path = folder / file_name(layer)
            content = read_json(path, fix="delete it and rerun the report") if path.is_file() else None
            if content is not None and not (isinstance(content, dict) and isinstance(content.get("units"), dict)):
                raise CorruptAtlasFileError(f"{path} holds no memberships: delete it and rerun the report")
            cache[layer] = content
        content = cache[layer]
        if content is None:
            continue
        entry = content["units"].get(str(record["unit"]), {name: None for name in content["views"]})
        record["views"] = {**entry, "*": {"agreements": content["agreements"], "families": content["families"]}}


def unit_html(value) -> Safe:
    """The unit page's line: which view puts the unit in which family (or "not computed")."""
    if not isinstance(value, dict):
        return Safe('<span class="note">not computed (the circuit report covers this layer\'s three views)</span>')
    extra = value.get("*", {})
    parts = []
    for name in (k for k in value if k != "*"):
        entry = value[name]
        count = len((extra.get("families") or {}).get(name, []))
        parts.append(
            f"by {_e(name)}: "
            + (
                "in no family" + (f" (that view found {count})" if count else " (that view found none)")
                if entry is None
                else f"family {_e(entry['family'])} ({_e(entry['size'])} units) at {_e(entry['angle'])}&deg;"
            )
        )
    agree = "; ".join(f"{_e(a['a'])} vs {_e(a['b'])}: Jaccard {a['jaccard']:.2f}" for a in extra.get("agreements", []))
    # The row above lists the curve detectors (a classification of single units' tuning); these are families
    # (groups of units that are rotated copies of one another in that view), which may hold other oriented units.
    note = (
        '<br><span class="note">each view\'s rotation families: units that are rotated copies of one another by '
        "weights, tuning curves or feature visualizations (at its false-discovery rule), curve detectors or "
        "not; the curve detectors are the row above</span>"
    )
    return Safe("; ".join(parts) + (f'<br><span class="note">layer agreement: {agree}</span>' if agree else "") + note)
