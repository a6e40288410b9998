"""``build``: render every channel of the chosen layers into a resumable atlas directory with a viewer.

The work is cut into fixed chunks of units (``chunk_size`` consecutive units in layer order). A chunk
is rendered in one batched :func:`circuits_vision.optvis.render` call; its PNGs are written atomically
and only then its records, so an interrupted run (Ctrl-C, ``kill -9``) loses at most the chunk in
flight, and a rerun renders exactly the units without a record. Under ``torch.distributed`` (e.g.
``torchrun``) the chunks still to do are dealt round-robin to the ranks, each rank writes its own
images and record file, and rank 0 merges the manifest and writes the viewer and the circuit report.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from circuits_vision import hooks, optvis
from circuits_vision._utils import derive_seed
from circuits_vision.optvis import RenderConfig
from circuits_vision.atlas import store
from circuits_vision.atlas.config import AtlasConfig
from circuits_vision.atlas.layers import default_layers, slug

DEFAULT_CHUNK = 32


@dataclass
class AtlasResult:
    """What :func:`build` made: the directory, its ``index.html`` and ``manifest.jsonl``, unit counts."""

    directory: Path
    index: Path
    manifest: Path
    units: int
    rendered: int
    report: Path | None = None


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the model's state dict (names, shapes, dtypes and values): which weights an atlas shows."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def _distributed():
    """``(torch.distributed or None, rank, world size)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _broadcast(dist, value):
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _units(model: nn.Module, layers: Sequence[str], units_per_layer: int | None) -> list[tuple[str, int]]:
    units = []
    for layer in layers:
        width = int(hooks.layer_shape(model, layer)[0])
        units += [(layer, u) for u in range(width if units_per_layer is None else min(width, units_per_layer))]
    return units


def resolve_layers(model: nn.Module, layers: Sequence[str] | str | None) -> list[str]:
    """Canonical names of ``layers`` (default :func:`default_layers`); unknown names list close ones."""
    if layers is None:
        return default_layers(model)
    if isinstance(layers, str):
        layers = [layers]
    canonical = [hooks.resolve_layer(model, name)[0] for name in layers]
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"layers must be distinct, got {list(layers)}")
    return canonical


