"""Red team: what a recipient learns from how long the hub takes to answer (docs/privacy.md,
"Timing: what a recipient learns from how long the hub takes").

A hostile recipient (the grid operator asking the profiling applet for its score statement,
the supplier asking the settlement applet for its statement) may time the card's answer.
The release itself tells it ``E``, ``S`` and the scores; the question is whether the time
tells it more: whether the house was empty for two weeks (many zero or constant hours),
how many hours were zero, high or low consumption, or the shape behind equal totals.

For each month shape below one demo hub is provisioned (the bench's own setup,
``bench_customer_month.make_customer``, without a meter: the host delivers plain openings
with fresh blindings), each release is asked for once through its security domain
(SCP03 mailbox, the real path), and then the card's computation of that answer (the
applet's ``_scores`` / ``_settle``, everything between the request and the answer except
the guard's bookkeeping and the transport, which do not look at the readings) is timed
``reps`` times per shape, the shapes in a fresh random order in every round and the heap
collected before every timed call (both would otherwise put a shape-independent pattern
on the figures: the first call after another release is slower, and the garbage
collector fires at the same place of a fixed loop). Two variants in the same run, alternated (before, after,
before, after, ...; inside each the shapes round-robin): **before** the fix (the prover's
``A`` over the readings by :func:`meterhub.crypto.group.msm`, commitments by
:func:`meterhub.crypto.pedersen.commit`; :func:`before_fix` puts them back) and **after**
(the code as it is). Reported per variant, shape and release: median CPU
(``process_time``) and wall with the interquartile range; per pair of shapes: the success
rate of a one-shot distinguisher (the recipient sees one answer per period: threshold
half-way between the two shapes' medians of one half of the runs, applied to single runs
of the other half, and the halves swapped; 50 % is guessing).

Also timed, for the breakdown: ``sumsquares.prove`` alone over the same hourly openings
(prover CPU), its commitment phase (``A`` and ``S'``, where the readings met the
multi-scalar multiplication before the fix) and the applet's hourly commitments.

Run: .venv/bin/python benchmarks/bench_timing_leak.py [reps] [shapes]   (reps default 15, >= 5;
shapes a comma-separated subset of :data:`SHAPES`, default all; "occupied" is always included)
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import date, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

from _bench import MIN_RUNS, header, row
from meterhub.applets import profiling
from meterhub.applets.profiling import ProfilingApplet, scores_context
from meterhub.applets.settlement import SettlementApplet
from meterhub.crypto import sumsquares
from meterhub.crypto.bulletproofs._tables import _h_table, _lincomb_fixed, generators
from meterhub.crypto.group import H, Q, base_mul, random_scalar
from meterhub.crypto.pedersen import Commitment, Opening, commit
from meterhub.demo.hubs import demo_tsm, series_hub
from meterhub.hub.secure_element import PROFILING_APP_AID, SETTLEMENT_APP_AID, ReadingsClient
from meterhub.model.timebase import day_starts
from meterhub.tariffs.price_index import demo_index_publisher_key, example_price_index, sign_series
from meterhub.tariffs.profiles import reference_profiles
from meterhub.utility.settlement import AppletMailbox, settlement_request

START = date(2027, 4, 1)
DAYS = 30
TZ = "Europe/Berlin"
LAST = START + timedelta(days=DAYS - 1)
AWAY = range(8, 22)  # two weeks away: days 8..21 of the month


def _occupied(rng: random.Random, n: int, scale: float = 1.0) -> list[int]:
    """A lived-in day: the bench's mix of zero, low and high quarter-hours."""
    return [int(rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) * scale) for _ in range(n)]


def month(shape: str, seed: int = 7) -> list[list[int]]:
    """15-minute readings (Wh) per day for one of the shapes a curious recipient tells apart."""
    rng = random.Random(seed)
    out = []
    for d in range(DAYS):
        n = len(day_starts(START + timedelta(days=d), TZ, 15))
        if shape == "occupied":
            out.append(_occupied(rng, n))
        elif shape == "away-zero":  # two weeks away, everything off: zero readings
            out.append([0] * n if d in AWAY else _occupied(rng, n))
        elif shape == "away-standby":  # two weeks away, fridge and router: near-constant standby
            out.append([rng.choice([11, 12, 12, 13]) for _ in range(n)] if d in AWAY else _occupied(rng, n))
        elif shape == "low":
            out.append(_occupied(rng, n, 0.1))
        elif shape == "high":
            out.append(_occupied(rng, n, 4.0))
        elif shape == "flat":  # the occupied month's total, spread evenly (same E, another shape)
            out.append([])
        else:
            raise ValueError(shape)
    if shape == "flat":
        total = sum(map(sum, month("occupied", seed)))
        per = total // (96 * DAYS)
        out = [[per] * len(day_starts(START + timedelta(days=d), TZ, 15)) for d in range(DAYS)]
    return out


