"""Tests for meterhub.meter.load: BDEW profiles plus the seeded behaviour model."""

from __future__ import annotations

import datetime as dt
import math
import time
import warnings
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from dateutil.easter import easter as dateutil_easter

from meterhub.meter import load as load_mod
from meterhub.meter.load import (
    APPLIANCES,
    BUSINESS_PROFILES,
    PROFILES,
    ApplianceEvent,
    LoadTrace,
    bdew_profile_wh,
    easter_sunday,
    german_holidays,
    simulate_load,
    simulate_neighbourhood,
)
from meterhub.meter.timebase import intervals_per_day, local_day_of

WINTER = dt.date(2025, 1, 6)  # a Monday


def _event_mask(trace: LoadTrace) -> np.ndarray:
    mask = np.zeros(len(trace.readings_wh), dtype=bool)
    for ev in trace.appliance_events:
        mask[ev.start_index : ev.end_index] = True
    return mask


# --------------------------------------------------------------------------
# Calendar


def test_easter_matches_dateutil() -> None:
    for year in range(1970, 2201):
        assert easter_sunday(year) == dateutil_easter(year)


def test_german_holidays() -> None:
    for year in (2024, 2025, 2026):
        days = german_holidays(year)
        assert len(days) == len(set(days)) == 9
        easter = dateutil_easter(year)
        assert easter - dt.timedelta(days=2) in days  # Good Friday
        assert easter + dt.timedelta(days=50) in days  # Whit Monday
        assert dt.date(year, 10, 3) in days
        assert all(d.year == year for d in days)


# --------------------------------------------------------------------------
# BDEW expectation


@pytest.mark.parametrize("profile", ["h0", "h0_dyn", "g3", "l1"])
@pytest.mark.parametrize("minutes", [5, 15, 60])
def test_profile_year_sums_to_annual(profile: str, minutes: int) -> None:
    values = bdew_profile_wh(dt.date(2025, 1, 1), 365, annual_kwh=4200.0, profile=profile,
                             interval_minutes=minutes)
    assert len(values) == 365 * 24 * 60 // minutes
    assert math.isclose(sum(values), 4_200_000.0, rel_tol=1e-9)
    assert min(values) >= 0.0


def test_sub_and_super_quarter_hour_resolution_conserve_energy() -> None:
    day = dt.date(2025, 10, 26)  # autumn DST day: 25 hours
    q = np.array(bdew_profile_wh(day, 1, interval_minutes=15))
    one = np.array(bdew_profile_wh(day, 1, interval_minutes=1))
    five = np.array(bdew_profile_wh(day, 1, interval_minutes=5))
    hour = np.array(bdew_profile_wh(day, 1, interval_minutes=60))
    assert len(q) == 100
    # 1 and 5 minutes: equal shares of each quarter hour (step interpolation).
    assert np.allclose(one.reshape(-1, 15).sum(axis=1), q)
    assert np.allclose(one.reshape(-1, 15), one.reshape(-1, 15)[:, :1])
    assert np.allclose(five.reshape(-1, 3).sum(axis=1), q)
    # 60 minutes: sum of the four quarter hours.
    assert np.allclose(hour, q.reshape(-1, 4).sum(axis=1))


def test_repeated_autumn_hour_reuses_profile_values() -> None:
    q = bdew_profile_wh(dt.date(2025, 10, 26), 1)
    # Quarter hours 8..11 are 02:00-02:45 CEST, 12..15 the same wall time in CET.
    assert q[8:12] == q[12:16]


def test_holidays_look_like_sundays() -> None:
    # Whit Monday 2025 (9 June) versus the Monday before and the Sunday before.
    whit_monday = bdew_profile_wh(dt.date(2025, 6, 9), 1, profile="g1")
    monday = bdew_profile_wh(dt.date(2025, 6, 2), 1, profile="g1")
    sunday = bdew_profile_wh(dt.date(2025, 6, 8), 1, profile="g1")
    assert np.allclose(whit_monday, sunday)
    assert sum(whit_monday) < 0.5 * sum(monday)


