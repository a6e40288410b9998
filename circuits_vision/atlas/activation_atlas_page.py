"""The activation atlas as one static, zoomable HTML page (opens from ``file://``; no script, no external
files but its own cell images).

Zoom is four radio buttons whose ``:checked`` state sets the cell size through a CSS variable; the grid
scrolls inside its frame, so every zoom level pans. Each cell links to its entry below the grid, which
lists the cell's strongest units, each linked to its unit page in a whole-model atlas
(``units/<layer>/<unit>.html``, as :func:`circuits_vision.atlas.build` writes them) when that page exists.
Everything shown that comes from the model, the data or the user goes through :func:`html.escape`.
"""

from __future__ import annotations

import os
from pathlib import Path

from circuits_vision._utils import escape_html
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import atomic_write_text, save_png

__all__ = ["write_activation_atlas_page"]

ZOOMS = (1, 2, 4, 8)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
a { color: #1a5fb4; text-decoration: none; } a:hover { text-decoration: underline; }
.settings, .note { color: #555; font-size: 0.9em; }
.zoom input { position: absolute; opacity: 0; }
.zoom label { display: inline-block; padding: 0.15em 0.6em; border: 1px solid #bbb; border-radius: 3px; cursor: pointer; }
.frame { --cell: 32px; overflow: auto; max-width: 100%; max-height: 80vh; border: 1px solid #ccc; background: #fff; margin-top: 0.6em; }
.atlas { display: grid; grid-template-columns: repeat(var(--grid), var(--cell)); grid-template-rows: repeat(var(--grid), var(--cell)); }
.atlas a { display: block; width: var(--cell); height: var(--cell); }
.atlas img { width: 100%; height: 100%; display: block; image-rendering: auto; }
.atlas a:hover { outline: 2px solid #1a5fb4; z-index: 1; }
ZOOM_RULES
.cells { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 1.2em; }
.cells section { width: 210px; font-size: 0.8em; border: 1px solid #ddd; padding: 6px; background: #fff; }
.cells section:target { border-color: #1a5fb4; box-shadow: 0 0 0 2px #1a5fb4; }
.cells img { width: 96px; height: 96px; float: right; margin-left: 4px; }
.cells ol { margin: 0.2em 0 0 1.2em; padding: 0; }
"""


_e = escape_html


def _style() -> str:
    rules = []
    for z in ZOOMS:
        rules.append(f"#zoom{z}:checked ~ .frame {{ --cell: {32 * z}px; }}")
        rules.append(f"#zoom{z}:checked + label {{ background: #1a5fb4; color: #fff; border-color: #1a5fb4; }}")
    return _STYLE.replace("ZOOM_RULES", "\n".join(rules))


def write_activation_atlas_page(
    atlas,
    directory: str | os.PathLike,
    *,
    title: str | None = None,
    name: str | None = None,
    top_k: int = 5,
    unit_pages: str | os.PathLike | None = None,
) -> Path:
    """Write ``<directory>/<name>.html`` and its cell images ``<name>/<row>_<col>.png``; return the page's path.

    ``atlas`` is an :class:`~circuits_vision.atlas.activation_atlas.ActivationAtlas`. ``name`` defaults to
    ``activation_atlas_<layer>``. ``unit_pages``: the root of a whole-model atlas (default: ``directory``);
    a unit whose page ``units/<layer>/<unit>.html`` exists there is linked.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = name or f"activation_atlas_{slug(atlas.layer)}"
    if slug(name) != name:
        raise ValueError(f"name {name!r} must be a plain file name made of letters, digits, '_', '.' and '-'")
    pages_root = Path(unit_pages) if unit_pages is not None else directory
    cells_html, entries = [], []
    for i, (row, col) in enumerate(atlas.cells.tolist()):
        image = f"{name}/{row}_{col}.png"
        save_png(directory / image, atlas.images[i, :3])
        anchor = f"cell-{row}-{col}"
        units = atlas.top_units(i, top_k)
        label = atlas.label_name(int(atlas.cell_label[i]))
        hover = f"cell ({row}, {col}): {int(atlas.counts[i])} activations; top units " + ", ".join(
            str(u) for u, _ in units
        )
        if label:
            hover += f"; most common scene: {label}"
        cells_html.append(
            f'<a href="#{anchor}" style="grid-row:{row + 1};grid-column:{col + 1}" title="{_e(hover)}">'
            f'<img src="{_e(image)}" alt="{_e(hover)}" loading="lazy"></a>'
        )
        items = "".join(
            f'<li>{_unit_link(atlas.layer, u, pages_root, directory)} <span class="note">{v:.3g}</span></li>'
            for u, v in units
        )
        label_html = f"<br>most common: <b>{_e(label)}</b> ({float(atlas.cell_purity[i]):.0%})" if label else ""
        entries.append(
            f'<section id="{anchor}"><img src="{_e(image)}" alt="">'
            f"<b>cell ({row}, {col})</b><br>{int(atlas.counts[i])} activations{label_html}"
            f"<br>strongest units:<ol>{items}</ol></section>"
        )
    heading = title or (
        f"Class activation atlas of {atlas.layer} for {atlas.class_target}"
        if atlas.class_target
        else f"Activation atlas of {atlas.layer}"
    )
    zoom = "".join(
        f'<input type="radio" name="zoom" id="zoom{z}"{" checked" if z == 2 else ""}><label for="zoom{z}">{z}x</label> '
        for z in ZOOMS
    )
    settings = (
        f"{atlas.coordinates.shape[0]} activations from {atlas.n_images} images, laid out by "
        f"{atlas.reducer}, {len(atlas.cells)} of {atlas.grid}x{atlas.grid} cells rendered "
        f"(each by feature visualization of its mean activation direction)"
    )
    body = (
        f'<h1>{_e(heading)}</h1>\n<p class="settings">{_e(settings)}</p>\n'
        f'<div class="zoom">zoom: {zoom}\n<div class="frame"><div class="atlas" style="--grid:{int(atlas.grid)}">'
        + "".join(cells_html)
        + '</div></div></div>\n<p class="note">Click a cell for its strongest units.</p>\n<div class="cells">'
        + "\n".join(entries)
        + "</div>"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(heading)}</title><style>{_style()}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
    path = directory / f"{name}.html"
    atomic_write_text(path, page, fsync=False)
    return path


def _unit_link(layer: str, unit: int, pages_root: Path, directory: Path) -> str:
    text = _e(f"{layer}:{unit}")
    page = pages_root / "units" / slug(layer) / f"{unit}.html"
    if not page.exists():
        return text
    href = Path(os.path.relpath(page, directory)).as_posix()
    return f'<a href="{_e(href)}">{text}</a>'
