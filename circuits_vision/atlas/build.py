"""``build``: render every channel of the chosen layers into a resumable atlas directory with a viewer.

The work is cut into fixed chunks of units (``chunk_size`` consecutive units in layer order). A chunk
is rendered in one batched :func:`circuits_vision.optvis.render` call; its PNGs are written atomically
and only then its records, so an interrupted run (Ctrl-C, ``kill -9``) loses at most the chunk in
flight, and a rerun renders exactly the units without a record. Under ``torch.distributed`` (e.g.
``torchrun``) the chunks still to do are dealt round-robin to the ranks, each rank writes its own
images and record file, and rank 0 merges the manifest and writes the viewer and the circuit report.

This module runs the stages in order; each concern has its own module: what to do
(:mod:`~circuits_vision.atlas.plan`), who may write (:mod:`~circuits_vision.atlas.coordination`: the
lock, the ranks), the files (:mod:`~circuits_vision.atlas.store`, with ``stages.json``: what the
analyses and the report produced, from which a rerun decides what to reuse), the per-unit analyses
(:mod:`~circuits_vision.atlas.analyses`) and the pages (:mod:`~circuits_vision.atlas.viewer`,
:mod:`~circuits_vision.atlas.report`, both from :mod:`~circuits_vision.atlas.templates`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from circuits_vision import optvis
from circuits_vision.atlas import store
from circuits_vision.atlas.config import AtlasConfig
from circuits_vision.atlas.coordination import AtlasLock, Ranks
from circuits_vision.atlas.layers import slug
from circuits_vision.atlas.plan import (  # noqa: F401  (resolve_layers, weights_fingerprint: public here too)
    DEFAULT_CHUNK,
    AtlasPlan,
    atlas_settings,
    chosen_parts,
    report_pair,
    resolve_layers,
    unit_seed,
    weights_fingerprint,
)


@dataclass
class AtlasResult:
    """What :func:`build` made: the directory, its ``index.html`` and ``manifest.jsonl``, unit counts."""

    directory: Path
    index: Path
    manifest: Path
    units: int
    rendered: int
    report: Path | None = None


def _setup(directory: Path, settings: dict, plan: AtlasPlan, lock: AtlasLock, log):
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
    return plan.left(done), len(done)


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
            "branch", "tuning", "examples", "polysemanticity", "neuron", "facets", "dictionary"); default all but
            "facets", which renders 3 more images per unit, and "dictionary" (sparse-autoencoder features as
            units, :mod:`~circuits_vision.atlas.dictionary_units`; its layers and size: ``config``). The
            others show what an earlier run into ``out`` computed, else "not computed". With ``units_per_layer`` they cover the atlas's units only.
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
    ranks = Ranks.current()
    directory = Path(out)
    if device is not None:
        model = model.to(device)
    plan = AtlasPlan.of(model, layers, units_per_layer, int(config.chunk_size or batch_size or DEFAULT_CHUNK))
    settings = atlas_settings(model, plan, model_name=model_name, steps=steps, size=size, seed=seed, config=config)
    lock = AtlasLock(directory)
    try:
        todo, done_before = ranks.decided_by_leader(lambda: _setup(directory, settings, plan, lock, log))
        rendered = _render_chunks(
            model,
            directory,
            ranks.share(todo),
            ranks.rank,
            ranks.world,
            len(plan.units),
            done_before,
            steps=steps,
            size=size,
            seed=seed,
            batch_size=batch_size,
            device=device,
            render_options=render_options,
            progress=progress,
            on_progress=on_progress,
            log=log,
        )
        rendered = ranks.total(rendered)
        result = AtlasResult(
            directory, directory / "index.html", directory / store.MANIFEST_FILE, len(plan.units), rendered
        )
        if ranks.leader:  # the other ranks are done (no barrier: the analyses may outlast a collective's timeout)
            _finish(
                model,
                directory,
                plan,
                settings,
                result,
                images=images,
                labels=labels,
                k=k,
                parts=parts,
                report=report,
                progress=progress,
                log=log,
                report_units_per_layer=None if config.report_whole_layers else units_per_layer,
                config=config,
            )
        return result
    finally:
        if ranks.leader:
            lock.release()


def _render_chunks(
    model,
    directory,
    my_chunks,
    rank,
    world,
    total,
    done_before,
    *,
    steps,
    size,
    seed,
    batch_size,
    device,
    render_options,
    progress,
    on_progress,
    log,
) -> int:
    """Render this rank's chunks; after each, its PNGs then its records are stored. Returns units rendered."""
    record_file = store.records_path(directory, rank)
    records = store.read_jsonl(
        record_file, required=store.RECORD_KEYS
    )  # this rank's file from an earlier run stays valid
    mine = sum(len(left) for _, left in my_chunks)
    desc = "atlas" if world == 1 else f"atlas rank {rank}/{world}"
    bar = tqdm(
        total=total if world == 1 else mine,
        initial=done_before if world == 1 else 0,
        disable=not progress or (world > 1 and rank != 0),
        desc=desc,
        unit="unit",
        dynamic_ncols=True,
    )
    rendered = 0
    try:
        for _, left in my_chunks:
            objectives = [optvis.objectives.channel(layer, unit) for layer, unit in left]
            result = optvis.render(
                model,
                objectives,
                steps=steps,
                size=size,
                batch_size=batch_size,
                device=device,
                image_seeds=[unit_seed(seed, layer, unit) for layer, unit in left],
                progress=False,
                **dict(render_options or {}),
            )
            for i, (layer, unit) in enumerate(left):
                name = f"img/{slug(layer)}/{unit}.png"
                store.save_png(directory / name, result.images[i, :3])
                records.append(
                    {
                        "layer": layer,
                        "unit": unit,
                        "image": name,
                        "loss": round(float(result.history[-1, i]), 6),
                        "never_active": bool(result.never_active[i]),
                        "rank": rank,
                        "time": time.time(),
                    }
                )
            store.write_jsonl(record_file, records)
            rendered += len(left)
            bar.update(len(left))
            if on_progress is not None:
                on_progress(done_before + rendered if world == 1 else rendered, total if world == 1 else mine)
    finally:
        bar.close()
    return rendered


