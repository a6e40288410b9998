"""Per-layer facts an atlas shows for each unit, each computed once and cached on disk.

For every chosen layer: the strongest inputs (expanded weights from the previous chosen layer, or
the RGB kernel for the first layer) and outputs (into the next chosen layer) with weight pictures,
the rotation family, the branch, a tuning summary, dataset examples (from an image folder, else
from scenes of the shipped model's training distribution) and the neuron visualization (the unit at the
centre position, beside the atlas's channel visualization). Each part is stored as
``analysis/<layer>.<part>.json`` (atomically), so an interrupted run does not redo it. A part that fails is recorded as ``"not computed: <reason>"`` for its units
instead of failing the atlas.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from circuits_vision import hooks
from circuits_vision._utils import first_line
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import CorruptAtlasFileError, atomic_write_text, png_bytes, read_json, save_png
from circuits_vision.models.train_shapes import EXAMPLES_SEED_OFFSET

PARTS = ("inputs", "outputs", "family", "branch", "tuning", "examples", "polysemanticity", "neuron", "facets")
DEFAULT_PARTS = PARTS[:-1]
"""Computed unless ``parts`` says otherwise: all but the facets, which cost ``FACETS`` renders per unit."""
FACETS = 3
ANALYSIS_DIR = "analysis"


def not_computed(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        first = first_line(error, limit=300)
        return f"not computed: {type(error).__name__}: {first}"
    return f"not computed: {error}"


def data_uri(picture: np.ndarray, scale: int = 1) -> str:
    """``[h, w, 3]`` in [0, 1] -> a ``data:image/png`` URI (pixels repeated ``scale`` times)."""
    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    return "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode("ascii")


def _pictures():
    from circuits_vision.weights import pictures

    return pictures


def _ranked_links(weights: np.ndarray, layer: str, k: int, scale: float) -> list[dict]:
    """``weights [C, kh, kw]`` -> the ``k`` channels of ``layer`` with the largest L2 norm, with pictures and
    ``net``, the kernel's sum (its sign: does the channel excite or inhibit, on a uniform input)."""
    pictures = _pictures()
    norms = np.sqrt((weights**2).reshape(weights.shape[0], -1).sum(1))
    order = np.argsort(-norms, kind="stable")[:k]
    return [
        {
            "layer": layer,
            "unit": int(c),
            "norm": round(float(norms[c]), 6),
            "net": round(float(weights[c].sum()), 6),
            "picture": data_uri(pictures.heatmap(weights[c], scale=scale)),
        }
        for c in order
    ]


def weight_links(model: nn.Module, source: str, target: str, k: int) -> tuple[dict[int, list], dict[int, list]]:
    """``({target unit: strongest inputs}, {source unit: strongest outputs})`` from the expanded weights."""
    from circuits_vision.weights import expanded_weights

    E = expanded_weights(model, source, target).detach().double().cpu().numpy()  # [C_t, C_s, kh, kw]
    inputs = {t: _ranked_links(E[t], source, k, float(np.abs(E[t]).max() or 1.0)) for t in range(E.shape[0])}
    outputs = {s: _ranked_links(E[:, s], target, k, float(np.abs(E[:, s]).max() or 1.0)) for s in range(E.shape[1])}
    return inputs, outputs


