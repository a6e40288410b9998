"""Pages of the dictionary part: a feature's unit page and the neurons-vs-features comparison of a layer.

Same rules as :mod:`~circuits_vision.atlas.viewer`: relative links (``file://``), no scripts, everything
shown from the model or the user through :func:`html.escape`.
"""

from __future__ import annotations

from pathlib import Path

from circuits_vision._utils import escape_html
from circuits_vision.analysis.dictionary_comparison import compare
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.neighbourhood import neighbourhood_svg
from circuits_vision.atlas.store import atomic_write_text
from circuits_vision.atlas.templates import Safe

BINS = 10
HISTOGRAM_WIDTH, HISTOGRAM_HEIGHT = 420, 150


_e = escape_html


def _viewer():
    from circuits_vision.atlas import viewer

    return viewer


def _neurons_html(record: dict, present: set) -> str:
    rows = []
    for link in record.get("neurons") or []:
        name = f"{link['layer']}:{link['unit']}"
        text = _e(name)
        if (link["layer"], link["unit"]) in present:
            text = f'<a href="../../units/{_e(slug(link["layer"]))}/{_e(link["unit"])}.html">{text}</a>'
        rows.append(f"<tr><td>{text}</td><td>{float(link['weight']):+.3f}</td></tr>")
    return (
        '<table class="facts" id="neurons"><tr><th>neuron</th><th>decoder weight</th></tr>' + "".join(rows) + "</table>"
    )


def unit_html(record: dict, present: set, neighbours) -> str:
    """The page of one dictionary feature (``record`` from :func:`~.dictionary_units.feature_units`)."""
    viewer = _viewer()
    layer, unit, source = record["layer"], record["unit"], record["dictionary_of"]
    name = f"{layer}:{unit}"
    links = [
        '<a href="../../index.html">index</a>',
        f'<a id="layer" href="../../layers/{_e(slug(layer))}.html">{_e(layer)}</a>',
        f'<a id="comparison" href="../../dictionary/{_e(slug(source))}.html">neurons vs features</a>',
    ]
    previous, following = neighbours
    if previous:
        links.append(f'<a href="../../{_e(previous["page"])}">&larr; {_e(previous["unit"])}</a>')
    if following:
        links.append(f'<a href="../../{_e(following["page"])}">{_e(following["unit"])} &rarr;</a>')
    label = f'<p class="unitlabel" id="label">{_e(record["label"])}</p>' if record.get("label") else ""
    nodes = [
        {"layer": n["layer"], "unit": n["unit"], "strength": abs(float(n["weight"])), "sign": float(n["weight"])}
        for n in record.get("neurons") or []
    ]
    graph = neighbourhood_svg(
        name, nodes, [], lambda lyr, u: f"../../units/{slug(lyr)}/{u}.html" if (lyr, u) in present else None
    )
    covering = ", ".join(str(n) for n in record.get("covering") or [])
    cleaner = (
        "cleaner than the cleanest of its covering neurons"
        if record.get("cleaner")
        else "not cleaner than the cleanest of its covering neurons"
    )
    body = (
        f"<nav>{' | '.join(links)}</nav><h1>{_e(name)}</h1>{label}"
        f"<p>dictionary feature {_e(unit)} of {_e(source)} (sparse autoencoder); active on "
        f"{100 * float(record.get('frequency') or 0):.2f}% of the positions of the training scenes</p>"
        f'<div class="views"><div><h2>feature visualization</h2><img class="vis" id="vis" '
        f'src="../../{_e(record["image"])}" alt="feature visualization of {_e(name)}">'
        f'<p class="note">direction objective along its decoder direction; final objective {_e(record.get("loss"))}'
        f"</p></div><div><h2>polysemanticity</h2>{viewer._polysemanticity_html(record.get('polysemanticity'))}"
        f'<p id="cleaner">{_e(cleaner)} ({_e(source)} {_e(covering)})</p></div></div>'
        f"<h2>strongest neurons (decoder weights)</h2>{_neurons_html(record, present)}"
        f"<h2>circuit neighbourhood</h2>{graph}"
        f"<h2>dataset examples</h2>{viewer._examples_html(record.get('examples'))}"
    )
    return viewer._page(f"{name} - atlas", Safe(body), 2)  # every value above went through _e