def _finish(
    model,
    directory: Path,
    plan: AtlasPlan,
    settings,
    result: AtlasResult,
    *,
    images,
    labels,
    k,
    parts,
    report,
    progress,
    log,
    report_units_per_layer,
    config=None,
):
    """Rank 0, after all ranks rendered: analyses, manifest, circuit report, stages, viewer."""
    from circuits_vision.atlas import analyses, viewer, views_section

    records = store.read_records(directory)
    missing = [f"{layer}:{unit}" for layer, unit in plan.units if (layer, unit) not in records]
    if missing:
        raise RuntimeError(
            f"{len(missing)} units have no image after rendering (first: {missing[:5]}); rerun to finish them"
        )
    chosen = chosen_parts(parts, (*analyses.PARTS, "dictionary"), analyses.DEFAULT_PARTS)
    stages = store.read_stages(directory)  # what an earlier run's analyses and report produced
    found = analyses.layer_parts(
        model,
        plan.layers,
        directory,
        images=images,
        k=k,
        parts=chosen,
        units=plan.shown(),
        render={"steps": settings["steps"], "size": settings["size"], "seed": settings["seed"]},
        progress=progress,
        log=log,
    )
    manifest = []
    for layer, unit in plan.units:
        record = dict(records[(layer, unit)])
        record.pop("time", None)
        record["page"] = f"units/{slug(layer)}/{unit}.html"
        record["label"] = (labels or {}).get(f"{layer}:{unit}")
        for part in analyses.PARTS:
            record[part] = analyses.unit_part(found[layer], part, unit)
        manifest.append(record)
    from circuits_vision.atlas.dictionary_units import add_to_atlas

    links = add_to_atlas(
        model,
        directory,
        plan.layers,
        manifest,
        settings,
        images=images,
        labels=labels,
        k=k,
        log=log,
        config=config or AtlasConfig(),
        requested="dictionary" in chosen,
    )
    store.write_jsonl(directory / store.MANIFEST_FILE, manifest)
    stages["analyses"] = {
        layer: {part: _stored_part(directory, layer, part, found[layer][part]) for part in analyses.PARTS}
        for layer in plan.layers
    }
    pair = report_pair(model, plan.layers, report)
    result.report, error = _report_stage(
        model, directory, pair, stages, units_per_layer=report_units_per_layer, progress=progress, log=log
    )
    if error is not None:
        settings = {**settings, "report_error": error}
    store.write_stages(directory, stages)
    views_section.attach(result.report, manifest)  # which view puts each unit in which family, from the report
    viewer.write_viewer(directory, manifest, settings, report=result.report, links=links)


def _stored_part(directory: Path, layer: str, part: str, values: dict) -> str:
    """What the analyses stage left for one part of a layer: its file, else why it was not computed."""
    from circuits_vision.atlas import analyses

    name = analyses.part_file(layer, part)
    return name if (directory / name).is_file() else str(values.get("*", "not computed"))


REPORT_PAGE = "report/index.html"


def _report_stage(
    model, directory: Path, pair: tuple[str, str] | None, stages: dict, *, units_per_layer, progress, log
) -> tuple[Path | None, str | None]:
    """The circuit report of ``pair``, made now or reused; returns ``(its page or None, why it failed or None)``.

    What an earlier run made is read from ``stages["report"]`` (its pair, scope and page), never from the
    page: it is reused when this run asks for the same pair and scope (the model and settings are fixed
    per atlas), or asks for none (its link stays). ``stages["report"]`` is updated for the next run.
    """
    from circuits_vision.atlas import report as report_module

    existing = directory / REPORT_PAGE
    made = stages.get("report", {})
    if pair is None:
        return (existing if existing.is_file() else None), None
    wanted = {"source": pair[0], "target": pair[1], "units_per_layer": units_per_layer}
    if existing.is_file() and made.get("page") == REPORT_PAGE and {key: made.get(key) for key in wanted} == wanted:
        return existing, None
    stages.pop("report", None)  # the page on disk, if any, is not this pair's until remade
    try:
        page = report_module.circuit_report(
            model,
            pair[0],
            pair[1],
            directory / "report",
            atlas_dir=directory,
            units_per_layer=units_per_layer,
            progress=progress,
            log=log,
        )
    except Exception as error:  # the atlas stays usable; the index says why the report is missing
        log(f"atlas: circuit report of {pair[0]} -> {pair[1]} failed: {type(error).__name__}: {error}")
        stages["report"] = {**wanted, "error": f"{type(error).__name__}: {error}"}
        return None, f"{type(error).__name__}: {error}"
    stages["report"] = {**wanted, "page": REPORT_PAGE}
    return page, None
