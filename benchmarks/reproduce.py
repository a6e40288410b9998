"""Wall and CPU time of a full ``reproduce`` run: the planted InceptionV1, plain random weights, the shipped model.

    PYTHONPATH=.:tests OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reproduce.py [--size 64] [--threads 1]

Prints, per model, the seconds to build it, the seconds of the whole run (nothing stored: every claim
measured) and each claim's own seconds and verdict, slowest first.
"""

from __future__ import annotations

import argparse
import time

import torch

import circuits_vision as cv


def run(name: str, build, size: int | None) -> None:
    started = time.perf_counter()
    model = build()
    built = time.perf_counter() - started
    cpu, wall = time.process_time(), time.perf_counter()
    report = cv.reproduce(model, size=size, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{name}: build {built:.1f} s, reproduce {wall:.1f} s wall / {cpu:.1f} s CPU, {len(report.results)} claims: "
        f"{report.counts()}"
    )
    for result in sorted(report.results, key=lambda r: -r.seconds):
        print(f"  {result.seconds:6.1f} s  {result.verdict:<14} {result.claim}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from planted_inceptionv1 import planted_inceptionv1  # tests/ on PYTHONPATH

    run("planted InceptionV1", lambda: planted_inceptionv1(args.size), args.size)
    run("random InceptionV1", lambda: cv.models.inceptionv1(generator=torch.Generator().manual_seed(0)), args.size)
    run("shipped shapes", lambda: cv.models.load("shapes"), None)


if __name__ == "__main__":
    main()