def test_demandlib_warning_filter_does_not_leak() -> None:
    # ElecSlp calls warnings.simplefilter("error"); we must contain it.
    load_mod._year_slots.cache_clear()
    before = list(warnings.filters)
    bdew_profile_wh(dt.date(2031, 1, 1), 1)
    assert warnings.filters == before


# --------------------------------------------------------------------------
# Simulation: shape, types, DST


@pytest.mark.parametrize("minutes", [1, 5, 15, 30, 60])
def test_trace_shape_and_integers(minutes: int) -> None:
    start = dt.date(2025, 3, 29)
    trace = simulate_load("m1", start, 3, interval_minutes=minutes, seed=5)
    counts = [intervals_per_day(start + dt.timedelta(days=k), "Europe/Berlin", minutes) for k in range(3)]
    assert len(trace.readings_wh) == sum(counts)
    assert [c for _, _, c in trace.days()] == counts
    assert counts[1] == 23 * 60 // minutes
    assert all(type(r) is int and r >= 0 for r in trace.readings_wh)
    assert all(type(b) is bool for b in trace.occupied + trace.asleep)
    steps = {b - a for a, b in zip(trace.starts, trace.starts[1:], strict=False)}
    assert steps == {dt.timedelta(minutes=minutes)}
    assert all(s.tzinfo is not None for s in trace.starts)


def test_days_helper() -> None:
    trace = simulate_load("m1", dt.date(2025, 10, 25), 3)
    days = trace.days()
    assert [d for d, _, _ in days] == [dt.date(2025, 10, 25) + dt.timedelta(days=k) for k in range(3)]
    assert [c for _, _, c in days] == [96, 100, 96]
    for day, first, count in days:
        assert {local_day_of(s, trace.tz) for s in trace.starts[first : first + count]} == {day}


def test_trace_length_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError):
        LoadTrace("x", "h0", "UTC", 15, [dt.datetime(2025, 1, 1, tzinfo=dt.UTC)], [1, 2], [True], [False], [])


# --------------------------------------------------------------------------
# Determinism


def test_same_seed_same_trace_different_seed_different() -> None:
    a = simulate_load("hh", WINTER, 7, seed=42)
    b = simulate_load("hh", WINTER, 7, seed=42)
    c = simulate_load("hh", WINTER, 7, seed=43)
    d = simulate_load("other", WINTER, 7, seed=42)
    assert a == b
    assert a.readings_wh != c.readings_wh
    assert a.readings_wh != d.readings_wh


def test_a_day_reads_the_same_whatever_the_window() -> None:
    long = simulate_load("hh", WINTER, 10, seed=7, interval_minutes=5)
    short = simulate_load("hh", WINTER + dt.timedelta(days=4), 3, seed=7, interval_minutes=5)
    first = long.days()[4][1]
    n = len(short.readings_wh)
    assert long.readings_wh[first : first + n] == short.readings_wh
    assert long.occupied[first : first + n] == short.occupied
    shifted = [
        ApplianceEvent(e.appliance, e.start_index - first, e.end_index - first, e.energy_wh)
        for e in long.appliance_events
        if first <= e.start_index < first + n
    ]
    assert shifted == short.appliance_events


def test_neighbourhood_is_deterministic() -> None:
    a = simulate_neighbourhood(6, WINTER, 3, seed=9, business_share=0.5)
    b = simulate_neighbourhood(6, WINTER, 3, seed=9, business_share=0.5)
    c = simulate_neighbourhood(6, WINTER, 3, seed=10, business_share=0.5)
    assert a == b
    assert [t.readings_wh for t in a] != [t.readings_wh for t in c]


# --------------------------------------------------------------------------
# Energy


@pytest.mark.parametrize(("annual", "seed"), [(1500.0, 1), (3500.0, 2), (6000.0, 3), (2500.0, 4)])
def test_year_of_h0_matches_annual_energy(annual: float, seed: int) -> None:
    trace = simulate_load(f"hh{seed}", dt.date(2024, 1, 1), 366, annual_kwh=annual, seed=seed)
    total_kwh = sum(trace.readings_wh) / 1000.0
    assert abs(total_kwh / annual - 1.0) < 0.05


