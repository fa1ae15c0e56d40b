"""Signed reference load profiles for profile matching (issue 6).

A reference profile is a signed series of kind ``load-profile``
(:mod:`meterhub.tariffs.price_index`): one non-negative integer weight per hour.
The BDEW standard load profiles (VDEW "Repräsentative VDEW-Lastprofile", 1999;
H0 households, G0..G6 trade, L0..L2 agriculture) come from ``demandlib`` through
:func:`meterhub.meter.load.bdew_profile_wh`: the weight of an hour is the energy
(in mWh) that a customer using 1 MWh a year draws in that local hour, public
holidays as Sundays and daylight-saving days with 23 or 25 hours. The utility
may define further shapes (:func:`utility_profile`). The forecasting party
signs them and pushes them to the profiling applet, which refuses unsigned,
expired or older-version profiles.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ..crypto import ecdsa
from ..model.demo_keys import PROFILE_PUBLISHER, demo_signing_key
from .price_index import KIND_LOAD_PROFILE, Series, SignedSeries, sign_series

__all__ = [
    "BDEW_PROFILES",
    "PROFILE_UNIT",
    "bdew_profile",
    "demo_profile_key",
    "reference_profiles",
    "utility_profile",
]

#: The BDEW SLPs used for matching (h0_dyn is H0 with a dynamisation factor, left out).
BDEW_PROFILES: tuple[str, ...] = ("h0", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2")
PROFILE_UNIT = "mWh-per-MWh-year"
_SCALE = 1_000_000  # weights are mWh per 1 MWh/year; scale converts to kWh per kWh/year


def _window(start: date, days: int, tz: str) -> datetime:
    return datetime.combine(start, datetime.min.time(), ZoneInfo(tz)).astimezone(UTC)


def bdew_profile(
    name: str, start: date, days: int, *, tz: str = "Europe/Berlin", version: int = 1,
    expires: date | None = None,
) -> Series:
    """The BDEW profile ``name`` as hourly weights for local days ``start .. start+days-1``."""
    from .slp import bdew_profile_wh  # numpy and demandlib load only when a profile is built

    wh = bdew_profile_wh(start, days, annual_kwh=1000.0, profile=name, interval_minutes=60, tz=tz)
    return Series(
        kind=KIND_LOAD_PROFILE,
        series_id=f"bdew-{name}",
        version=version,
        publisher="demo-reference-profiles",
        start=_window(start, days, tz),
        interval_minutes=60,
        unit=PROFILE_UNIT,
        scale=_SCALE,
        expires=expires or (start + timedelta(days=days + 62)),
        values=tuple(max(0, round(w * 1000)) for w in wh),
    )


def utility_profile(
    series_id: str, start: date, days: int, *, tz: str = "Europe/Berlin", version: int = 1,
    expires: date | None = None,
) -> Series:
    """A shape the utility defines: ``u-night`` (night storage heating / EV charging,
    22:00-06:00), normalised like the BDEW weights to 1 MWh a year."""
    zone = ZoneInfo(tz)
    t0 = _window(start, days, tz)
    t1 = _window(start + timedelta(days=days), 1, tz)
    n = int((t1 - t0).total_seconds() // 3600)
    raw = []
    for k in range(n):
        h = (t0 + timedelta(hours=k)).astimezone(zone).hour
        raw.append(1.0 if h >= 22 or h < 6 else 0.08 + 0.04 * math.sin(math.pi * (h - 6) / 16))
    per_hour = 1_000_000.0 / 8766.0  # mWh per hour at 1 MWh/year on average
    mean = sum(raw) / len(raw)
    return Series(
        kind=KIND_LOAD_PROFILE,
        series_id=series_id,
        version=version,
        publisher="demo-reference-profiles",
        start=t0,
        interval_minutes=60,
        unit=PROFILE_UNIT,
        scale=_SCALE,
        expires=expires or (start + timedelta(days=days + 62)),
        values=tuple(round(r / mean * per_hour) for r in raw),
    )


def demo_profile_key() -> ecdsa.SigningKey:
    """A PUBLICLY KNOWN P-256 key of the demo's neutral reference-profile publisher (the
    BDEW profiles and the ``u-night`` shape), derived from a public string. Customers pin
    it at provisioning (docs/privacy.md); the forecasting party does not choose it."""
    return demo_signing_key(PROFILE_PUBLISHER)


def reference_profiles(
    start: date, days: int, *, tz: str = "Europe/Berlin", key: ecdsa.SigningKey | None = None,
    include_utility: bool = True,
) -> list[SignedSeries]:
    """All BDEW profiles (plus ``u-night``) for the window, signed by ``key`` (default: the
    demo's neutral reference-profile publisher, :func:`demo_profile_key`)."""
    key = key or demo_profile_key()
    series = [bdew_profile(n, start, days, tz=tz) for n in BDEW_PROFILES]
    if include_utility:
        series.append(utility_profile("u-night", start, days, tz=tz))
    return [sign_series(s, key) for s in series]
