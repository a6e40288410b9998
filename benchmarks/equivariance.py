"""Calibrated family detection (with its nulls) against the same detection without them.

    PYTHONPATH=. .venv/bin/python benchmarks/equivariance.py               # InceptionV1 mixed3b + the shipped model
    PYTHONPATH=. .venv/bin/python benchmarks/equivariance.py --threads 1   # pin torch's thread count
    PYTHONPATH=. .venv/bin/python benchmarks/equivariance.py --skip-inceptionv1

For InceptionV1 with random weights (``circuits_vision.models.inceptionv1(generator=...)``) mixed3b from
mixed3a (480 units) and for the shipped ``shapes`` model's mixed3b from mixed3a: on the same expanded
weights, seconds for the uncalibrated detector (``threshold=0.8, null=None``: the similarity tensor,
clustering, synchronisation) and for the calibrated default (plus the scrambled-kernel null, the pair
p/q-values, the invariance pool and the shuffled-angle test), their ratio (the bound: <= 3x
the uncalibrated cost for the nulls, i.e. calibrated / uncalibrated <= 4), and what the default
``report`` (with kernels of units without extent taken from earlier layers) reports.

The tuning view of the shipped model is timed the same way: two uncalibrated searches (pairs at
``threshold=0.8``: on one-radius tuning curves, the cheapest, and on the default's own response surfaces at
4 radii and their tangent line, the same statistic without its null) against the default
``report(method="tuning")`` (the surfaces and, as their null, the surfaces of the same units in weight-shuffled
copies of the model, tested at q < 0.05), and against ``tuning_null="layer"`` (only the weights between mixed3a
and mixed3b shuffled). The null costs one forward sweep of the stimuli per copy, and copies are drawn until 4x
as many null units as tuned units are tuned (at least 256).
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import timed

from circuits_vision.analysis import equivariance as eq
from circuits_vision.hooks import layer_shape
from circuits_vision.weights import expanded_weights


def best_of(fn, repeats: int):
    """(result, best wall seconds, best process CPU seconds) over ``repeats`` runs."""
    timing = timed(fn, repeats)
    return timing.result, timing.best, timing.best_cpu


def measure(name: str, model, layer: str, source: str, repeats: int) -> None:
    start = time.perf_counter()
    kernels = expanded_weights(model, source, layer)
    print(f"{name}: expanded weights {source} -> {layer} {tuple(kernels.shape)} in {time.perf_counter() - start:.1f} s")
    plain, plain_wall, plain_cpu = best_of(lambda: eq.families_from_kernels(kernels, threshold=0.8, null=None), repeats)
    calibrated, cal_wall, cal_cpu = best_of(lambda: eq.families_from_kernels(kernels), repeats)
    print(
        f"  uncalibrated (threshold 0.8, no null): {plain_wall:.2f} s wall, {plain_cpu:.2f} s CPU, "
        f"{len(plain.families)} families"
    )
    print(
        f"  calibrated (FDR 0.05, nulls):          {cal_wall:.2f} s wall, {cal_cpu:.2f} s CPU, "
        f"{len(calibrated.families)} families, {len(calibrated.invariant)} invariant; "
        f"null {calibrated.null.pairs} pairs {calibrated.null.mean:.3f} +- {calibrated.null.std:.3f}"
    )
    print(
        f"  calibrated / uncalibrated: {cal_wall / plain_wall:.2f}x wall, {cal_cpu / plain_cpu:.2f}x CPU "
        f"(nulls cost {(cal_cpu - plain_cpu) / plain_cpu:.2f}x the uncalibrated CPU time)"
    )
    found, wall, _ = best_of(lambda: eq.report(model, layer, source=source), 1)
    print(f"  report({layer!r}, source={source!r}) at the defaults, {wall:.1f} s:")
    print("    " + str(found).replace("\n", "\n    "))


def measure_tuning(name: str, model, layer: str, repeats: int) -> None:
    units = list(range(layer_shape(model, layer)[0]))
    plain, plain_wall, plain_cpu = best_of(
        lambda: eq.report(model, layer, method="tuning", tuning_null="phase", threshold=0.8), repeats
    )

    def same_surfaces():
        surfaces = eq.orientation_surfaces(model, layer, units)
        return eq.families_from_tuning(surfaces, threshold=0.8, units=units)

    surfaces, surf_wall, surf_cpu = best_of(same_surfaces, repeats)
    found, cal_wall, cal_cpu = best_of(lambda: eq.report(model, layer, method="tuning"), repeats)
    layered, lay_wall, lay_cpu = best_of(lambda: eq.report(model, layer, method="tuning", tuning_null="layer"), repeats)
    print(f"{name}: tuning view of {layer}")
    print(
        f"  uncalibrated (one-radius curves, threshold 0.8): {plain_wall:.2f} s wall, {plain_cpu:.2f} s CPU, "
        f"{len(plain.families)} families"
    )
    print(
        f"  uncalibrated (arc + line surfaces, thresh. 0.8): {surf_wall:.2f} s wall, {surf_cpu:.2f} s CPU, "
        f"{len(surfaces.families)} families"
    )
    print(
        f"  calibrated (FDR 0.05, network null):            {cal_wall:.2f} s wall, {cal_cpu:.2f} s CPU, "
        f"{len(found.families)} families; null: {found.settings.null_units} tuned units of weight-shuffled copies"
    )
    print(
        f"  calibrated (FDR 0.05, layer null):              {lay_wall:.2f} s wall, {lay_cpu:.2f} s CPU, "
        f"{len(layered.families)} families; null: {layered.settings.null_units} tuned units"
    )
    for label, wall, cpu in (("one-radius", plain_wall, plain_cpu), ("same surfaces", surf_wall, surf_cpu)):
        print(
            f"  network null, calibrated / uncalibrated ({label}): {cal_wall / wall:.2f}x wall, {cal_cpu / cpu:.2f}x "
            f"CPU (nulls cost {(cal_cpu - cpu) / cpu:.2f}x the uncalibrated CPU time)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-inceptionv1", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    from circuits_vision import models

    if not args.skip_inceptionv1:
        model = models.inceptionv1(generator=torch.Generator().manual_seed(0)).eval()
        measure("InceptionV1 (random weights)", model, "mixed3b", "mixed3a", args.repeats)
    shipped = models.load("shapes")
    measure("shapes (shipped)", shipped, "mixed3b", "mixed3a", args.repeats)
    measure_tuning("shapes (shipped)", shipped, "mixed3b", args.repeats)


if __name__ == "__main__":
    main()
