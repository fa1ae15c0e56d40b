"""The grid operator's view of a feeder: hourly calendar and the technical-loss model.

Shared by the grid simulator (:mod:`meterhub.meter.grid`) and the utility's theft
detection (:mod:`meterhub.utility.theft`), so it lives in the model layer
(docs/architecture.md, "Layers"). Losses are physical: a fixed core (no-load) loss of
the transformer plus resistive (copper) losses in the square of the load,
``L_h = core + k * P_h^2`` (P in Wh per hour).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

__all__ = ["HourCalendar", "LossModel", "hour_calendar", "nominal_losses"]


@dataclass(frozen=True)
class LossModel:
    """Technical losses per hour: ``core_wh + resistive * load_wh**2``."""

    core_wh: float
    resistive: float  # 1/Wh

    def loss(self, load_wh: np.ndarray) -> np.ndarray:
        return self.core_wh + self.resistive * np.square(load_wh)


def nominal_losses(n_customers: int, mean_load_wh: float) -> LossModel:
    """Nameplate losses for a feeder: a transformer sized ~2 kVA per customer with a
    no-load loss of 40 W + 6 W per customer, and cable losses of 4% at a peak load
    of three times the mean."""
    peak = 3.0 * max(mean_load_wh, 1.0)
    return LossModel(40.0 + 6.0 * n_customers, 0.04 / peak)


@dataclass(frozen=True)
class HourCalendar:
    """Per hour of the simulation: its day index and local hour of day."""

    day: np.ndarray
    local_hour: np.ndarray
    day_slices: tuple[slice, ...]


def hour_calendar(starts: Sequence[datetime], tz: str) -> HourCalendar:
    """Day index and local hour for hourly UTC ``starts`` (days follow on; DST aware)."""
    zone = ZoneInfo(tz)
    local = [s.astimezone(zone) for s in starts]
    first = local[0].date()
    day = np.array([(t.date() - first).days for t in local])
    hours = np.array([t.hour for t in local])
    slices = []
    k = 0
    for d in range(int(day[-1]) + 1 if len(day) else 0):
        n = int(np.count_nonzero(day == d))
        slices.append(slice(k, k + n))
        k += n
    return HourCalendar(day, hours, tuple(slices))