SHAPES = ("occupied", "away-zero", "away-standby", "low", "high", "flat")


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


class Hub:
    """One provisioned demo hub holding one month of a shape, both applets paired and fed."""

    def __init__(self, tmp: Path, shape: str, index: Any, profiles: list[Any]) -> None:
        self.shape = shape
        self.days = month(shape)
        self.openings = [[Opening(m, random_scalar()) for m in day] for day in self.days]
        card = series_hub(tmp / f"{shape}.sqlite", index, profiles, f"m-{shape}", TZ)
        for aid in (SETTLEMENT_APP_AID, PROFILING_APP_AID):
            rc = ReadingsClient(card.transmit, aid)
            rc.select()
            first = 0
            for d, ops in enumerate(self.openings):
                rc.put_openings(START + timedelta(days=d), first, ops)
                first += len(ops)
        self.card = card
        self.scores_body = _day(START) + _day(LAST) + ",".join(p.series.series_id for p in profiles).encode()
        self.settle_body = settlement_request(START, LAST, index.series.series_id, 1)[1:]
        # The real path once (through the guard and SCP03); the caller records the applet instances.
        self.applets: dict[str, Any] = {}
        smb = AppletMailbox(demo_tsm(card, "supplier").open(), SETTLEMENT_APP_AID)
        t0 = time.perf_counter()
        smb.request(settlement_request(START, LAST, index.series.series_id, 1), "settlement")
        self.first_settlement = time.perf_counter() - t0
        gmb = AppletMailbox(demo_tsm(card, "grid-operator").open(), PROFILING_APP_AID)
        t0 = time.perf_counter()
        gmb.request(b"\x20" + self.scores_body, "scores")
        self.first_scores = time.perf_counter() - t0
        flat = [o for ops in self.openings for o in ops]
        self.hourly = [Opening(sum(o.m for o in flat[k : k + 4]), sum(o.r for o in flat[k : k + 4]) % Q)
                       for k in range(0, len(flat), 4)]
        self.hourly_c = [commit(o.m, o.r)[0] for o in self.hourly]
        self.ctx = scores_context(f"m-{shape}", START.isoformat(), LAST.isoformat(), 60)

    def scores(self) -> None:
        self.applets["profiling"]._scores(self.scores_body)

    def settlement(self) -> None:
        self.applets["settlement"]._settle(self.settle_body)

    def prove(self) -> None:
        sumsquares.prove(self.hourly_c, self.hourly, self.ctx)

    def vectors(self) -> None:
        """The prover's commitment phase alone: ``A`` and ``S'`` (``sumsquares._commit_vectors``)
        over this month's hourly values, padded to 1,024, with fresh masks."""
        nn = 1024
        m = [o.m for o in self.hourly] + [0] * (nn - len(self.hourly))
        sumsquares._commit_vectors(m, [random_scalar() for _ in range(nn)], [random_scalar() for _ in range(nn)],
                                   random_scalar(), random_scalar(), nn)

    def commitments(self) -> None:
        profiling.hourly_commitments(self.hourly)


