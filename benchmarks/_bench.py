"""Small helpers shared by the benchmarks: one-core pinning, alternating timed runs,
medians with their run count, a report line.

Honest timing on a shared, noisy machine: variants that are compared are timed
alternately (A, B, A, B, ...), so a burst of load from elsewhere hits all of them
alike; each figure is the median of at least ``MIN_RUNS`` runs and says how many;
a figure from one run is labelled as such (:func:`single_run`). Each run also
records the process's CPU time (``time.process_time``): on a machine shared with
other work it leaves out the time this process waited for a core, so it is the
steadier figure there; on an idle core the two agree for these single-threaded
benchmarks.

Every timed call starts with meterhub's verification caches empty
(:func:`cold_caches`): the utility's verifiers remember verified signatures and
parsed points across calls (``meterhub.utility.verifier``), so without this the
second run of "verify a bill from the uploaded points" would neither decode a point
nor check a signature, and time something other than what its label says. A
benchmark that wants warm caches passes ``cold=False`` and says so in its label.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: The fewest runs a reported median may rest on.
MIN_RUNS = 5


def pin_one_core() -> str:
    """Run on one core (the targets are per core); returns a note for the report."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def cold_caches() -> None:
    """Empty the caches meterhub's verifiers keep across calls, if they are loaded
    (the harness does not import meterhub itself)."""
    verifier = sys.modules.get("meterhub.utility.verifier")
    if verifier is not None:
        verifier.clear_shared_caches()


@dataclass(frozen=True)
class Timing:
    """Per-call wall times and CPU times in seconds, one each per run."""

    times: tuple[float, ...]
    cpu_times: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)

    @property
    def runs(self) -> int:
        return len(self.times)

    @property
    def note(self) -> str:
        return "single run" if self.runs == 1 else f"median of {self.runs} runs"

    def ms(self) -> str:
        return f"{self.median * 1e3:.2f} ms"

    def cpu_ms(self) -> str:
        return f"cpu {self.cpu_median * 1e3:.2f} ms"

    def us(self) -> str:
        return f"{self.median * 1e6:.1f} us"


def alternate(
    variants: Mapping[str, Callable[[], object]],
    *,
    runs: int = MIN_RUNS,
    number: int = 1,
    warmup: int = 1,
    cold: bool = True,
) -> dict[str, Timing]:
    """Time ``variants`` round-robin: after ``warmup`` untimed rounds, ``runs`` rounds of
    A, B, C, A, B, C, ...; in each round every variant is called ``number`` times in a
    row and its run time is the mean per call. With ``cold`` (the default) every call
    starts with empty verification caches (:func:`cold_caches`, not timed). Returns
    each variant's :class:`Timing`."""
    if runs < MIN_RUNS:
        raise ValueError(f"a median needs at least {MIN_RUNS} runs, not {runs}")
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, fn in variants.items():
            wall = proc = 0.0
            for _ in range(number):
                if cold:
                    cold_caches()
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                t1, c1 = time.perf_counter(), time.process_time()
                wall += t1 - t0
                proc += c1 - c0
            times[name].append(wall / number)
            cpu[name].append(proc / number)
    return {name: Timing(tuple(times[name]), tuple(cpu[name])) for name in variants}


def single_run(fn: Callable[[], object]) -> Timing:
    """One timed call, for work too slow to repeat; reported as "single run"."""
    cold_caches()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    t1, c1 = time.perf_counter(), time.process_time()
    return Timing((t1 - t0,), (c1 - c0,))


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, {pin_one_core()}")


def row(label: str, value: str, note: str = "") -> None:
    print(f"   {label:<66} {value:>10}  {note}")