def rgb_links(model: nn.Module, layer: str, units: list[int] | None = None) -> dict[int, list]:
    """For the first layer: each unit's kernel on the RGB input, as a picture (0 = grey); ``units``: only these."""
    from circuits_vision.analysis.equivariance import unit_kernels

    units = _all_units(model, layer) if units is None else list(units)
    kernels = unit_kernels(model, layer, None, units=units).detach().double().cpu().numpy()  # [U, 3, S, S]
    pictures = _pictures()
    rgb = pictures.rgb_kernels(kernels, scale=None)
    scale = max(1, 48 // max(1, rgb.shape[1]))
    return {
        u: [
            {
                "layer": "input",
                "unit": None,
                "norm": round(float(np.sqrt((kernels[i] ** 2).sum())), 6),
                "picture": data_uri(rgb[i], scale),
            }
        ]
        for i, u in enumerate(units)
    }


def _all_units(model: nn.Module, layer: str) -> list[int]:
    return list(range(int(hooks.layer_shape(model, layer)[0])))


def families(model: nn.Module, layer: str, source: str | None, units: list[int] | None = None) -> dict[int, dict | str]:
    """Rotation families of ``layer`` (kernels from ``source``, the input when None): per unit its family.

    ``units``: search among these only (an atlas of the first N units of each layer), so the cost
    follows the atlas's size rather than the layer's.
    """
    from circuits_vision.analysis import equivariance

    units = _all_units(model, layer) if units is None else list(units)
    found = equivariance.report(model, layer, source=source, kind="rotation", units=units)
    result: dict[int, dict | str] = {}
    for unit in units:
        family = found.family_of(unit)
        if family is not None:
            number = found.families.index(family)
            result[unit] = {
                "kind": "rotation",
                "family": number,
                "size": len(family.members),
                "angle": round(float(family.values[unit]), 1),
                "score": round(float(family.score), 3),
                "members": [int(m) for m in family.members],
            }
        elif unit in found.invariant:
            result[unit] = {"kind": "rotation-invariant"}
        else:
            result[unit] = "no rotation family" + (
                f" ({found.explanation})" if found.empty and found.explanation else ""
            )
    return result


def branch_names(model: nn.Module, layer: str) -> dict[int, str | None]:
    try:
        found = hooks.branches(model, layer)
    except hooks.NotABranchLayerError:
        return {}
    return {u: b.name for b in found for u in range(b.start, b.stop)}


def tuning(model: nn.Module, layer: str, units: list[int] | None = None) -> dict[int, dict]:
    """Colour vs black-and-white drive, grating orientation selectivity and curve tuning of every unit.

    Colour and gratings probe the centre unit with uniform fields and gratings; curve tuning is
    :func:`circuits_vision.analysis.tuning.find_curve_detectors` with its defaults (drawn arcs at every
    orientation), so a curve detector reads as one even when uniform fields leave it silent. The colour
    and grating probes cost a layer's forward passes whatever ``units`` is; curve tuning runs on ``units``.
    """
    from circuits_vision.analysis import unit_categories

    colour, grey = unit_categories.color_drives(model, layer)
    selectivity, drive = unit_categories.orientation_selectivity(model, layer)
    # color_categories' rule (ratio 2, floor 1e-3 of the layer's largest drive), without measuring the drives again
    scale = float(torch.maximum(colour, grey).max())

    def category(c: float, b: float) -> str:
        if max(c, b) <= 1e-3 * scale:
            return "unresponsive"
        return "color" if c > 2 * b else "black_and_white" if b > 2 * c else "both"

    units = list(range(len(colour))) if units is None else list(units)
    curves = curve_tuning(model, layer, units)
    return {
        u: {
            "color_drive": round(float(colour[u]), 4),
            "bw_drive": round(float(grey[u]), 4),
            "color_category": category(float(colour[u]), float(grey[u])),
            "orientation_selectivity": round(float(selectivity[u]), 3),
            "grating_drive": round(float(drive[u]), 4),
            **curves.get(u, {"curve_detector": False}),
        }
        for u in units
    }


def curve_tuning(model: nn.Module, layer: str, units: list[int] | None = None) -> dict[int, dict]:
    """The units (of ``units``) :func:`find_curve_detectors` classifies as curve detectors, with their tuning."""
    from circuits_vision.analysis.tuning import find_curve_detectors

    detectors = find_curve_detectors(model, layer, units=units).detectors
    family = [d.unit for d in detectors]  # the curve-detector family among these units, ordered by orientation
    return {
        d.unit: {
            "curve_detector": True,
            "curve_orientation": round(d.preferred_orientation, 1),
            "curve_peak": round(d.peak_response, 2),
            "curve_vs_line": round(d.curve_vs_line, 3),
            "curve_family": family,
        }
        for d in detectors
    }


EXAMPLE_SCENES = 2048
"""Scenes searched for dataset examples when no image folder is given."""
EXAMPLE_SEED = 0 + EXAMPLES_SEED_OFFSET
"""Their seed: the shipped model's training seed (0) plus the examples offset, so they come from its
training distribution but are neither its training stream nor its held-out set."""
OUTLINE = (1.0, 0.55, 0.0)  # orange box around the activating crop, with a black rim so it shows on any colour


def scene_size(model: nn.Module) -> int:
    """Side of the example scenes for ``model``: its input size, kept within 16..128 pixels."""
    return int(min(max(int(hooks.model_input_size(model, default=64)), 16), 128))


def outlined(image: torch.Tensor, box: list[int], scale: int) -> torch.Tensor:
    """``image [3, H, W]`` enlarged ``scale`` times with ``box`` (top, left, bottom, right; pixels of
    ``image``, bottom/right exclusive, clipped to the image) outlined: an orange line inside a black one."""
    big = image.repeat_interleave(scale, 1).repeat_interleave(scale, 2).clone()
    H, W = big.shape[1:]
    top, left = max(0, box[0] * scale), max(0, box[1] * scale)
    bottom, right = min(H, box[2] * scale) - 1, min(W, box[3] * scale) - 1
    for inset, colour in ((0, (0.0, 0.0, 0.0)), (1, OUTLINE)):
        y0, x0, y1, x1 = top + inset, left + inset, bottom - inset, right - inset
        if y0 > y1 or x0 > x1:
            continue
        c = torch.tensor(colour)[:, None]
        big[:, y0, x0 : x1 + 1] = c
        big[:, y1, x0 : x1 + 1] = c
        big[:, y0 : y1 + 1, x0] = c
        big[:, y0 : y1 + 1, x1] = c
    return big


def examples(
    model: nn.Module,
    layer: str,
    images: str | os.PathLike | None,
    directory: Path,
    k: int = 6,
    units: list[int] | None = None,
    n_scenes: int | None = None,
) -> dict[int, dict]:
    """Top-``k`` dataset examples per unit (of ``units``), from an image folder or, when ``images`` is
    None, from ``n_scenes`` scenes of the shipped model's training distribution (:data:`EXAMPLE_SEED`).

    Saved under ``img/`` per unit: ``<unit>_examples.png``, the whole images side by side with the
    activating crop outlined, and ``<unit>_crops.png``, the crops alone. Each unit's value lists the
    activations, the crop boxes (top, left, bottom, right in image pixels), the sources and, for
    scenes, each example's shape and colour label.
    """
    from circuits_vision.analysis.dataset_examples import top_activating
    from circuits_vision.stimuli.scenes import COLOR_NAMES, SHAPE_CLASSES, scene_batches

    labels: dict[str, list] = {}
    if images is None:
        stream = scene_batches(n_scenes or EXAMPLE_SCENES, EXAMPLE_SEED, size=scene_size(model), labels=labels)
        found = top_activating(model, layer, stream, units=units, k=k, batch_size=128, keep_images=True, progress=False)
    else:
        found = top_activating(model, layer, images, units=units, k=k, keep_images=True, progress=False)
    boxes = found.boxes()
    scale = max(1, 128 // max(found.images.shape[-2:]))  # scenes of 64 px shown at 128
    result = {}
    for row, unit in enumerate(found.units):
        valid = found.indices[row] >= 0
        if not bool(valid.any()):
            result[unit] = {"image": None, "values": []}
            continue
        index = found.indices[row][valid].tolist()
        unit_boxes = boxes[row][valid].tolist()
        whole = [outlined(found.images[row, i], unit_boxes[i], scale) for i in range(len(index))]
        name = f"img/{slug(layer)}/{unit}_examples.png"
        crops_name = f"img/{slug(layer)}/{unit}_crops.png"
        save_png(directory / name, torch.cat(whole, dim=2))  # [3, H, k*W]
        save_png(directory / crops_name, torch.cat(list(found.crops[row][valid]), dim=2))
        value = {
            "image": name,
            "crops": crops_name,
            "values": [round(float(v), 4) for v in found.values[row][valid]],
            "boxes": unit_boxes,
        }
        if images is None:
            value["sources"] = [f"scene {i} (seed {EXAMPLE_SEED})" for i in index]
            value["labels"] = [f"{SHAPE_CLASSES[labels['shape'][i]]} {COLOR_NAMES[labels['color'][i]]}" for i in index]
        else:
            value["sources"] = [found.sources.get(int(i), "") for i in index]
        result[unit] = value
    return result


def polysemanticity(
    model: nn.Module,
    layer: str,
    previous: str | None,
    units: list[int] | None = None,
    k: int = 16,
    n_scenes: int | None = None,
) -> dict[int, dict]:
    """Each unit's polysemanticity (:mod:`circuits_vision.analysis.polysemanticity`) on the example
    scenes, clustered by ``previous`` (the chosen layer before, None for the first): score, clusters
    (size and scene labels) and label entropy."""
    from circuits_vision.analysis import polysemanticity as poly
    from circuits_vision.stimuli.scenes import SHAPE_CLASSES, scene_batches

    drawn: dict[str, list] = {"shape": [], "color": []}  # filled as the scenes are drawn, read after the stream
    stream = scene_batches(n_scenes or EXAMPLE_SCENES, EXAMPLE_SEED, size=scene_size(model), labels=drawn)
    found = poly.polysemanticity(
        model, layer, previous, stream, labels=drawn["shape"], label_names=SHAPE_CLASSES, units=units, k=k
    )
    return {
        u.unit: {
            **u.row(),
            "previous": previous,
            "clusters": [{"size": c["size"], "labels": c["labels"]} for c in u.clusters],
        }
        for u in found.units
    }


def _layer_activations(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """``layer``'s activations ``[N, C, H, W]`` (float32, on the CPU) for rendered ``images`` ``[N, 3, H, W]``:
    what a render reached, measured again on the final images."""
    with torch.no_grad():
        return hooks.run_with_cache(model, images.to(hooks.model_device(model)), [layer])[layer].float().cpu()


def facet_strips(
    model: nn.Module,
    layer: str,
    directory: Path,
    units: list[int] | None,
    *,
    steps: int,
    size: int,
    seed: int,
    k: int = FACETS,
    weight: float = 1.0,
) -> dict[int, dict]:
    """``k`` diversity facets per unit (:mod:`circuits_vision.optvis.facets`' objective, all units in one
    batched render), saved as one strip per unit; with their pairwise Gram similarity at ``layer``."""
    from circuits_vision import optvis
    from circuits_vision.optvis.facets import gram_similarity

    units = _all_units(model, layer) if units is None else list(units)
    objectives = [optvis.objectives.channel(layer, u) - weight * optvis.objectives.diversity(layer) for u in units]
    found = optvis.render(model, objectives, steps=steps, size=size, seed=seed, images_per_objective=k, progress=False)
    images = found.images[:, :3]
    acts = _layer_activations(model, layer, images)
    result = {}
    for i, unit in enumerate(units):
        name = f"img/{slug(layer)}/{unit}_facets.png"
        save_png(directory / name, torch.cat(list(images[i * k : (i + 1) * k]), dim=2))
        result[unit] = {
            "image": name,
            "k": k,
            "weight": weight,
            "similarity": round(gram_similarity(acts[i * k : (i + 1) * k]), 4),
            "activation": [round(float(a), 4) for a in acts[i * k : (i + 1) * k, unit].flatten(1).mean(1)],
        }
    return result


def neuron_renders(
    model: nn.Module,
    layer: str,
    directory: Path,
    units: list[int] | None,
    *,
    steps: int,
    size: int,
    seed: int,
) -> dict[int, dict]:
    """Neuron visualizations: each unit's activation at the centre position maximised, all units in one
    batched render, each seeded like the unit's channel image (:func:`~circuits_vision.atlas.plan.unit_seed`).

    A channel objective asks for the unit everywhere at once; a sharply selective unit (a curve detector
    inhibited by everything but its curve) can stay below zero at every position of every step, so its
    channel image is the unchanged start. One position needs the feature once, at the centre, as the
    Circuits articles' visualizations show it. Per unit: ``{"image", "activation", "never_active"}``, the
    activation at the centre of the final image and whether the render never activated the unit.
    """
    from circuits_vision import optvis
    from circuits_vision.atlas.plan import unit_seed

    units = _all_units(model, layer) if units is None else list(units)
    found = optvis.render(
        model,
        [optvis.objectives.neuron(layer, u) for u in units],
        steps=steps,
        size=size,
        image_seeds=[unit_seed(seed, layer, u) for u in units],
        progress=False,
    )
    images = found.images[:, :3]
    acts = _layer_activations(model, layer, images)
    centre = acts[:, :, acts.shape[2] // 2, acts.shape[3] // 2]
    result = {}
    for i, unit in enumerate(units):
        name = f"img/{slug(layer)}/{unit}_neuron.png"
        save_png(directory / name, images[i])
        result[unit] = {
            "image": name,
            "activation": round(float(centre[i, unit]), 4),
            "never_active": bool(found.never_active[i]),
        }
    return result


def part_file(layer: str, part: str) -> str:
    """Where a layer's part is stored, relative to the atlas directory: ``analysis/<layer>.<part>.json``."""
    return f"{ANALYSIS_DIR}/{slug(layer)}.{part}.json"


def layer_parts(
    model: nn.Module,
    layers: list[str],
    directory: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    k: int = 6,
    parts: tuple[str, ...] = DEFAULT_PARTS,
    units: Mapping[str, list[int]] | None = None,
    render: Mapping | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, dict]]:
    """``{layer: {part: {unit (str): value}}}`` for ``parts``, from the cache or computed now.

    ``units``: ``{layer: units}`` the atlas shows (default all): families, RGB kernels, curve tuning and
    dataset examples are computed for these only. ``progress``: a bar of the parts with an ETA.
    ``render``: ``{"steps", "size", "seed"}`` for the neuron visualizations and the facets (default 64 steps,
    64 px, seed 0).
    """
    directory = Path(directory)
    pairs: dict[tuple[str, str], tuple] = {}
    facet_settings = {"steps": 64, "size": 64, "seed": 0, **dict(render or {})}

    def pair(source: str, target: str):
        if (source, target) not in pairs:
            pairs[source, target] = weight_links(model, source, target, k)
        return pairs[source, target]

    def path_of(layer: str, part: str) -> Path:
        return directory / part_file(layer, part)

    todo = sum(1 for layer in layers for part in parts if part in PARTS and not path_of(layer, part).is_file())
    bar = tqdm(total=todo, disable=not progress or not todo, desc="atlas analyses", unit="part", dynamic_ncols=True)
    result = {}
    try:
        for i, layer in enumerate(layers):
            previous = layers[i - 1] if i > 0 else None
            following = layers[i + 1] if i + 1 < len(layers) else None
            chosen = None if units is None else list(units[layer])
            makers: dict[str, Callable[[], dict]] = {
                "inputs": (lambda p=previous, t=layer: pair(p, t)[0])
                if previous
                else (lambda t=layer, u=chosen: rgb_links(model, t, u)),
                "outputs": (lambda s=layer, f=following: pair(s, f)[1]) if following else (lambda: {}),
                "family": lambda t=layer, p=previous, u=chosen: families(model, t, p, u),
                "branch": lambda t=layer: branch_names(model, t),
                "tuning": lambda t=layer, u=chosen: tuning(model, t, u),
                "examples": lambda t=layer, u=chosen: examples(model, t, images, directory, k, u),
                "polysemanticity": lambda t=layer, p=previous, u=chosen: polysemanticity(model, t, p, u),
                "neuron": lambda t=layer, u=chosen: neuron_renders(model, t, directory, u, **facet_settings),
                "facets": lambda t=layer, u=chosen: facet_strips(model, t, directory, u, **facet_settings),
            }
            result[layer] = {}
            for part, make in makers.items():
                path = path_of(layer, part)
                if path.is_file():  # computed by an earlier run: shown even when this run did not ask for it
                    result[layer][part] = _cached(path)
                    continue
                if part not in parts:
                    result[layer][part] = {"*": not_computed("not requested")}
                    continue
                bar.set_postfix_str(f"{part} of {layer}")
                if not progress:
                    log(f"atlas: {part} of {layer}")
                try:
                    values = {str(u): v for u, v in make().items() if chosen is None or u in chosen}
                except Exception as error:  # an analysis that cannot handle this model/layer: say so per unit
                    result[layer][part] = {"*": not_computed(error)}
                    continue  # not cached: a rerun tries again
                finally:
                    bar.update(1)
                atomic_write_text(path, json.dumps(values))
                result[layer][part] = values
    finally:
        bar.close()
    return result


def _cached(path: Path) -> dict:
    """A stored part: ``{unit (str): value}``, or :class:`CorruptAtlasFileError` naming the file."""
    fix = "delete it and rerun to compute it again"
    values = read_json(path, fix=fix)
    if not isinstance(values, dict):
        raise CorruptAtlasFileError(f"{path} holds no per-unit object; it was damaged or edited: {fix}")
    return values


def unit_part(parts: dict[str, dict], part: str, unit: int):
    """One unit's value of a part (the layer-wide ``"*"`` entry when the part failed for the layer)."""
    values = parts.get(part, {})
    if str(unit) in values:
        return values[str(unit)]
    if "*" in values:
        return values["*"]
    return None