@contextmanager
def before_fix() -> Iterator[None]:
    """The prover as it was before the fix (git 28b0a78^), for a same-run baseline:
    ``A`` and ``S'`` as multi-scalar multiplications over the readings and the masks
    (:func:`meterhub.crypto.group.msm`: equal scalars bucketed, zeros dropped, direct
    method for few distinct values), and every commitment by
    :func:`meterhub.crypto.pedersen.commit` (no generator multiplication for a zero)."""
    vectors, commits = sumsquares._commit_vectors, (sumsquares.commit, profiling.commit)

    def old_commit(m: int, r: int | None = None) -> tuple[Commitment, Opening]:
        # The formula before: no generator multiplication for m = 0, variable-time r*H.
        r = random_scalar() if r is None else r % Q
        return Commitment(base_mul(m) + H * r), Opening(m, r)

    def direct(m: list[int], s_l: list[int], s_r: list[int], alpha: int, rho: int, nn: int) -> tuple[Any, Any]:
        gv, hv = generators(nn)
        th = _h_table()
        return _lincomb_fixed([(alpha, th)], m + m, gv + hv), _lincomb_fixed([(rho, th)], s_l + s_r, gv + hv)

    sumsquares._commit_vectors = direct  # type: ignore[assignment]
    sumsquares.commit = profiling.commit = old_commit  # type: ignore[assignment]
    try:
        yield
    finally:
        sumsquares._commit_vectors = vectors  # type: ignore[assignment]
        sumsquares.commit, profiling.commit = commits  # type: ignore[assignment]


#: The applet instances of the hub being built, recorded by :func:`_capturing` on its real request.
_SEEN: dict[str, Any] = {}


def _capturing() -> Callable[[], None]:
    """Wrap the applets' compute methods so that the instances answering the real requests
    are recorded in :data:`_SEEN`; returns the undo."""
    orig_s, orig_p = SettlementApplet._settle, ProfilingApplet._scores

    def settle(self: SettlementApplet, body: bytes) -> bytes:
        _SEEN["settlement"] = self
        return orig_s(self, body)

    def scores(self: ProfilingApplet, body: bytes) -> Any:
        _SEEN["profiling"] = self
        return orig_p(self, body)

    SettlementApplet._settle = settle  # type: ignore[method-assign]
    ProfilingApplet._scores = scores  # type: ignore[method-assign]

    def undo() -> None:
        SettlementApplet._settle = orig_s  # type: ignore[method-assign]
        ProfilingApplet._scores = orig_p  # type: ignore[method-assign]

    return undo


