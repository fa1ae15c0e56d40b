"""Small helpers shared by the benchmarks: one-core pinning, medians, a report line."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def pin_one_core() -> str:
    """Run on one core (the targets are per core); returns a note for the report."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def median_time(fn: Callable[[], object], *, repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, {pin_one_core()}")


def row(label: str, value: str, note: str = "") -> None:
    print(f"   {label:<58} {value:>14}  {note}")
