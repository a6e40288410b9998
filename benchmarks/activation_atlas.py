"""Activation atlas of the shipped model: all grid cells rendered in one batch vs the same cells one at a time.

    OMP_NUM_THREADS=1 python benchmarks/activation_atlas.py                       # timing, 16 cells
    OMP_NUM_THREADS=1 python benchmarks/activation_atlas.py --out /tmp/aa --grid 12 --images 2048 --steps 128 --compare 0
    OMP_NUM_THREADS=1 python benchmarks/activation_atlas.py --out /tmp/aa --curves-only --compare 0

Builds an activation atlas of ``--layer`` on held-out scenes (the shipped model's training distribution),
then renders ``--compare`` of its cells again one ``render`` call per cell with the same settings and
prints both times and their ratio. With ``--out`` it also writes the zoomable page, the mosaic PNG and
a per-cell table, and checks the curve region (cells of mostly curve activations): the orientation read
from each cell's picture against its scenes' drawn orientation, with a shuffled-picture null, and the
model's own classification of the rendered picture.

Measured on the shipped checkpoint (mixed3b, 2048 held-out scenes, 2 positions each, t-SNE, 12 x 12 grid,
64 px, defaults ``--sampling object --objective direction_neuron_cossim``), 256 steps: 117 cells, 31 curve
cells, median orientation error 13.4 deg (84 % within 45 deg) against 89.7 deg with the pictures shuffled
among the curve cells (p = 0.0005); the axis, ignoring which way the stroke bends, 13.4 deg against 42.2
(p = 0.0005); the model calls 15 of the 31 pictures curves; the atlas built in 108 s (1 thread). At
``--grid 6 --images 512 --steps 32``: 31 cells, 7 curve cells, 14.3 deg against 49.2 shuffled (p = 0.007).

On the checkpoint shipped before it: 123 cells, 24 curve cells, 22.3 deg (67 % within 45 deg) against 85.9
shuffled (p = 0.0005); axis 20.6 against 41.4 (p = 0.004); the model called 8 of the 24 pictures curves.

On the checkpoint before that (trained without unit curve targets; 2-core CPU shared with other jobs):

- 128 steps: 114 cells, 19 curve cells, median orientation error 16.3 deg (79 % within 45 deg) against
  80.4 deg shuffled (p = 0.0005); axis 11.3 deg against 39.5 (p = 0.001); the model called 4 of the 19
  pictures curves (most of the rest angles or lines); 482 s.
- 256 steps: the axis held (16.0 deg against 35.6 shuffled, p = 0.003) but 9 of the 19 pictures bent
  the other way (errors of 125..180 deg): 77.1 deg against 88.7 shuffled (p = 0.40), i.e. which way
  the curve faces was not recovered; the model called 3 of them curves; 652 s.
- the same 19 cells rendered with ``direction`` (cosine at every position): 87.9 deg against a null of
  81.0 deg (p = 0.68), i.e. chance; with ``direction_neuron_cossim`` in that run 25.3 deg (p = 0.001).
- before object masks, cells were called curve cells by their scenes' class; with uniform positions only
  26 % of sampled positions see their scene's object, and the 10 "curve cells" of that layout had a
  median of 30 % of their curve-scene members seeing a curve. Their strongest curve detector's preferred
  orientation (the earlier check, which read the direction, not the picture) was 100 deg off (chance 90).
  Rendered with ``direction_neuron_cossim``, those 10 cells read 25.7 deg (null 80.7, p = 0.01): the
  objective is what moved the figure (positions just beside a curve still carry its orientation, the
  layer's receptive field being wider than the two-stride window); the labels decide which cells count
  as curve cells, and object sampling gives about twice as many.

On that checkpoint too, objectives on the 8 mean on-object curve activations of each orientation bin (128 steps; median error of
the picture's orientation, lower median of 8): ``direction`` 42.5, ``direction_neuron`` 17.8, lucid's
``direction_neuron_cossim`` 14.3 (axis 6.9), the same at every position 15.6, cosine after subtracting the
dataset mean 73.7, whitened (inverse covariance) direction with the cosine power 43.7 at the centre and
104.3 at every position. On this model the pictures are short oriented strokes, often bent; about one in
four points its bend the opposite way (error near 180 deg) with the axis right.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import torch

from circuits_vision import atlas, models
from circuits_vision.atlas.store import save_png
from circuits_vision.models.shapes import metadata_path
from circuits_vision.optvis import render
from circuits_vision.stimuli.scenes import SHAPE_CLASSES

AA = importlib.import_module("circuits_vision.atlas.activation_atlas")  # the package attribute is the function


def curve_check(model, result, out: Path) -> dict:
    """The curve region's cells (at least half curve activations), their scenes' orientation against the
    orientation read from their pictures (``atlas.curve_cells``, no model involved), and the model's own
    shape class for each rendered picture."""
    check = atlas.curve_cells(result)
    names = json.loads(metadata_path().read_text())["heads"]["shape"]
    with torch.no_grad():
        predicted = model.split_logits(model(result.images))["shape"].argmax(1)
    rows = [dict(row, predicted=names[int(predicted[row["cell"]])]) for row in check.table()]
    (out / "cells.json").write_text(json.dumps({"cells": result.table(), "curve_cells": rows}, indent=1))
    return {
        "cells": len(result.cells),
        "curve_cells": len(rows),
        "median_orientation_error_deg": check.median_error,
        "shuffled_null_median_deg": check.null_median,
        "p_value": check.p_value,
        "within_45deg": check.within(45),
        "median_axis_error_deg": check.median_axis_error,
        "shuffled_axis_null_median_deg": check.axis_null_median,
        "axis_p_value": check.axis_p_value,
        "rendered_classified_as_a_curve": sum(r["predicted"].startswith("curve_") for r in rows),
    }


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
    parser.add_argument("--sampling", default="object", choices=list(AA.SAMPLINGS))
    parser.add_argument("--objective", default="direction_neuron_cossim", choices=sorted(AA.OBJECTIVES))
    parser.add_argument("--compare", type=int, default=16, help="cells to render one at a time (0: skip)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--class-target",
        default=None,
        choices=list(SHAPE_CLASSES),
        help="a class-filtered atlas: only activations pushing toward this shape class",
    )
    parser.add_argument(
        "--curves-only",
        action="store_true",
        help="only the held-out scenes of curves (any orientation): the atlas of the curve region",
    )
    args = parser.parse_args()

    model = models.load("shapes")
    start = time.perf_counter()
    images = None
    if args.curves_only:
        curve = torch.tensor([i for i, name in enumerate(SHAPE_CLASSES) if name.startswith("curve_")])
        images = []
        for batch, labels, details in atlas.heldout_scenes(3 * args.images, batch_size=512, details=True):
            keep = torch.isin(labels, curve)
            images.append((batch[keep], labels[keep], {k: v[keep] for k, v in details.items()}))
    result = atlas.activation_atlas(
        model,
        args.layer,
        images,
        label_names=list(SHAPE_CLASSES),
        grid=args.grid,
        n_images=args.images,
        positions_per_image=args.positions,
        reducer=args.reducer,
        min_count=args.min_count,
        steps=args.steps,
        size=args.size,
        sampling=args.sampling,
        objective=args.objective,
        class_target=None if args.class_target is None else SHAPE_CLASSES.index(args.class_target),
    )
    total = time.perf_counter() - start
    print(result)
    if args.class_target is not None:
        share = float((result.labels == SHAPE_CLASSES.index(args.class_target)).float().mean())
        print(
            f"{share:.1%} of the kept activations come from {args.class_target} scenes "
            f"(1/{len(SHAPE_CLASSES)} = {1 / len(SHAPE_CLASSES):.1%} of all scenes)"
        )
    print(
        f"atlas built in {total:.1f} s ({len(result.cells)} cells, {args.steps} steps, {args.size} px, reducer {result.reducer})"
    )

    if args.compare:
        cells = result.directions[: args.compare]
        make = AA.OBJECTIVES[args.objective]
        objectives = [make(result.layer, d) for d in cells]
        settings = dict(steps=args.steps, size=args.size, progress=False)
        t0 = time.perf_counter()
        batched = render(model, objectives, batch_size=len(objectives), **settings)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        singles = [render(model, [o], batch_size=1, **settings).images for o in objectives]
        t_single = time.perf_counter() - t0
        assert batched.images.shape[0] == sum(s.shape[0] for s in singles)
        print(
            f"{len(objectives)} cells: one batched render {t_batched:.2f} s, one at a time {t_single:.2f} s, "
            f"ratio {t_single / t_batched:.2f}x"
        )

    if args.out is not None:
        page = result.save(args.out)
        save_png(args.out / f"mosaic_{result.layer}.png", result.mosaic())
        print(f"page: {page}")
        print("curve cells:", curve_check(model, result, args.out))


if __name__ == "__main__":
    main()
