"""Feature-visualization results as a grid picture: shown in a notebook or saved (display only).

``render_grid(cv.render(model, "mixed3b"))`` lays the images out with one label per image;
units whose render never activated (``RenderResult.never_active``) are labelled "off".
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from circuits_vision.viz.weights import small_multiples

__all__ = ["render_grid"]

_CHANNEL = re.compile(r"^Channel \[(.+), (-?\d+)\]$")


def render_grid(
    result,
    *,
    columns: int = 8,
    zoom: int = 1,
    labels: Sequence[str] | bool = True,
    path: str | os.PathLike | None = None,
) -> Image.Image:
    """A grid of a render's images (a :class:`~circuits_vision.optvis.RenderResult` or ``[N, 3, H, W]`` in [0, 1]).

    Args:
        result: the render result, or the images themselves (RGBA images are shown over white).
        columns: images per row.
        zoom: integer upscaling of every image (nearest neighbour).
        labels: ``True``: each objective's name (channel numbers when all are channels of one
            layer, ``"layer:channel"`` across layers), with " off" where the unit never activated;
            ``False``: none; or one string per image.
        path: also save the grid there (the format from the suffix, e.g. ``.png``).

    Returns:
        The grid as a PIL image (a notebook shows it when it is the cell's last value).
    """
    images = result.images if hasattr(result, "images") else result
    images = torch.as_tensor(images).detach().float().cpu()
    if images.dim() != 4 or images.shape[1] not in (3, 4):
        raise ValueError(f"render_grid needs images [N, 3, H, W] (or RGBA), got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("render_grid needs at least one image")
    if images.shape[1] == 4:  # over white, as they would look on the page
        images = images[:, :3] * images[:, 3:] + (1 - images[:, 3:])
    if columns < 1 or zoom < 1:
        raise ValueError(f"columns and zoom must be >= 1, got {columns}, {zoom}")
    pictures = [np.asarray(image.permute(1, 2, 0)) for image in images]
    return _save(small_multiples(pictures, _labels(result, images.shape[0], labels), columns=columns, zoom=zoom), path)


def _labels(result, count: int, labels) -> list[str] | None:
    if labels is False:
        return None
    if labels is not True:
        labels = [str(label) for label in labels]
        if len(labels) != count:
            raise ValueError(f"render_grid got {len(labels)} labels for {count} images")
        return labels
    described = list(getattr(result, "objectives", []) or [])
    if not described:
        return [str(i) for i in range(count)]
    per_objective = max(1, count // len(described))
    names = [_short(d) for d in described]
    layers = {name.rpartition(":")[0] for name in names}
    if len(layers) == 1 and all(_CHANNEL.match(d) for d in described):  # one layer: channel numbers suffice
        names = [name.rpartition(":")[2] for name in names]
    inactive = getattr(result, "never_active", None)
    out = []
    for index in range(count):
        objective = min(index // per_objective, len(described) - 1)
        label = names[objective]
        if inactive is not None and len(inactive) == len(described) and bool(inactive[objective]):
            label += " off"
        out.append(label)
    return out


def _short(description: str) -> str:
    """``"Channel [mixed3b, 5]"`` -> ``"mixed3b:5"``; other descriptions on one line."""
    match = _CHANNEL.match(description)
    return f"{match[1]}:{match[2]}" if match else description.replace("\n", " ")


def _save(grid: Image.Image, path) -> Image.Image:
    if path is not None:
        grid.save(os.fspath(path))
    return grid
