"""Activation atlas of the shipped model: all grid cells rendered in one batch vs the same cells one at a time.

    OMP_NUM_THREADS=1 python benchmarks/activation_atlas.py                       # timing, 16 cells
    OMP_NUM_THREADS=1 python benchmarks/activation_atlas.py --out /tmp/aa --grid 12 --steps 256 --compare 0
    OMP_NUM_THREADS=1 python benchmarks/activation_atlas.py --out /tmp/aa --curves-only --sampling norm --compare 0

Builds an activation atlas of ``--layer`` on held-out scenes (the shipped model's training distribution),
then renders ``--compare`` of its cells again one ``render`` call per cell with the same settings and
prints both times and their ratio. With ``--out`` it also writes the zoomable page, the mosaic PNG and
a per-cell table, and checks the cells whose activations come mostly from curve scenes: the model's
own classification of the rendered cell image, and the preferred orientation of the strongest curve
detector (``circuits_vision/data/shapes.json``) in the cell's direction against the scenes' orientation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from circuits_vision import atlas, models
from circuits_vision.atlas.store import save_png
from circuits_vision.models.shapes import metadata_path
from circuits_vision.optvis import objectives as obj
from circuits_vision.optvis import render
from circuits_vision.stimuli.scenes import SHAPE_CLASSES


def _circular_difference(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def curve_check(model, result, out: Path) -> dict:
    """The cells whose activations come mostly (>= 50 %) from curve scenes, with their scenes' mean orientation.

    Per such cell: the circular mean of its curve scenes' orientation bins, the preferred orientation of
    the curve detector (shapes.json) weighted most in the cell's direction and their difference, and the
    model's own shape class for the rendered picture.
    """
    meta = json.loads(metadata_path().read_text())
    detectors = meta["curve_detectors"].get(result.layer)
    names = meta["heads"]["shape"]
    with torch.no_grad():
        predicted = model.split_logits(model(result.images))["shape"].argmax(1)
    bins = torch.tensor([float(n.split("_")[1]) if n.startswith("curve_") else float("nan") for n in names])
    rows, errors, any_curve = [], [], 0
    for i, row in enumerate(result.table()):
        mine = result.labels[result.sample_cell == i]
        curve = mine[(mine >= 0) & (mine < len(names))]
        curve = curve[~torch.isnan(bins[curve])]
        entry = dict(row, predicted=names[int(predicted[i])], curve_share=curve.numel() / max(1, mine.numel()))
        if entry["curve_share"] >= 0.5:
            angles = torch.deg2rad(bins[curve])
            mean = float(torch.rad2deg(torch.atan2(angles.sin().mean(), angles.cos().mean()))) % 360
            entry["scene_orientation"] = mean
            any_curve += entry["predicted"].startswith("curve_")
            if detectors:
                best = int(result.directions[i, detectors["units"]].argmax())
                entry["top_curve_detector"] = detectors["units"][best]
                entry["its_preferred_orientation"] = detectors["preferred_orientation_deg"][best]
                entry["orientation_error_deg"] = _circular_difference(entry["its_preferred_orientation"], mean)
                errors.append(entry["orientation_error_deg"])
        rows.append(entry)
    (out / "cells.json").write_text(json.dumps(rows, indent=1))
    curve_cells = [r for r in rows if "scene_orientation" in r]
    return {"cells": len(rows), "curve_cells": len(curve_cells), "rendered_classified_as_a_curve": any_curve,
            "median_orientation_error_deg": float(torch.tensor(errors).median()) if errors else None,
            "within_45deg": sum(e <= 45 for e in errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="mixed3b")
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--positions", type=int, default=2)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--reducer", default="auto")
    parser.add_argument("--sampling", default="uniform", choices=["uniform", "norm"])
    parser.add_argument("--objective", default="direction", choices=["direction", "direction_neuron"])
    parser.add_argument("--compare", type=int, default=16, help="cells to render one at a time (0: skip)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--class-target", default=None, choices=list(SHAPE_CLASSES),
                        help="a class-filtered atlas: only activations pushing toward this shape class")
    parser.add_argument("--curves-only", action="store_true",
                        help="only the held-out scenes of curves (any orientation): the atlas of the curve region")
    args = parser.parse_args()

    model = models.load("shapes")
    start = time.perf_counter()
    images = labels = None
    if args.curves_only:
        batches = list(atlas.heldout_scenes(3 * args.images, batch_size=512))
        images, labels = torch.cat([b for b, _ in batches]), torch.cat([lab for _, lab in batches])
        curve = [i for i, name in enumerate(SHAPE_CLASSES) if name.startswith("curve_")]
        keep = torch.isin(labels, torch.tensor(curve)).nonzero().flatten()[: args.images]
        images, labels = images[keep], labels[keep]
    result = atlas.activation_atlas(model, args.layer, images, labels=labels, label_names=list(SHAPE_CLASSES),
                                    grid=args.grid, n_images=args.images,
                                    positions_per_image=args.positions, reducer=args.reducer, min_count=args.min_count,
                                    steps=args.steps, size=args.size, sampling=args.sampling, objective=args.objective,
                                    class_target=None if args.class_target is None else SHAPE_CLASSES.index(args.class_target))
    total = time.perf_counter() - start
    print(result)
    if args.class_target is not None:
        share = float((result.labels == SHAPE_CLASSES.index(args.class_target)).float().mean())
        print(f"{share:.1%} of the kept activations come from {args.class_target} scenes "
              f"(1/{len(SHAPE_CLASSES)} = {1 / len(SHAPE_CLASSES):.1%} of all scenes)")
    print(f"atlas built in {total:.1f} s ({len(result.cells)} cells, {args.steps} steps, {args.size} px, reducer {result.reducer})")

    if args.compare:
        cells = result.directions[: args.compare]
        make = obj.direction if args.objective == "direction" else obj.direction_neuron
        objectives = [make(result.layer, d) for d in cells]
        settings = dict(steps=args.steps, size=args.size, progress=False)
        t0 = time.perf_counter()
        batched = render(model, objectives, batch_size=len(objectives), **settings)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        singles = [render(model, [o], batch_size=1, **settings).images for o in objectives]
        t_single = time.perf_counter() - t0
        assert batched.images.shape[0] == sum(s.shape[0] for s in singles)
        print(f"{len(objectives)} cells: one batched render {t_batched:.2f} s, one at a time {t_single:.2f} s, "
              f"ratio {t_single / t_batched:.2f}x")

    if args.out is not None:
        page = result.save(args.out)
        save_png(args.out / f"mosaic_{result.layer}.png", result.mosaic())
        print(f"page: {page}")
        print("curve cells:", curve_check(model, result, args.out))


if __name__ == "__main__":
    main()