@pytest.mark.parametrize("profile", ["g0", "g5", "l2"])
def test_year_of_business_matches_annual_energy(profile: str) -> None:
    trace = simulate_load("biz", dt.date(2025, 1, 1), 365, annual_kwh=20000.0, profile=profile, seed=1)
    assert abs(sum(trace.readings_wh) / 20_000_000.0 - 1.0) < 0.05


def test_day_energy_follows_profile_for_business() -> None:
    # Day totals scatter around the BDEW expectation (day factor sigma 0.1).
    trace = simulate_load("biz", WINTER, 28, annual_kwh=30000.0, profile="g1", seed=2)
    expected = bdew_profile_wh(WINTER, 28, annual_kwh=30000.0, profile="g1")
    for _, first, count in trace.days():
        got = sum(trace.readings_wh[first : first + count])
        want = sum(expected[first : first + count])
        assert 0.5 * want < got < 1.8 * want


@pytest.mark.parametrize("minutes", [1, 5, 15, 60])
def test_household_days_keep_the_profile_energy(minutes: int) -> None:
    # Each day's energy is the BDEW day energy unless the household was away
    # overnight or ran so many appliances that the activity floor applied.
    start = dt.date(2025, 1, 1)
    trace = simulate_load("q", start, 60, interval_minutes=minutes, seed=2, annual_kwh=2500.0)
    expected = bdew_profile_wh(start, 60, interval_minutes=minutes, annual_kwh=2500.0)
    matching = sum(
        abs(sum(trace.readings_wh[f : f + c]) - sum(expected[f : f + c])) <= 1
        for _, f, c in trace.days()
    )
    assert matching >= 0.7 * 60


# --------------------------------------------------------------------------
# Ground truth


def test_ground_truth_is_consistent() -> None:
    traces = simulate_neighbourhood(8, WINTER, 21, seed=11)
    for trace in traces:
        r = np.array(trace.readings_wh)
        occupied = np.array(trace.occupied)
        asleep = np.array(trace.asleep)
        assert not (asleep & ~occupied).any(), "asleep implies at home"
        events = _event_mask(trace)
        assert not (events & ~occupied).any(), "appliances run only while someone is home"
        day_bounds = {first: first + count for _, first, count in trace.days()}
        for ev in trace.appliance_events:
            assert ev.appliance in APPLIANCES
            assert 0 <= ev.start_index < ev.end_index <= len(r)
            assert ev.energy_wh > 0
            assert occupied[ev.start_index] and not asleep[ev.start_index]
            # Within one local day.
            first = max(f for f in day_bounds if f <= ev.start_index)
            assert ev.end_index <= day_bounds[first]
            # The run's energy is in the readings (rounding costs < 1 Wh per day).
            assert r[ev.start_index : ev.end_index].sum() >= ev.energy_wh - 1
        laundry_ends = {e.end_index for e in trace.appliance_events if e.appliance == "laundry"}
        for ev in trace.appliance_events:
            if ev.appliance == "dryer":
                assert ev.start_index in laundry_ends


def test_readings_are_base_load_when_nobody_is_home() -> None:
    traces = simulate_neighbourhood(8, WINTER, 21, seed=12)
    checked = 0
    for trace in traces:
        r = np.array(trace.readings_wh, dtype=float)
        away = ~np.array(trace.occupied) & ~_event_mask(trace)
        if away.sum() < 50:
            continue
        checked += 1
        base = trace.base_load_wh
        # Base load noise is bounded by +-24 %, plus 1 Wh of rounding.
        assert (r[away] <= 1.24 * base + 1).all()
        assert (r[away] >= 0.76 * base - 1).all()
        assert abs(r[away].mean() / base - 1.0) < 0.05
        awake_home = np.array(trace.occupied) & ~np.array(trace.asleep)
        assert r[awake_home].mean() > 2 * r[away].mean()
    assert checked >= 4


