"""The circuit report of a layer pair: feature families, equivariant circuits, branch specialization.

``circuit_report(model, "mixed3a", "mixed3b", "report/")`` writes ``report/index.html`` with matplotlib
(Agg) figures as PNGs beside it. Each section runs on its own; one that cannot be computed for this
model says why instead of failing the report.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from html import escape
from pathlib import Path

import torch
from torch import nn

from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import atomic_write_bytes, atomic_write_text

MAX_FAMILY_FIGURES = 4
MAX_CIRCUITS = 12


def _e(value) -> str:
    return escape(str(value), quote=True)


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


def _figure_html(name: str, caption: str) -> str:
    return f"<figure class=\"figure\"><img src=\"{_e(name)}\" alt=\"{_e(caption)}\"><figcaption>{_e(caption)}</figcaption></figure>"


def _atlas_pictures(atlas_dir: Path | None, layer: str, units: list[int]) -> dict[int, torch.Tensor] | None:
    """Feature visualizations of ``units`` from an atlas directory, if all are there."""
    if atlas_dir is None:
        return None
    from PIL import Image
    import numpy as np

    pictures = {}
    for unit in units:
        path = atlas_dir / "img" / slug(layer) / f"{unit}.png"
        if not path.is_file():
            return None
        with Image.open(path) as image:
            pictures[unit] = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    return pictures


def _families_section(model, layer, source, out: Path, atlas_dir, title: str):
    """Rotation families of ``layer``; returns (html, report or None)."""
    from circuits_vision.analysis import equivariance
    from circuits_vision.analysis.equivariance import unit_kernels
    from circuits_vision.viz import families as viz_families

    found = equivariance.report(model, layer, source=source, kind="rotation")
    parts = [f"<h2>{_e(title)}</h2><pre>{_e(found)}</pre>"]
    if found.families:
        members = sorted({m for f in found.families[:MAX_FAMILY_FIGURES] for m in f.members})
        pictures = _atlas_pictures(atlas_dir, layer, members)
        kind = "feature visualizations"
        if pictures is None:
            kernels = unit_kernels(model, layer, None, units=members)
            pictures, kind = {m: kernels[i] for i, m in enumerate(members)}, "kernels on the input"
        for number, family in enumerate(found.families[:MAX_FAMILY_FIGURES]):
            figure = viz_families.family_figure(family, pictures, title=f"{layer} family {number}")
            name = _save_figure(figure, out / f"{slug(layer)}_family{number}.png")
            parts.append(_figure_html(name, f"{layer} family {number}: {kind}, ordered by angle"))
        if found.similarity is not None:
            name = _save_figure(viz_families.similarity_figure(found), out / f"{slug(layer)}_similarity.png")
            parts.append(_figure_html(name, f"{layer}: best similarity after rotation, units grouped by family"))
    return "".join(parts), found


def _circuits_section(model, source, target, source_families, target_families, out: Path) -> str:
    from circuits_vision.analysis import motifs
    from circuits_vision.viz import families as viz_families
    from circuits_vision.weights import expanded_weights

    if not source_families or not target_families:
        return "<h2>Equivariant circuits</h2><p class=\"note\">not computed: needs rotation families in both layers</p>"
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
                rows.append(f"<tr><td>{i}</td><td>{j}</td><td colspan=\"4\">{_e(error)}</td></tr>")
                continue
            rows.append(f"<tr><td>{i}</td><td>{j}</td><td>{circuit.score:.3f}</td><td>{circuit.null_score:.3f}</td>"
                        f"<td>{circuit.reduction:.1f}x</td><td>{'yes' if pattern.holds else 'no'}</td></tr>")
            if best is None or circuit.score - circuit.null_score > best[0]:
                best = (circuit.score - circuit.null_score, pattern, i, j)
    html = ("<h2>Equivariant circuits</h2><p>For each source family x target family: the fraction of weight energy "
            "explained by one kernel per relative angle (score), the same with shuffled angles (null), the parameter "
            "reduction the symmetry buys, and whether similar orientations excite and opposite ones inhibit.</p>"
            "<table class=\"facts\"><tr><th>source family</th><th>target family</th><th>score</th><th>null</th>"
            f"<th>reduction</th><th>curve pattern</th></tr>{''.join(rows)}</table>")
    if best is not None:
        name = _save_figure(viz_families.pattern_figure(best[1]), out / "circuit_pattern.png")
        html += _figure_html(name, f"net weight vs relative angle, source family {best[2]} -> target family {best[3]}")
    return html


def _categories_from_atlas(atlas_dir: Path | None, layer: str) -> dict[str, dict[str, list[int]]]:
    """Colour and orientation categories from the atlas's tuning summary of ``layer``, when it has one.

    The rules are those of :func:`~circuits_vision.analysis.unit_categories.color_categories` and
    :func:`~circuits_vision.analysis.unit_categories.orientation_categories` (default thresholds), applied
    to the drives the atlas already measured, so the stimuli are not run twice.
    """
    path = atlas_dir / "analysis" / f"{slug(layer)}.tuning.json" if atlas_dir is not None else None
    if path is None or not path.is_file():
        return {}
    tuning = {int(u): v for u, v in json.loads(path.read_text()).items() if u != "*"}
    if not tuning:
        return {}
    colour: dict[str, list[int]] = {"color": [], "black_and_white": [], "both": [], "unresponsive": []}
    orientation: dict[str, list[int]] = {"oriented": [], "unoriented": [], "unresponsive": []}
    drive_scale = max(v["grating_drive"] for v in tuning.values())
    for unit in sorted(tuning):
        colour[tuning[unit]["color_category"]].append(unit)
        value = tuning[unit]
        key = ("unresponsive" if value["grating_drive"] <= 1e-3 * drive_scale
               else "oriented" if value["orientation_selectivity"] >= 0.2 else "unoriented")
        orientation[key].append(unit)
    return {"color": colour, "orientation": orientation}


def _branches_section(model, target, out: Path, atlas_dir: Path | None) -> str:
    from circuits_vision.analysis import branches
    from circuits_vision.viz import branches as viz_branches

    parts = ["<h2>Branch specialization</h2>"]
    measured = _categories_from_atlas(atlas_dir, target)
    for categories in ("color", "orientation"):
        found = branches.report(model, target, measured.get(categories, categories))
        name = _save_figure(viz_branches.plot_report(found, title=f"{target}: {categories} units per branch"),
                            out / f"{slug(target)}_branches_{categories}.png")
        parts.append(f"<pre>{_e(found.table())}</pre>" + _figure_html(name, f"{categories} categories per branch"))
    return "".join(parts)


def circuit_report(
    model: nn.Module,
    source: str,
    target: str,
    out: str | os.PathLike,
    *,
    atlas_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the circuit report of ``source -> target`` into ``out``; returns ``out/index.html``.

    Sections: rotation families of ``source`` (kernels on the input) and ``target`` (kernels from
    ``source``, with the source families' rotation), the equivariant circuits between them (motifs),
    and the branch specialization of ``target`` (colour and orientation units per branch). Figures
    show feature visualizations from ``atlas_dir`` when given, else kernels.
    """
    from circuits_vision import hooks

    source, target = hooks.resolve_layer(model, source)[0], hooks.resolve_layer(model, target)[0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atlas_path = Path(atlas_dir) if atlas_dir is not None else None
    sections, found = [], {}

    def section(name: str, make: Callable[[], str]) -> None:
        log(f"report: {name}")
        try:
            sections.append(make())
        except Exception as error:  # this section cannot be computed here: say why, keep the others
            first = (str(error).strip().splitlines() or [""])[0]
            sections.append(f"<h2>{_e(name)}</h2><p class=\"note\">not computed: {_e(type(error).__name__)}: {_e(first)}</p>")

    def families_of(layer, kernels_from, title):
        html, result = _families_section(model, layer, kernels_from, out, atlas_path, title)
        found[layer] = result
        return html

    section(f"Families of {source}", lambda: families_of(source, None, f"Rotation families of {source} (kernels on the input)"))
    section(f"Families of {target}", lambda: families_of(target, source, f"Rotation families of {target} (kernels from {source})"))
    section("Equivariant circuits", lambda: _circuits_section(
        model, source, target, getattr(found.get(source), "families", None), getattr(found.get(target), "families", None), out))
    section("Branch specialization", lambda: _branches_section(model, target, out, atlas_path))
    title = f"Circuit report: {source} -> {target}"
    back = "<p><a href=\"../index.html\">atlas index</a></p>" if atlas_path is not None else ""
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><link rel=\"stylesheet\" href=\"../atlas.css\"></head><body>"
            f"{back}<h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n")
    index = out / "index.html"
    atomic_write_text(index, page)
    return index
