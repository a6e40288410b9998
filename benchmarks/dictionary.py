"""Sparse autoencoder on the shipped model's mixed3b: training time, alive features, FVU and L0, with and
without dead-feature resampling.

    OMP_NUM_THREADS=1 python benchmarks/dictionary.py                      # 640 features, 4000 steps
    OMP_NUM_THREADS=1 python benchmarks/dictionary.py --resample 0 3 --steps 800 --scenes 256

Trains on the atlas's example scenes (``atlas.analyses.EXAMPLE_SCENES`` of the shipped model's training
distribution, every position of mixed3b one vector) and measures the reconstruction again on 512
held-out scenes. Prints one line per ``--resample`` setting.
"""

from __future__ import annotations

import argparse
import time

import torch

from circuits_vision import models
from circuits_vision.analysis import dictionary
from circuits_vision.atlas import analyses, dictionary_units
from circuits_vision.stimuli.scenes import scene_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="mixed3b")
    parser.add_argument("--features", type=int, default=640)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--scenes", type=int, default=analyses.EXAMPLE_SCENES)
    parser.add_argument("--resample", type=int, nargs="+", default=[0, 3])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = models.load("shapes").eval()
    size = analyses.scene_size(model)
    started = time.perf_counter()
    acts = dictionary.activations(model, args.layer, scene_batches(args.scenes, analyses.EXAMPLE_SEED, size=size))
    heldout = dictionary.activations(
        model, args.layer, scene_batches(dictionary_units.HELDOUT_SCENES, dictionary_units.HELDOUT_SEED, size=size)
    )
    print(
        f"{args.layer}: {tuple(acts.shape)} training vectors in {time.perf_counter() - started:.1f} s; "
        f"{torch.get_num_threads()} thread(s)"
    )
    for rounds in args.resample:
        started, cpu = time.perf_counter(), time.process_time()
        found = dictionary.train(
            model, args.layer, acts, n_features=args.features, steps=args.steps, seed=args.seed, resample=rounds
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        check = dictionary.quality(found, heldout)
        print(
            f"resample={rounds}: {wall:.1f} s wall ({cpu:.1f} s CPU), alive {found.alive}/{found.n_features}, "
            f"FVU {found.fraction_unexplained:.4f} (held-out {check['fraction_unexplained']:.4f}), "
            f"L0 {found.l0:.2f} (held-out {check['l0']:.2f}); rounds {found.resampled}"
        )


if __name__ == "__main__":
    main()
