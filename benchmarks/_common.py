"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["DATA", "median_time"]

#: The shared corpus: ``../shared/data`` beside the checkout, or ``$MOLDB_BENCH_DATA``.
DATA = Path(os.environ.get("MOLDB_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def median_time(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``fn`` over ``reps`` calls, after one discarded warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
