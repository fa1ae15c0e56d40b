"""Flexible household loads answering demand-response events, with ground truth.

Works on top of any load model: it takes a household's consumption series without
events (the counterfactual, integer Wh per interval) and the event windows, and
returns the series the meter measures when the household responds. Per household
(seeded by its id) it draws which flexible loads it has, each with a power, an
energy limit per event (comfort) and a rebound:

=================  ======================================================  =================
load               during the event                                        after it
=================  ======================================================  =================
heat pump /        sheds up to its power for at most ``max_shed_minutes``  catches up, +10 %
storage heating    (indoor temperature limit), then runs again             losses, over 2 h
water heater       sheds until the tank's spare energy is used             reheats over 1 h
EV charging        pauses charging (limit: the energy still needed by      resumes at full
                   morning)                                                power
washing machine /  a cycle due in the window starts after it               whole cycle moved
dishwasher
=================  ======================================================  =================

A load can only shed what the household actually drew in that interval (the
counterfactual minus its always-on part), so the response never exceeds the
consumption. Energy is conserved per event apart from the heat losses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FlexibleLoad", "Response", "household_loads", "respond"]


@dataclass(frozen=True)
class FlexibleLoad:
    name: str
    power_w: float  # the most it draws (and can shed) in any interval
    max_shed_wh: float  # comfort limit per event
    max_shed_minutes: int  # it must run again after this
    rebound_factor: float  # energy made up afterwards per Wh shed
    rebound_minutes: int  # spread over this long after the event


@dataclass(frozen=True)
class Response:
    readings_wh: list[int]  # what the meter measures
    counterfactual_wh: list[int]  # the same household without the events (ground truth)

    @property
    def reduction_wh(self) -> int:
        return sum(self.counterfactual_wh) - sum(self.readings_wh)


def _rng(household_id: str, seed: int) -> np.random.Generator:
    h = hashlib.sha256(b"meterhub/v1/flexibility\0" + seed.to_bytes(8, "big") + household_id.encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "big"))


def household_loads(household_id: str, seed: int) -> list[FlexibleLoad]:
    """The flexible loads one household has (drawn once, seeded by its id)."""
    rng = _rng(household_id, seed)
    loads: list[FlexibleLoad] = []
    if rng.random() < 0.45:
        loads.append(FlexibleLoad("heat pump", float(rng.uniform(1500, 3000)), 4000.0, 90, 1.1, 120))
    if rng.random() < 0.6:
        loads.append(FlexibleLoad("water heater", float(rng.uniform(1500, 2500)), float(rng.uniform(800, 2000)),
                                  240, 1.05, 60))
    if rng.random() < 0.3:
        loads.append(FlexibleLoad("EV charging", float(rng.choice([3700.0, 7400.0, 11000.0])), 15000.0, 240, 1.0, 120))
    if rng.random() < 0.8:
        loads.append(FlexibleLoad("washing machine", 2000.0, 1000.0, 240, 1.0, 90))
    if rng.random() < 0.6:
        loads.append(FlexibleLoad("dishwasher", 1800.0, 1100.0, 240, 1.0, 90))
    return loads


def respond(
    counterfactual_wh: Sequence[int],
    windows: Sequence[tuple[int, int]],
    interval_minutes: int,
    loads: Sequence[FlexibleLoad],
    *,
    base_wh: float = 0.0,
    compliance: float = 1.0,
) -> Response:
    """The measured series when the household answers the events ``windows`` (pairs of
    interval positions ``[first, end)`` in the series). ``compliance`` (0..1) scales how
    much of each load's possible shed the household actually lets go; ``base_wh`` is the
    always-on energy per interval no flexible load can touch."""
    cf = np.asarray(counterfactual_wh, dtype=float)
    out = cf.copy()
    for first, end in sorted(windows):
        if not 0 <= first < end <= len(cf):
            raise ValueError("event window outside the series")
        spare = np.maximum(out[first:end] - base_wh, 0.0)  # what flexible loads may be drawing
        shed = np.zeros(end - first)
        rebound = np.zeros(len(cf))
        for load in loads:
            cap = load.power_w * interval_minutes / 60.0
            budget = load.max_shed_wh * compliance
            n_run = min(end - first, max(1, load.max_shed_minutes // interval_minutes))
            taken = 0.0
            for k in range(n_run):
                s = min(cap * compliance, spare[k] - shed[k], budget - taken)
                if s <= 0:
                    continue
                shed[k] += s
                taken += s
            if taken > 0:
                n_rb = max(1, load.rebound_minutes // interval_minutes)
                w = np.linspace(2.0, 1.0, n_rb)  # most right after the event
                stop = min(len(cf), end + n_rb)
                rebound[end:stop] += taken * load.rebound_factor * w[: stop - end] / w.sum()
        out[first:end] -= shed
        out += rebound
    readings = np.floor(out + 0.5).astype(np.int64)
    readings = np.maximum(readings, 0)
    return Response([int(x) for x in readings], [int(x) for x in counterfactual_wh])
