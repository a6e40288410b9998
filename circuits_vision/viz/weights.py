"""Weight pictures as PIL images: zoomed kernels and small multiples (display only).

The arrays come from :mod:`circuits_vision.weights.pictures`; this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from circuits_vision.weights.pictures import heatmap, nmf_factors, rgb_kernels, shared_scale, strongest_inputs

__all__ = ["first_layer_figure", "nmf_figure", "small_multiples", "strongest_inputs_figure", "to_image"]


def to_image(rgb: np.ndarray, zoom: int = 8) -> Image.Image:
    """``[h, w, 3]`` floats in [0, 1] -> an RGB image ``zoom`` times larger (nearest neighbour, crisp pixels)."""
    array = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"to_image expects [h, w, 3], got shape {array.shape}")
    image = Image.fromarray((array * 255 + 0.5).astype(np.uint8), "RGB")
    return image.resize((image.width * zoom, image.height * zoom), Image.NEAREST)


def small_multiples(
    pictures: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    columns: int = 8,
    zoom: int = 8,
    gap: int = 4,
    label_height: int = 12,
) -> Image.Image:
    """Lay ``[h, w, 3]`` pictures out in a grid on white, each with an optional label underneath."""
    if not pictures:
        raise ValueError("small_multiples needs at least one picture")
    tiles = [to_image(p, zoom) for p in pictures]
    cell_w = max(t.width for t in tiles) + gap
    cell_h = max(t.height for t in tiles) + gap + (label_height if labels else 0)
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (min(columns, len(tiles)) * cell_w + gap, rows * cell_h + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for index, tile in enumerate(tiles):
        x, y = gap + (index % columns) * cell_w, gap + (index // columns) * cell_h
        sheet.paste(tile, (x, y))
        if labels:
            draw.text((x, y + tile.height + 1), str(labels[index]), fill="black")
    return sheet


def strongest_inputs_figure(expanded, unit: int, source_layer: str = "", k: int = 8, *, zoom: int = 8) -> Image.Image:
    """Small multiples of ``unit``'s ``k`` strongest inputs, on one shared red/blue scale.

    ``expanded [C_target, C_source, kh, kw]``; each picture is ``expanded[unit, s]`` for a source channel
    ``s`` (by L2 norm, strongest first) as a heat map, labelled ``source_layer:s``.
    """
    units, _ = strongest_inputs(expanded, unit, k)
    weights = expanded.detach().cpu().numpy() if hasattr(expanded, "detach") else np.asarray(expanded)
    slices = [weights[unit, int(s)] for s in units]
    scale = shared_scale(*slices)
    labels = [f"{source_layer}:{int(s)}" if source_layer else str(int(s)) for s in units]
    return small_multiples([heatmap(s, scale) for s in slices], labels, columns=k, zoom=zoom)


def first_layer_figure(weights, *, columns: int = 16, zoom: int = 6) -> Image.Image:
    """Every first-layer kernel ``[C_out, 3, kh, kw]`` as an RGB picture on one shared scale."""
    return small_multiples(list(rgb_kernels(weights)), columns=columns, zoom=zoom)


def nmf_figure(unit_weights, n_factors: int = 3, *, zoom: int = 16, seed: int = 0) -> Image.Image:
    """A unit's input weights ``[C_source, kh, kw]`` as one RGB picture of 3 NMF factors."""
    if n_factors != 3:
        raise ValueError("nmf_figure shows exactly 3 factors as R, G and B")
    return to_image(nmf_factors(unit_weights, 3, seed=seed).image, zoom)