def test_heating_only_in_the_heating_season() -> None:
    winter = simulate_neighbourhood(6, WINTER, 14, seed=13)
    summer = simulate_neighbourhood(6, dt.date(2025, 7, 7), 14, seed=13)
    assert any(e.appliance == "heating" for t in winter for e in t.appliance_events)
    assert not any(e.appliance == "heating" for t in summer for e in t.appliance_events)
    # Each appliance of the model shows up somewhere in a winter neighbourhood.
    seen = {e.appliance for t in winter for e in t.appliance_events}
    assert seen == set(APPLIANCES)


def test_workers_are_away_on_workdays() -> None:
    traces = simulate_neighbourhood(10, WINTER, 14, seed=14)
    workers = [t for t in traces if not t.params["home_all_day"]]
    assert workers
    for trace in workers:
        occ = np.array(trace.occupied)
        hours = np.array([s.astimezone(ZoneInfo(trace.tz)).hour for s in trace.starts])
        weekday = np.array([local_day_of(s, trace.tz).weekday() < 5 for s in trace.starts])
        at_noon = (hours == 12) & weekday
        assert occ[at_noon].mean() < 0.2
        assert occ[hours == 3].mean() > 0.9  # nights at home (bar rare trips)


def test_business_ground_truth() -> None:
    trace = simulate_load("shop", WINTER, 14, annual_kwh=15000.0, profile="g1", seed=4)
    assert trace.appliance_events == []
    assert not any(trace.asleep)
    r = np.array(trace.readings_wh)
    occ = np.array(trace.occupied)
    for day, first, count in trace.days():
        if day.weekday() >= 5:
            assert not occ[first : first + count].any()
    assert r[occ].mean() > 2 * r[~occ].mean()
    assert trace.base_load_wh == 0.0 and trace.params == {}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_simulates(profile: str) -> None:
    trace = simulate_load("x", WINTER, 2, profile=profile.upper(), seed=1)
    assert trace.profile == profile
    assert sum(trace.readings_wh) > 0


# --------------------------------------------------------------------------
# Neighbourhood


def test_neighbourhood_mix_and_ranges() -> None:
    traces = simulate_neighbourhood(20, WINTER, 2, seed=5, business_share=0.25)
    assert len(traces) == 20
    assert len({t.household_id for t in traces}) == 20
    businesses = [t for t in traces if t.profile in BUSINESS_PROFILES]
    households = [t for t in traces if t.profile == "h0"]
    assert len(businesses) == 5 and len(households) == 15
    assert all(1500.0 <= t.annual_kwh <= 6000.0 for t in households)
    assert all(5000.0 <= t.annual_kwh <= 60000.0 for t in businesses)
    assert len({t.annual_kwh for t in households}) > 1
    assert simulate_neighbourhood(0, WINTER, 1) == []


def test_neighbourhood_performance() -> None:
    simulate_neighbourhood(1, WINTER, 1)  # warm the per-year profile cache
    begin = time.perf_counter()
    traces = simulate_neighbourhood(20, dt.date(2025, 2, 1), 30, seed=1)
    elapsed = time.perf_counter() - begin
    assert len(traces[0].readings_wh) == 30 * 96
    assert elapsed < 5.0


# --------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"profile": "h1"},
        {"profile": 0},
        {"interval_minutes": 7},
        {"days": 0},
        {"days": -3},
        {"annual_kwh": -1.0},
        {"annual_kwh": float("nan")},
        {"annual_kwh": "lots"},
        {"seed": -1},
        {"seed": 1.5},
        {"tz": "Nowhere/Town"},
        {"start": dt.datetime(2025, 1, 1)},
        {"start": dt.date(1900, 1, 1)},
        {"household_id": ""},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"household_id": "x", "start": WINTER, "days": 1}
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        simulate_load(**args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"business_share": 1.5}, {"business_share": "x"}])
def test_bad_neighbourhood_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"n": 2, "start": WINTER, "days": 1}
    args.update(kwargs)
    with pytest.raises(ValueError):
        simulate_neighbourhood(**args)  # type: ignore[arg-type]
