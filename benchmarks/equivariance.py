"""All-pairs rotation search over InceptionV1 mixed3b (480 units), kernels = expanded weights from mixed3a.

    PYTHONPATH=. .venv/bin/python benchmarks/equivariance.py               # 16 and 72 angles, CPU (+ CUDA if present)
    PYTHONPATH=. .venv/bin/python benchmarks/equivariance.py --threads 1   # pin torch's thread count
    PYTHONPATH=. .venv/bin/python benchmarks/equivariance.py --shapes      # also: weights vs tuning agreement on "shapes"

Random weights (``circuits_vision.models.inceptionv1()``): the timing does not depend on the values.
Reported: seconds for the similarity tensor ``S [angles, 480, 480]`` (rotate every kernel, one matrix
product per angle) and for the whole detector (plus best angles, clustering, synchronisation), the best
of ``--repeats`` runs, and how many families the random weights gave at the default threshold.
"""

from __future__ import annotations

import argparse
import time

import torch

from circuits_vision.analysis import _equivariance_transforms as T
from circuits_vision.analysis import equivariance as eq
from circuits_vision.models import inceptionv1
from circuits_vision.weights import expanded_weights


def best_of(repeats: int, fn, sync=lambda: None) -> tuple[float, float]:
    """Best wall-clock seconds and best process CPU seconds (the latter is robust to a busy machine)."""
    walls, cpus = [], []
    for _ in range(repeats):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def run(kernels: torch.Tensor, steps: int, repeats: int) -> dict:
    device = kernels.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    params = torch.arange(steps, dtype=kernels.dtype, device=device) * (360.0 / steps)
    mask = T.disk_mask(kernels.shape[-1], kernels)
    sim_s = best_of(repeats, lambda: T.transform_similarity(kernels, params, T.rotate, mask=mask, period=360.0), sync)
    result = {}

    def full():
        result["report"] = eq.families_from_kernels(kernels, steps=steps)

    full_s = best_of(repeats, full, sync)
    report = result["report"]
    best = report.similarity.max(0).values
    best.fill_diagonal_(-1.0)
    return {"similarity_s": sim_s, "full_s": full_s, "families": len(report.families), "invariant": len(report.invariant),
            "max_pair": float(best.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 72])
    parser.add_argument("--shapes", action="store_true", help="also measure weights-vs-tuning agreement on 'shapes'")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = inceptionv1(generator=torch.Generator().manual_seed(0)).eval()
    start = time.perf_counter()
    kernels = expanded_weights(model, "mixed3a", "mixed3b")
    print(f"expanded weights mixed3a -> mixed3b {tuple(kernels.shape)}: {time.perf_counter() - start:.2f} s "
          f"(torch threads: {torch.get_num_threads()})")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        k = kernels.to(device)
        if device == "cuda":
            run(k, 4, 1)  # warm-up: CUDA context and kernels
        for steps in args.steps:
            r = run(k, steps, args.repeats)
            (sw, sc), (fw, fc) = r["similarity_s"], r["full_s"]
            print(f"{device:4s} {steps:3d} angles: similarity {sw:.3f} s wall ({sc:.3f} s CPU), full detector "
                  f"{fw:.3f} s wall ({fc:.3f} s CPU), {r['families']} families / {r['invariant']} invariant units at threshold "
                  f"{eq.ROTATION_THRESHOLD} (random weights; most similar pair {r['max_pair']:.2f})")
    if args.shapes:
        from circuits_vision import models

        shapes = models.load("shapes")
        agreement = eq.weights_vs_tuning(shapes, "mixed3b", source="mixed3a")
        print(f"shapes mixed3b: {len(agreement['detectors'])} curve detectors by tuning; weight-family Jaccard "
              f"{agreement['jaccard']:.2f}; pairwise relative-angle error median {agreement['pair_median_error_deg']:.1f} deg "
              f"(shuffled: {agreement['pair_null_median_deg']:.1f}); {agreement['strong_pairs']} pairs with kernel "
              f"similarity >= 0.5: median {agreement['strong_pair_median_error_deg']:.1f} deg")


if __name__ == "__main__":
    main()