def _histogram_svg(neurons: list[float], features: list[float]) -> str:
    """Two overlaid histograms (``BINS`` bins over the common range) of polysemanticity scores, as SVG."""
    values = neurons + features
    if not values:
        return '<p class="note">no scores</p>'
    top = max(max(values), 1e-6)
    width = top / BINS

    def counts(scores: list[float]) -> list[float]:
        bins = [0] * BINS
        for s in scores:
            bins[min(BINS - 1, int(s / width))] += 1
        return [b / max(1, len(scores)) for b in bins]  # fractions: the two sets differ in size

    n, f = counts(neurons), counts(features)
    tallest = max(n + f + [1e-6])
    bar = (HISTOGRAM_WIDTH - 40) / BINS
    shapes = []
    for i in range(BINS):
        for j, (share, colour, css) in enumerate(((n[i], "#888888", "neurons"), (f[i], "#e08214", "features"))):
            h = (HISTOGRAM_HEIGHT - 30) * share / tallest
            x = 30 + i * bar + j * bar / 2
            shapes.append(
                f'<rect class="{css}" x="{x:.1f}" y="{HISTOGRAM_HEIGHT - 20 - h:.1f}" '
                f'width="{bar / 2 - 1:.1f}" height="{h:.1f}" fill="{colour}"><title>{css}: '
                f"{share:.0%} in [{i * width:.2f}, {(i + 1) * width:.2f})</title></rect>"
            )
    axis = (
        f'<text x="30" y="{HISTOGRAM_HEIGHT - 4}" font-size="10">0</text>'
        f'<text x="{HISTOGRAM_WIDTH - 10}" y="{HISTOGRAM_HEIGHT - 4}" font-size="10" text-anchor="end">'
        f'{top:.2f}</text><text x="40" y="12" font-size="10" fill="#888888">neurons ({len(neurons)})</text>'
        f'<text x="140" y="12" font-size="10" fill="#e08214">features ({len(features)})</text>'
    )
    return (
        f'<svg id="scores" xmlns="http://www.w3.org/2000/svg" width="{HISTOGRAM_WIDTH}" '
        f'height="{HISTOGRAM_HEIGHT}" role="img" aria-label="polysemanticity scores">{"".join(shapes)}{axis}</svg>'
    )


def write_comparison(directory: str | Path, made, records: list[dict], present: set) -> Path:
    """``dictionary/<layer>.html``: the neurons-vs-features comparison of one dictionary layer (``made``)."""
    viewer = _viewer()
    directory = Path(directory)
    path = directory / made.page
    title = f"{made.layer}: neurons vs dictionary features"
    nav = '<nav><a href="../index.html">index</a></nav>'
    if made.comparison is None:
        body = f'{nav}<h1>{_e(title)}</h1><p class="note" id="error">{_e(made.error)}</p>'
        atomic_write_text(path, viewer._page(title, Safe(body), 1), fsync=False)
        return path
    c, s = made.comparison, made.comparison.summary()
    strongest = compare(made.found, c.feature_scores, c.neuron_scores, cover=1)
    heldout = made.quality.get("heldout", {})
    feature_layer = records[0]["layer"] if records else f"{made.layer}/dictionary"
    before = s["alive_before_resampling"]
    facts = [
        ("features", s["features"]),
        (
            "alive (active on a training vector)",
            f"{s['alive']}"
            + (
                ""
                if before is None
                else (
                    f"; {before} were active on the sample of step {made.found.resampled[0]['step']}, before the first "
                    "resampling"
                )
            ),
        ),
        (
            "alive features active on at least 4 / 16 / 64 training positions",
            " / ".join(
                str(sum(v * made.quality["positions"] >= t - 1e-6 for v in made.quality["frequency"]))
                for t in (4, 16, 64)
            )
            if "positions" in made.quality
            else "not measured",
        ),
        (
            "resampling rounds",
            "; ".join(f"step {r['step']}: {r['dead']} dead re-initialised" for r in made.found.resampled) or "none",
        ),
        ("fraction of variance unexplained (training scenes)", f"{s['fraction_unexplained']:.4f}"),
        (
            f"fraction of variance unexplained ({heldout.get('scenes', '?')} held-out scenes)",
            f"{float(heldout['fraction_unexplained']):.4f}" if "fraction_unexplained" in heldout else "not measured",
        ),
        ("L0 (features active per position)", f"{s['l0']:.3f}"),
        ("features with pages (scored)", s["features_scored"]),
        ("neurons scored", s["neurons_scored"]),
        ("mean polysemanticity: features / neurons", f"{s['mean_feature_score']} / {s['mean_neuron_score']}"),
        (
            f"features cleaner than the cleanest of their {len(next(iter(c.covering.values()), [])) or 3} covering "
            "neurons",
            f"{s['cleaner']} of {s['compared']}",
        ),
        (
            "features cleaner than their strongest neuron (largest decoder weight)",
            f"{len(strongest.cleaner)} of {strongest.compared}",
        ),
        ("time (s)", ", ".join(f"{k} {v}" for k, v in made.seconds.items()) or "all loaded from this atlas"),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    by_unit = {r["unit"]: r for r in records}
    cleaner = (
        ", ".join(f'<a href="../{_e(by_unit[f]["page"])}">{_e(f)}</a>' if f in by_unit else _e(f) for f in c.cleaner)
        or "none"
    )
    body = (
        f"{nav}<h1>{_e(title)}</h1>"
        f"<p>The sparse autoencoder's features of {_e(made.layer)} as units "
        f'(<a href="../layers/{_e(slug(feature_layer))}.html">{_e(feature_layer)}</a>) beside its neurons. '
        f"A feature's covering neurons are its {len(next(iter(c.covering.values()), [])) or 3} neurons with the "
        "largest absolute decoder weight; it is cleaner when its polysemanticity score is below the lowest "
        "score among them.</p>"
        f'<table class="facts" id="summary">{rows}</table>'
        f"<h2>polysemanticity scores</h2>{_histogram_svg(list(c.neuron_scores.values()), list(c.feature_scores.values()))}"
        f'<h2>cleaner features</h2><p id="cleaner-features">{cleaner}</p>'
    )
    atomic_write_text(path, viewer._page(title, Safe(body), 1), fsync=False)
    return path
