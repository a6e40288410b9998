"""The one timing helper the benchmarks share: wall and process-CPU seconds per run of a callable.

CUDA work is asynchronous, so with a CUDA ``device`` the device is synchronised before the clock
starts and before it stops. Run benchmarks with ``OMP_NUM_THREADS`` set on a shared machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["Timing", "timed"]


@dataclass
class Timing:
    """Seconds of each timed run (warm-up runs excluded) and the last run's result."""

    result: object = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.walls)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def best_cpu(self) -> float:
        return min(self.cpus)

    @property
    def mean_cpu(self) -> float:
        return statistics.fmean(self.cpus)


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], object], repeats: int = 1, *, warmup: int = 0, device: torch.device | str | None = None
) -> Timing:
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed."""
    for _ in range(warmup):
        fn()
    timing = Timing()
    for _ in range(repeats):
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        timing.result = fn()
        _sync(device)
        timing.walls.append(time.perf_counter() - wall)
        timing.cpus.append(time.process_time() - cpu)
    return timing
