"""Dictionary features as atlas units: the opt-in ``dictionary`` part of :func:`~circuits_vision.atlas.build`.

For each dictionary layer (``AtlasConfig.dictionary_layers``; default the report pair's target, e.g.
``mixed3b``) a sparse autoencoder (:func:`circuits_vision.analysis.dictionary.train`, with dead-feature
resampling) is trained on the layer's activations at every position of the example scenes (the same
held-out scenes of the shipped model's training distribution that give the dataset examples), or
loaded when ``dictionary/<layer>.pt`` is there with the same settings (``dictionary/<layer>.json``).
Every live feature (active on at least one training vector) becomes a unit of the layer
``<layer>/dictionary``: its feature visualization (the ``direction`` objective along its decoder
direction), its dataset examples and polysemanticity score (the feature's activation, read as a layer
by :func:`~circuits_vision.analysis.dictionary.attached`), its strongest neurons (decoder weights) and its
circuit neighbourhood. ``dictionary/<layer>.html`` compares neurons and features
(:mod:`circuits_vision.analysis.dictionary_comparison`). With ``units_per_layer`` only the N most often
active features get pages.

Files (besides the pages): ``dictionary/<layer>.pt`` (``weights_only``-loadable, atomic) and ``.json``
(its settings and training time), ``img/<layer>_dictionary-*/<f>.png``, and per part
``analysis/<layer>_dictionary-*.<part>.json``; a retrained dictionary removes the old feature files.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from circuits_vision import hooks, optvis
from circuits_vision._utils import derive_seed
from circuits_vision.analysis import dictionary as sae
from circuits_vision.analysis.dictionary_comparison import DictionaryComparison, compare
from circuits_vision.atlas import analyses
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.store import atomic_write_text, read_json, save_png

__all__ = [
    "FOLDER",
    "PART",
    "DictionaryLayer",
    "add_to_atlas",
    "default_dictionary_layers",
    "feature_layer",
    "feature_units",
    "train_or_load",
]

PART = "dictionary"
FOLDER = "dictionary"
FEATURES_PER_NEURON = 4
"""Default dictionary size: this many features per neuron of the layer (640 for a 160-unit mixed3b)."""
HELDOUT_SCENES = 512
HELDOUT_SEED = analyses.EXAMPLE_SEED + 1
"""Scenes on which the reconstruction error is measured again, outside the training scenes."""
RENDER_CHUNK = 32


def feature_layer(layer: str) -> str:
    """The atlas layer of ``layer``'s dictionary features: ``"mixed3b/dictionary"``."""
    return f"{layer}/{FOLDER}"


class DictionaryLayer:
    """What the part made for one layer: its dictionary, comparison, page, and time spent (seconds by step)."""

    def __init__(
        self,
        layer: str,
        found: sae.Dictionary | None,
        comparison: DictionaryComparison | None,
        page: str,
        seconds: dict[str, float],
        error: str | None = None,
        quality: dict | None = None,
    ):
        self.layer, self.found, self.comparison, self.page = layer, found, comparison, page
        self.seconds, self.error, self.quality = seconds, error, quality or {}

    def __repr__(self) -> str:
        return f"DictionaryLayer({self.layer!r}, {self.comparison!r}, error={self.error!r})"


def default_dictionary_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """The report pair's target (the first consecutive pair of branch layers, e.g. ``mixed3b``), else the last layer."""
    from circuits_vision.atlas.plan import default_pair

    pair = default_pair(model, list(layers))
    return [pair[1]] if pair else list(layers[-1:])


def _paths(directory: Path, layer: str) -> tuple[Path, Path]:
    base = directory / FOLDER / slug(layer)
    return base.with_suffix(".pt"), base.with_suffix(".json")


def _part_path(directory: Path, layer: str, part: str) -> Path:
    return directory / analyses.ANALYSIS_DIR / f"{slug(feature_layer(layer))}.{part}.json"


def _scenes(model: nn.Module, n: int, seed: int, labels: dict | None = None):
    from circuits_vision.stimuli.scenes import scene_batches

    return scene_batches(n, seed, size=analyses.scene_size(model), labels=labels)


