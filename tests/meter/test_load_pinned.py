"""The load simulator's output, pinned byte for byte (SHA-256) for fixed seeds.

The simulator feeds every figure of the demo (readings, bills, settlement, fraud
calibration); its speed-ups (e.g. the occupancy chains' transition terms computed for
all slots at once) must not change a single float. The digests were taken from the
simulator before those speed-ups."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np

from meterhub.meter.grid import simulate_grid
from meterhub.meter.load import simulate_neighbourhood

START = dt.date(2027, 3, 26)  # the spring daylight-saving day (2027-03-28) is inside


def _trace_digest(traces) -> str:
    h = hashlib.sha256(b"meterhub/test/load-pin/v1")
    for t in traces:
        h.update(repr((t.household_id, t.profile, t.annual_kwh, t.base_load_wh, sorted(t.params.items()),
                       t.readings_wh, t.occupied, t.asleep, t.appliance_events)).encode())
        for k in sorted(t.truth):
            h.update(k.encode() + np.ascontiguousarray(t.truth[k], dtype=np.float64).tobytes())
    return h.hexdigest()


def test_neighbourhood_is_bit_for_bit_what_it_was():
    traces = simulate_neighbourhood(4, START, 4, interval_minutes=15, seed=3, business_share=0.3)
    assert _trace_digest(traces) == PINNED_NEIGHBOURHOOD


def test_grid_is_bit_for_bit_what_it_was():
    feeders, _ = simulate_grid(2, START, 3, seed=5, pool=6, size_range=(3, 5))
    h = hashlib.sha256(b"meterhub/test/grid-pin/v1")
    for f in feeders:
        for a in (f.true_wh, f.recorded_wh, f.feeder_wh):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    assert h.hexdigest() == PINNED_GRID


PINNED_NEIGHBOURHOOD = "d4e2b01c81fdee34bdda7f930c377c89121541c14ceae5bf77274bc2f10e5157"
PINNED_GRID = "3450b68e6fa2f52be5cbfb316d0081db90084d7227bac1387e6d35c4645dfa06"
