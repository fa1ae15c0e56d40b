"""The score statement costs the card the same elliptic-curve work whatever the readings
(docs/privacy.md, "Timing: what a recipient learns from how long the hub takes").

The grid operator asks for the statement and may time the answer. Before the fix the
applet committed to each hour with :func:`meterhub.crypto.pedersen.commit`, which skips the
generator multiplication of a zero hour, so two weeks of an empty house answered about
10 ms sooner (``benchmarks/bench_timing_leak.py``). Here the generator multiplications of
the whole release are counted for an empty house and a lived-in one.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import pytest
from coincurve import PublicKey

from helpers import History
from helpers import SettlementHub as Hub
from meterhub.applets.profiling import hourly_commitments
from meterhub.crypto import ecdsa
from meterhub.crypto.group import Q
from meterhub.crypto.pedersen import Opening, commit
from meterhub.hub.secure_element import PROFILING_APP_AID
from meterhub.meter.device import Meter
from meterhub.model.timebase import day_starts
from meterhub.tariffs.profiles import reference_profiles
from meterhub.utility.forecasting import ProfileScores
from meterhub.utility.verifier import MeterRegistration

START = date(2027, 3, 22)
DAYS = 2


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def _history(readings: list[list[int]]) -> History:
    meter = Meter("m-timing", ecdsa.generate_signing_key())
    recs = [meter.record_day(START + timedelta(days=k), r) for k, r in enumerate(readings)]
    reg = MeterRegistration("m-timing", meter.signing_key.public_key(), "Europe/Berlin", 15)
    return History(meter, reg, None, START, recs, readings, None)  # type: ignore[arg-type]


def _generator_muls_of_scores(tmp_path: Any, name: str, h: History, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ProfileScores]:
    hub = Hub(tmp_path / f"{name}.sqlite", h)
    try:
        profiles = reference_profiles(START, DAYS)
        mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
        for p in profiles:
            mb.push_series(p)
        hub.feed()
        mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
        body = b"\x20" + _day(START) + _day(hub.last) + ",".join(p.series.series_id for p in profiles).encode()
        count = [0]
        real = PublicKey.from_secret.__func__  # type: ignore[attr-defined]

        def from_secret(cls: Any, secret: bytes, context: Any = None) -> Any:
            count[0] += 1
            return real(cls, secret) if context is None else real(cls, secret, context)

        with monkeypatch.context() as mp:
            mp.setattr(PublicKey, "from_secret", classmethod(from_secret))
            raw = mb.request(body, "scores")
        return count[0], ProfileScores.from_json(raw)
    finally:
        hub.card.close()


def test_an_empty_house_costs_the_same_generator_multiplications(tmp_path, monkeypatch) -> None:
    rng = random.Random(4)
    sizes = [len(day_starts(START + timedelta(days=k), "Europe/Berlin", 15)) for k in range(DAYS)]
    lived = [[rng.randint(1, 900) for _ in range(n)] for n in sizes]
    empty = [[0] * n for n in sizes]
    n_lived, sc_lived = _generator_muls_of_scores(tmp_path, "lived", _history(lived), monkeypatch)
    n_empty, sc_empty = _generator_muls_of_scores(tmp_path, "empty", _history(empty), monkeypatch)
    assert sc_empty.energy_wh == 0 and sc_lived.energy_wh == sum(map(sum, lived))
    assert n_lived >= 24 * DAYS  # one per hour at least
    assert n_empty == n_lived


def test_hourly_commitments_are_the_pedersen_commitments() -> None:
    rng = random.Random(9)
    ops = [Opening(m, rng.randrange(Q)) for m in (0, 0, 1, 7, 3600, 0, 2**34 - 1)]
    assert hourly_commitments(ops) == [commit(o.m, o.r)[0] for o in ops]