def _forget_features(directory: Path, layer: str) -> None:
    """Remove the feature files of an older dictionary of ``layer`` (images, cached parts, pages)."""
    name = slug(feature_layer(layer))
    for folder in (
        directory / "img" / name,
        directory / "img" / slug(f"{layer}.{sae.FEATURES_CHILD}"),
        directory / "units" / name,
    ):
        shutil.rmtree(folder, ignore_errors=True)
    for path in (directory / analyses.ANALYSIS_DIR).glob(f"{name}.*.json"):
        path.unlink(missing_ok=True)


def train_or_load(
    model: nn.Module,
    layer: str,
    directory: str | Path,
    *,
    n_features: int | None = None,
    options: Mapping | None = None,
    seed: int = 0,
    n_scenes: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[sae.Dictionary, float | None]:
    """``(dictionary, training seconds or None when loaded)``: ``dictionary/<layer>.pt`` when it was trained
    with these settings, else trained now on ``n_scenes`` example scenes and saved (atomically)."""
    directory = Path(directory)
    width = int(hooks.layer_shape(model, layer)[0])
    options = dict(options or {})
    unknown = sorted(set(options) - {"l1", "steps", "batch_size", "lr", "resample"})
    if unknown:
        raise ValueError(f"unknown dictionary options {unknown}; choose from l1, steps, batch_size, lr, resample")
    settings = {
        "layer": layer,
        "n_features": int(n_features or FEATURES_PER_NEURON * width),
        "seed": int(seed),
        "scenes": int(n_scenes or analyses.EXAMPLE_SCENES),
        "scene_seed": analyses.EXAMPLE_SEED,
        "scene_size": analyses.scene_size(model),
        "options": {k: options[k] for k in sorted(options)},
    }
    pt, meta = _paths(directory, layer)
    if pt.is_file() and meta.is_file():
        stored = read_json(meta, fix=f"delete it and {pt.name} to train the dictionary again")
        if isinstance(stored, dict) and stored.get("settings") == settings:
            return sae.Dictionary.load(pt), None
        log(f"atlas: the dictionary of {layer} was trained with other settings; training it again")
    _forget_features(directory, layer)
    started = time.perf_counter()
    found = sae.train(
        model,
        layer,
        _scenes(model, settings["scenes"], analyses.EXAMPLE_SEED),
        n_features=settings["n_features"],
        seed=settings["seed"],
        **options,
    )
    seconds = time.perf_counter() - started
    found.save(pt)
    atomic_write_text(
        meta,
        json.dumps(
            {"settings": settings, "train_seconds": round(seconds, 2), "threads": torch.get_num_threads()}, indent=2
        ),
    )
    return found, seconds


def _cached_part(directory: Path, layer: str, part: str, make: Callable[[], dict], need=()) -> dict:
    """A part from ``analysis/``, or made now when it is missing or lacks one of the features in ``need``."""
    path = _part_path(directory, layer, part)
    if path.is_file():
        value = read_json(path, fix="delete it and rerun to compute it again")
        if isinstance(value, dict) and all(str(f) in value for f in need):
            return value
    value = make()
    atomic_write_text(path, json.dumps(value))
    return value


def _quality(model: nn.Module, found: sae.Dictionary, n_scenes: int) -> dict:
    """Training-scene firing frequency per feature and held-out reconstruction figures."""
    train = sae.activations(model, found.layer, _scenes(model, n_scenes, analyses.EXAMPLE_SEED))
    frequency = torch.zeros(found.n_features)
    for part in train.split(16384):
        frequency += (found.encode(part) > 0).float().sum(0)
    heldout = sae.quality(found, sae.activations(model, found.layer, _scenes(model, HELDOUT_SCENES, HELDOUT_SEED)))
    return {
        "frequency": [float(v) for v in frequency / train.shape[0]],
        "positions": int(train.shape[0]),
        "train": {"fraction_unexplained": found.fraction_unexplained, "l0": found.l0, "dead": found.dead},
        "heldout": {**heldout, "scenes": HELDOUT_SCENES, "seed": HELDOUT_SEED},
    }


def _render(
    model,
    directory: Path,
    layer: str,
    found: sae.Dictionary,
    features: list[int],
    *,
    steps: int,
    size: int,
    seed: int,
    render_options: Mapping,
    log,
) -> dict:
    """Feature visualizations (``direction`` objective along each decoder direction), resumable per chunk."""
    path = _part_path(directory, layer, "render")
    done = read_json(path, fix="delete it to render the features again") if path.is_file() else {}
    name = feature_layer(layer)
    todo = [f for f in features if str(f) not in done or not (directory / done[str(f)]["image"]).is_file()]
    for start in range(0, len(todo), RENDER_CHUNK):
        chunk = todo[start : start + RENDER_CHUNK]
        objectives = [optvis.objectives.direction(layer, found.directions[f]) for f in chunk]
        result = optvis.render(
            model,
            objectives,
            steps=steps,
            size=size,
            progress=False,
            image_seeds=[derive_seed(int(seed), name, f) for f in chunk],
            **dict(render_options),
        )
        for i, f in enumerate(chunk):
            image = f"img/{slug(name)}/{f}.png"
            save_png(directory / image, result.images[i, :3])
            done[str(f)] = {
                "image": image,
                "loss": round(float(result.history[-1, i]), 6),
                "never_active": bool(result.never_active[i]),
            }
        atomic_write_text(path, json.dumps(done))
        log(f"atlas: rendered {min(start + RENDER_CHUNK, len(todo))}/{len(todo)} features of {name}")
    return done


def _neuron_scores(model, directory: Path, layer: str, previous: str | None, needed: set[int]) -> dict[int, float]:
    """Polysemanticity scores of ``needed`` neurons: the atlas's own part where it has them, the rest now."""
    scores: dict[int, float] = {}
    atlas_part = directory / analyses.ANALYSIS_DIR / f"{slug(layer)}.polysemanticity.json"
    if atlas_part.is_file():
        for unit, value in read_json(atlas_part, fix="delete it and rerun").items():
            if isinstance(value, dict) and "score" in value:
                scores[int(unit)] = float(value["score"])
    path = _part_path(directory, layer, "neurons")
    extra = read_json(path, fix="delete it and rerun") if path.is_file() else {}
    missing = sorted(u for u in needed if u not in scores and str(u) not in extra)
    if missing:
        found = analyses.polysemanticity(model, layer, previous, units=missing)
        extra.update({str(u): v["score"] for u, v in found.items()})
        atomic_write_text(path, json.dumps(extra))
    scores.update({int(u): float(s) for u, s in extra.items()})
    return scores


def _layer_units(
    model,
    directory: Path,
    layer: str,
    previous: str | None,
    *,
    config,
    units_per_layer,
    steps,
    size,
    seed,
    k,
    images,
    labels,
    render_options,
    log,
) -> tuple[list[dict], DictionaryLayer]:
    seconds: dict[str, float] = {}

    def timed(step: str, make: Callable):
        started = time.perf_counter()
        value = make()
        seconds[step] = round(seconds.get(step, 0.0) + time.perf_counter() - started, 2)
        return value

    found, trained = timed(
        "dictionary",
        lambda: train_or_load(
            model,
            layer,
            directory,
            n_features=config.dictionary_features,
            options=config.dictionary_options,
            seed=seed,
            log=log,
        ),
    )
    if trained is not None:
        seconds["training"] = round(trained, 2)
    quality = timed(
        "quality",
        lambda: _cached_part(directory, layer, "quality", lambda: _quality(model, found, analyses.EXAMPLE_SCENES)),
    )
    live = [f for f, v in enumerate(quality["frequency"]) if v > 0]
    if units_per_layer is not None:  # the most often active features: rare ones have too few examples to judge
        live = sorted(sorted(live, key=lambda f: -quality["frequency"][f])[: int(units_per_layer)])
    shown = live
    rendered = timed(
        "render",
        lambda: _render(
            model,
            directory,
            layer,
            found,
            shown,
            steps=steps,
            size=size,
            seed=seed,
            render_options=render_options,
            log=log,
        ),
    )
    with sae.attached(model, found) as hook_name:
        examples = timed(
            "examples",
            lambda: _cached_part(
                directory,
                layer,
                "examples",
                lambda: {
                    str(f): v for f, v in analyses.examples(model, hook_name, images, directory, k, shown).items()
                },
                need=shown,
            ),
        )
        poly = timed(
            "polysemanticity",
            lambda: _cached_part(
                directory,
                layer,
                "polysemanticity",
                lambda: {
                    str(f): {**v, "layer": feature_layer(layer)}
                    for f, v in analyses.polysemanticity(model, hook_name, previous, shown).items()
                },
                need=shown,
            ),
        )
    feature_scores = {int(f): float(v["score"]) for f, v in poly.items() if isinstance(v, dict) and int(f) in shown}
    from circuits_vision.analysis.dictionary_comparison import covering_neurons

    needed = {n for f in feature_scores for n in covering_neurons(found, f)}
    neuron_scores = timed("neuron polysemanticity", lambda: _neuron_scores(model, directory, layer, previous, needed))
    comparison = compare(found, feature_scores, neuron_scores)
    name = feature_layer(layer)
    records = []
    for f in shown:
        record = {
            "layer": name,
            "unit": f,
            "dictionary_of": layer,
            "page": f"units/{slug(name)}/{f}.html",
            "label": (labels or {}).get(f"{name}:{f}"),
            **rendered[str(f)],
            "frequency": quality["frequency"][f],
            "examples": examples.get(str(f), "not computed"),
            "polysemanticity": poly.get(str(f), "not computed"),
            "neurons": [{"layer": layer, "unit": u, "weight": w} for u, w in found.strongest_neurons(f, k)],
            "covering": comparison.covering.get(f, []),
            "cleaner": f in comparison.cleaner,
        }
        records.append(record)
    page = f"{FOLDER}/{slug(layer)}.html"
    return records, DictionaryLayer(layer, found, comparison, page, seconds, quality=quality)


def feature_units(
    model: nn.Module,
    directory: str | Path,
    layers: Sequence[str],
    *,
    config,
    units_per_layer: int | None,
    steps: int,
    size: int,
    seed: int,
    k: int = 6,
    images=None,
    labels: Mapping | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], list[DictionaryLayer]]:
    """Manifest records of the dictionary features of the atlas's dictionary layers, and what each layer made.

    ``layers``: the atlas's layers in order (a dictionary layer's polysemanticity is clustered by the one
    before it, as for its neurons). A layer whose dictionary fails is reported in its
    :class:`DictionaryLayer` (``error``) instead of failing the atlas.
    """
    directory = Path(directory)
    layers = list(layers)
    chosen = list(config.dictionary_layers) if config.dictionary_layers else default_dictionary_layers(model, layers)
    records, made = [], []
    render_options = {**config.render_options, "config": config.render}
    for layer in chosen:
        layer = hooks.resolve_layer(model, layer)[0]
        position = layers.index(layer) if layer in layers else None
        previous = layers[position - 1] if position else None
        log(f"atlas: dictionary features of {layer}")
        try:
            found, info = _layer_units(
                model,
                directory,
                layer,
                previous,
                config=config,
                units_per_layer=units_per_layer,
                steps=steps,
                size=size,
                seed=seed,
                k=k,
                images=images,
                labels=labels,
                render_options=render_options,
                log=log,
            )
        except Exception as error:  # the atlas stays usable; the comparison page says why
            log(f"atlas: dictionary of {layer} failed: {type(error).__name__}: {error}")
            made.append(
                DictionaryLayer(
                    layer, None, None, f"{FOLDER}/{slug(layer)}.html", {}, error=analyses.not_computed(error)
                )
            )
            continue
        records += found
        made.append(info)
    return records, made


def add_to_atlas(
    model,
    directory: Path,
    layers,
    manifest: list[dict],
    settings: dict,
    *,
    images,
    labels,
    k,
    log,
    config,
    requested: bool,
) -> list[tuple[str, str]]:
    """The ``dictionary`` part (asked for now, or made by an earlier run): its records join ``manifest``,
    its comparison pages are written; returns the index links to them."""
    from circuits_vision.atlas import dictionary_pages

    if not requested and not (directory / FOLDER).is_dir():
        return []
    records, made = feature_units(
        model,
        directory,
        layers,
        config=config,
        units_per_layer=settings["units_per_layer"],
        steps=settings["steps"],
        size=settings["size"],
        seed=settings["seed"],
        k=k,
        images=images,
        labels=labels,
        log=log,
    )
    manifest += records
    present = {(r["layer"], r["unit"]) for r in manifest}
    for layer in made:
        dictionary_pages.write_comparison(
            directory, layer, [r for r in records if r["dictionary_of"] == layer.layer], present
        )
    return [(layer.page, f"{layer.layer}: neurons vs dictionary features") for layer in made]