def _iqr(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def one_shot_rate(a: list[float], b: list[float]) -> float:
    """Success rate of telling single runs of ``a`` from ``b`` by a threshold half-way
    between the medians of the other half of the runs (two-fold, both directions)."""
    hits = total = 0
    for train, test in ((0, 1), (1, 0)):
        ma, mb = statistics.median(a[train::2]), statistics.median(b[train::2])
        thr = (ma + mb) / 2
        a_low = ma < mb
        for x in a[test::2]:
            hits += (x < thr) == a_low
            total += 1
        for x in b[test::2]:
            hits += (x >= thr) == a_low
            total += 1
    return hits / total


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    shapes = ["occupied", *(s for s in sys.argv[2].split(",") if s != "occupied")] if len(sys.argv) > 2 else SHAPES
    if reps < MIN_RUNS:
        raise SystemExit(f"need at least {MIN_RUNS} runs")
    header(f"timing of the hub's releases by month shape: {DAYS} days, 2,880 readings, {reps} runs per shape, "
           "shapes alternated")
    index = sign_series(example_price_index(START, DAYS), demo_index_publisher_key())
    profiles = reference_profiles(START, DAYS)
    with tempfile.TemporaryDirectory() as tmp:
        hubs: dict[str, Hub] = {}
        undo = _capturing()
        try:
            for shape in shapes:
                _SEEN.clear()
                hubs[shape] = Hub(Path(tmp), shape, index, profiles)
                hubs[shape].applets = dict(_SEEN)
        finally:
            undo()
        for shape, hub in hubs.items():
            days = hub.days
            zero_h = sum(1 for o in hub.hourly if o.m == 0)
            row(f"{shape}: E {sum(map(sum, days))} Wh, zero hours {zero_h}/720, distinct hours "
                f"{len({o.m for o in hub.hourly})}",
                f"{hub.first_scores * 1e3:.0f} ms", "scores, end to end, first ask (single run)")
        releases = {"scores": Hub.scores, "sum-of-squares prove": Hub.prove,
                    "prove: commitment phase (A, S')": Hub.vectors,
                    "hourly commitments": Hub.commitments, "settlement": Hub.settlement}
        variants: dict[str, Callable[[], Any]] = {"before": before_fix, "after": nullcontext}
        keys = [(v, r, s) for v in variants for r in releases for s in hubs]
        cpu: dict[tuple[str, str, str], list[float]] = {k: [] for k in keys}
        wall: dict[tuple[str, str, str], list[float]] = {k: [] for k in keys}
        for var in variants.values():  # warm-up, untimed
            with var():
                for fn in releases.values():
                    for hub in hubs.values():
                        fn(hub)
        order = random.Random(1)
        for _ in range(reps):  # before, after, before, after, ...; inside each, the shapes alternate
            for vname, var in variants.items():
                with var():
                    for rel, fn in releases.items():
                        # A fresh order of the shapes in every round (the first call after another
                        # release runs slower) and a collected heap before every call (the garbage
                        # collector fires after a count of allocations, so at a fixed place in a fixed
                        # loop it would always hit the same shape).
                        for shape in order.sample(list(hubs), len(hubs)):
                            hub = hubs[shape]
                            gc.collect()
                            c0, t0 = time.process_time(), time.perf_counter()
                            fn(hub)
                            t1, c1 = time.perf_counter(), time.process_time()
                            cpu[vname, rel, shape].append(c1 - c0)
                            wall[vname, rel, shape].append(t1 - t0)
        for rel in releases:
            for vname in variants:
                print(f"-- {rel}, {vname} the fix: CPU median [IQR], wall median (median of {reps} runs each)")
                for shape in hubs:
                    xs = cpu[vname, rel, shape]
                    lo, hi = _iqr(xs)
                    row(f"   {shape}", f"{statistics.median(xs) * 1e3:.2f} ms",
                        f"[{lo * 1e3:.2f}, {hi * 1e3:.2f}] wall {statistics.median(wall[vname, rel, shape]) * 1e3:.2f} ms")
                rates = {(a, b): one_shot_rate(cpu[vname, rel, a], cpu[vname, rel, b]) for a, b in combinations(hubs, 2)}
                base = statistics.median(cpu[vname, rel, "occupied"])
                for (a, b), rate in rates.items():
                    if a == "occupied":
                        ratio = statistics.median(cpu[vname, rel, b]) / base
                        row(f"   one-shot distinguisher occupied vs {b}", f"{rate * 100:.0f} %",
                            f"median ratio {ratio:.3f} to occupied")
                worst = max(rates.items(), key=lambda kv: kv[1])
                row("   best pair for the recipient", f"{worst[1] * 100:.0f} %", f"{worst[0][0]} vs {worst[0][1]}")
            b_all = [x for s in hubs for x in cpu["before", rel, s]]
            a_all = [x for s in hubs for x in cpu["after", rel, s]]
            row(f"   {rel}: CPU after / before the fix, all shapes", f"{statistics.median(a_all) / statistics.median(b_all):.3f}",
                f"median {statistics.median(a_all) * 1e3:.2f} vs {statistics.median(b_all) * 1e3:.2f} ms, "
                f"{len(a_all)} runs each")
        for hub in hubs.values():
            hub.card.close()
    dp_sampler(reps)


def dp_sampler(reps: int) -> None:
    """The DP forecast's Laplace draw (OpenDP, :class:`meterhub.model.dp.OpenDPNoise`) at the
    default policy's energy scale: does its time follow the size of the noise, which the
    recipient could subtract from the noisy energy it receives?"""
    from meterhub.model.dp import OpenDPNoise

    noise = OpenDPNoise()
    scale, sens, eps = 10_000.0, 5_000, 0.5  # default policy: clip 5,000 Wh, 1-hour unit, epsilon 1 (half for E)
    draws: list[tuple[int, float]] = []
    for _ in range(200 * reps):
        c0 = time.perf_counter()
        v = noise.laplace_int(500_000, scale, sens, eps)
        draws.append((abs(v - 500_000), time.perf_counter() - c0))
    draws.sort()
    q = len(draws) // 4
    print(f"-- DP Laplace draw (OpenDP), {len(draws)} draws sorted by |noise| into quartiles: median time")
    parts = [[t for _, t in draws[k * q : (k + 1) * q]] for k in range(4)]
    for k, part in enumerate(parts):
        row(f"   quartile {k + 1}: median |noise| {statistics.median(a for a, _ in draws[k * q:(k + 1) * q]):.0f} Wh",
            f"{statistics.median(part) * 1e6:.1f} us")
    row("   one-shot distinguisher lowest vs highest quartile", f"{one_shot_rate(parts[0], parts[3]) * 100:.0f} %")


if __name__ == "__main__":
    main()