def _setup(directory: Path, settings: dict, chunks: list[list[tuple[str, int]]], lock: store.AtlasLock, log):
    """Rank 0: lock, settings check, then the chunks left to render. Returns ``(todo, done)``.

    Runs inside the caller's ``try/finally`` that releases the lock, so a failure after taking it
    (a corrupt or misplaced file) does not leave the atlas locked.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    store.check_settings(directory, settings)
    if lock.taken_over is not None:
        log(f"atlas: took over the lock of stopped run pid {lock.taken_over.get('pid')}; resuming")
    store.remove_temporary_files(directory)  # half-written files of a killed run; we hold the lock
    done = store.prune_records(directory)  # a unit whose image is gone is rendered again, its record replaced
    todo = [(j, [u for u in chunk if u not in done]) for j, chunk in enumerate(chunks)]
    return [(j, left) for j, left in todo if left], len(done)


def unit_seed(seed: int, layer: str, unit: int) -> int:
    """The seed of one unit's image: from ``(seed, layer, unit)`` alone, so chunking, batching and resuming
    never change it."""
    return derive_seed(int(seed), layer, int(unit))


def build(
    model: nn.Module,
    layers: Sequence[str] | str | None = None,
    out: str | os.PathLike = "atlas",
    *,
    steps: int = 256,
    size: int = 96,
    seed: int = 0,
    device: torch.device | str | None = None,
    images: str | os.PathLike | None = None,
    units_per_layer: int | None = None,
    labels: Mapping[str, str] | None = None,
    model_name: str | None = None,
    k: int = 6,
    parts: Sequence[str] | None = None,
    report: bool | tuple[str, str] = True,
    progress: bool = True,
    config: AtlasConfig | None = None,
) -> AtlasResult:
    """Render every unit of ``layers`` and write the atlas (PNGs, ``manifest.jsonl``, viewer) into ``out``.

    Args:
        model: any conv net taking ``[N, 3, H, W]`` images in [0, 1].
        layers: layer names (default :func:`~circuits_vision.atlas.layers.default_layers`: the ReLU and
            concatenation layers outside blocks, e.g. ``conv2d0 ... mixed3a, mixed3b, ...``).
        out: the atlas directory; rerunning into it continues an interrupted run.
        steps, size, seed: render settings (see :func:`circuits_vision.optvis.render`).
        device: render device (default the model's); the model is moved there.
        images: a folder of images for dataset examples (default: :data:`analyses.EXAMPLE_SCENES` scenes
            of the shipped model's training distribution drawn from :data:`analyses.EXAMPLE_SEED`).
        units_per_layer: only the first N channels of each layer (a small atlas).
        labels: ``{"layer:unit": text}`` shown with the units (escaped).
        model_name: recorded in the settings (default the model's class name).
        k: strongest inputs/outputs (and dataset examples) shown per unit.
        parts: which per-unit analyses to compute, of ``analyses.PARTS`` ("inputs", "outputs", "family",
            "branch", "tuning", "examples", "polysemanticity", "facets"); default all but "facets", which
            renders 3 more images per unit. The others show what an earlier run into ``out``
            computed, else "not computed". With ``units_per_layer`` they cover the atlas's units only.
        report: write the circuit report of a layer pair: ``True`` (a default pair), ``(source, target)``, or
            False (none now; a report an earlier run wrote stays linked).
        progress: tqdm bars with ETA: units rendered, analyses done, report sections.
        config: how the job runs (:class:`~circuits_vision.atlas.AtlasConfig`: chunk and batch sizes, the
            render engine's knobs and extra render options, progress callback, log); default ``AtlasConfig()``.
            Units are seeded by ``(seed, layer, unit)`` alone (:func:`unit_seed`), so an image depends on
            neither chunking, batching, the other units nor resuming.

    Raises:
        AtlasLockedError: another live run is writing to ``out``.
        SettingsMismatchError: ``out`` holds an atlas made with other settings.
        CorruptAtlasFileError: a settings, record or analysis file of ``out`` is damaged (the message names it).
        UnknownLayerError: an unknown layer name (the message lists close names).
        OSError: ``out`` cannot be written (read-only, full, a file where a folder should be), naming the path.
    """
    if config is None:
        config = AtlasConfig()
    elif not isinstance(config, AtlasConfig):
        raise TypeError(f"config must be an AtlasConfig, got {type(config).__name__}")
    batch_size, render_options = config.batch_size, {**config.render_options, "config": config.render}
    log, on_progress = config.log or tqdm.write, config.on_progress
    dist, rank, world = _distributed()
    directory = Path(out)
    if device is not None:
        model = model.to(device)
    layer_list = resolve_layers(model, layers)
    units = _units(model, layer_list, units_per_layer)
    chunk = int(config.chunk_size or batch_size or DEFAULT_CHUNK)
    chunks = [units[i : i + chunk] for i in range(0, len(units), chunk)]
    settings = {
        "model": model_name or type(model).__qualname__, "weights_sha256": weights_fingerprint(model),
        "steps": int(steps), "size": int(size), "seed": int(seed), "layers": layer_list,
        "units_per_layer": units_per_layer,
        "render_options": {key: repr(value) for key, value in sorted(config.render_options.items())},
    }
    if config.render != RenderConfig():  # only set when used, so atlases made before it still resume
        settings["render_config"] = repr(config.render)
    lock = store.AtlasLock(directory)
    try:
        failure, todo, done_before = None, [], 0
        if rank == 0:
            try:
                todo, done_before = _setup(directory, settings, chunks, lock, log)
            except Exception as error:  # every rank must learn of it, or the others wait forever
                failure = error
        failure, todo, done_before = _broadcast(dist, (failure, todo, done_before))
        if failure is not None:
            raise failure
        rendered = _render_chunks(model, directory, todo[rank::world], rank, world, len(units), done_before,
                                  steps=steps, size=size, seed=seed, batch_size=batch_size, device=device,
                                  render_options=render_options, progress=progress, on_progress=on_progress, log=log)
        if dist is not None:
            counts = [None] * world
            dist.all_gather_object(counts, rendered)
            rendered = sum(counts)
        result = AtlasResult(directory, directory / "index.html", directory / store.MANIFEST_FILE, len(units), rendered)
        if rank == 0:  # the other ranks are done (no barrier: the analyses may outlast a collective's timeout)
            _finish(model, directory, layer_list, units, settings, result, images=images, labels=labels, k=k,
                    parts=parts, report=report, progress=progress, log=log,
                    report_units_per_layer=None if config.report_whole_layers else units_per_layer)
        return result
    finally:
        if rank == 0:
            lock.release()


def _render_chunks(model, directory, my_chunks, rank, world, total, done_before, *, steps, size, seed, batch_size,
                   device, render_options, progress, on_progress, log) -> int:
    """Render this rank's chunks; after each, its PNGs then its records are stored. Returns units rendered."""
    record_file = store.records_path(directory, rank)
    records = store.read_jsonl(record_file, required=store.RECORD_KEYS)  # this rank's file from an earlier run stays valid
    mine = sum(len(left) for _, left in my_chunks)
    desc = "atlas" if world == 1 else f"atlas rank {rank}/{world}"
    bar = tqdm(total=total if world == 1 else mine, initial=done_before if world == 1 else 0,
               disable=not progress or (world > 1 and rank != 0), desc=desc, unit="unit", dynamic_ncols=True)
    rendered = 0
    try:
        for _, left in my_chunks:
            objectives = [optvis.objectives.channel(layer, unit) for layer, unit in left]
            result = optvis.render(model, objectives, steps=steps, size=size, batch_size=batch_size, device=device,
                                   image_seeds=[unit_seed(seed, layer, unit) for layer, unit in left], progress=False,
                                   **dict(render_options or {}))
            for i, (layer, unit) in enumerate(left):
                name = f"img/{slug(layer)}/{unit}.png"
                store.save_png(directory / name, result.images[i, :3])
                records.append({"layer": layer, "unit": unit, "image": name,
                                "loss": round(float(result.history[-1, i]), 6),
                                "never_active": bool(result.never_active[i]), "rank": rank, "time": time.time()})
            store.write_jsonl(record_file, records)
            rendered += len(left)
            bar.update(len(left))
            if on_progress is not None:
                on_progress(done_before + rendered if world == 1 else rendered, total if world == 1 else mine)
    finally:
        bar.close()
    return rendered


def _default_pair(model: nn.Module, layers: list[str]) -> tuple[str, str] | None:
    """The first consecutive pair of branch layers (mixed3a -> mixed3b), else the last pair."""
    if len(layers) < 2:
        return None

    def has_branches(name: str) -> bool:
        try:
            hooks.branches(model, name)
            return True
        except (ValueError, RuntimeError):
            return False

    for source, target in zip(layers, layers[1:]):
        if has_branches(source) and has_branches(target):
            return source, target
    return layers[-2], layers[-1]


def _finish(model, directory: Path, layers, units, settings, result: AtlasResult, *, images, labels, k, parts, report,
            progress, log, report_units_per_layer):
    """Rank 0, after all ranks rendered: analyses, manifest, viewer, circuit report."""
    from circuits_vision.atlas import analyses, viewer, views_section

    records = store.read_records(directory)
    missing = [f"{layer}:{unit}" for layer, unit in units if (layer, unit) not in records]
    if missing:
        raise RuntimeError(f"{len(missing)} units have no image after rendering (first: {missing[:5]}); rerun to finish them")
    chosen = tuple(analyses.DEFAULT_PARTS if parts is None else parts)
    unknown = sorted(set(chosen) - set(analyses.PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {list(analyses.PARTS)}")
    shown = None  # every unit of each layer
    if settings["units_per_layer"] is not None:  # a small atlas: the analyses cover its units, not whole layers
        shown = {layer: [u for name, u in units if name == layer] for layer in layers}
    found = analyses.layer_parts(model, layers, directory, images=images, k=k, parts=chosen, units=shown,
                                 render={"steps": settings["steps"], "size": settings["size"], "seed": settings["seed"]},
                                 progress=progress, log=log)
    manifest = []
    for layer, unit in units:
        record = dict(records[(layer, unit)])
        record.pop("time", None)
        record["page"] = f"units/{slug(layer)}/{unit}.html"
        record["label"] = (labels or {}).get(f"{layer}:{unit}")
        for part in analyses.PARTS:
            record[part] = analyses.unit_part(found[layer], part, unit)
        manifest.append(record)
    store.write_jsonl(directory / store.MANIFEST_FILE, manifest)
    pair = _default_pair(model, layers) if report is True else (tuple(report) if report else None)
    existing = directory / "report" / "index.html"
    if existing.is_file() and (pair is None or f"{pair[0]} -&gt; {pair[1]}" in existing.read_text()):
        # the same model and settings made it (they are fixed per atlas); a run without a report keeps the link
        result.report = existing
    elif pair is not None:
        from circuits_vision.atlas.report import circuit_report

        try:
            result.report = circuit_report(model, pair[0], pair[1], directory / "report", atlas_dir=directory,
                                           units_per_layer=report_units_per_layer, progress=progress, log=log)
        except Exception as error:  # the atlas stays usable; the index says why the report is missing
            log(f"atlas: circuit report of {pair[0]} -> {pair[1]} failed: {type(error).__name__}: {error}")
            settings = {**settings, "report_error": f"{type(error).__name__}: {error}"}
    views_section.attach(result.report, manifest)  # which view puts each unit in which family, from the report
    viewer.write_viewer(directory, manifest, settings, report=result.report)
