"""Tests for meterhub.meter.load: BDEW profiles plus the seeded behaviour model."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from dateutil.easter import easter as dateutil_easter

from meterhub.meter import load as load_mod
from meterhub.meter.households import PASSIVE, WATCHED
from meterhub.meter.load import (
    APPLIANCES,
    BUSINESS_PROFILES,
    PROFILES,
    ApplianceEvent,
    LoadTrace,
    bdew_profile_wh,
    easter_sunday,
    german_holidays,
    household_traits,
    simulate_load,
    simulate_neighbourhood,
)
from meterhub.model.timebase import intervals_per_day, local_day_of
from meterhub.tariffs import slp

WINTER = dt.date(2025, 1, 6)  # a Monday


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
    slp._year_slots.cache_clear()
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
    # annual_kwh is the household's expected year (estimated from 48 reference
    # days); a simulated year scatters around it as a real one does around its forecast.
    trace = simulate_load(f"hh{seed}", dt.date(2024, 1, 1), 366, annual_kwh=annual, seed=seed)
    total_kwh = sum(trace.readings_wh) / 1000.0
    assert abs(total_kwh / annual - 1.0) < 0.10


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
def test_household_energy_is_conserved_across_resolutions(minutes: int) -> None:
    # The same household and days at any interval: the same energy per day (within
    # rounding), since every resolution sums the same per-minute simulation.
    start = dt.date(2025, 3, 29)  # includes the spring DST day
    q = simulate_load("q", start, 3, seed=2, annual_kwh=2500.0)
    other = simulate_load("q", start, 3, interval_minutes=minutes, seed=2, annual_kwh=2500.0)
    for (_, f1, c1), (_, f2, c2) in zip(q.days(), other.days(), strict=True):
        assert abs(sum(q.readings_wh[f1 : f1 + c1]) - sum(other.readings_wh[f2 : f2 + c2])) <= 1


def test_population_mean_follows_h0() -> None:
    # The calibration target: the mean of many simulated households has the BDEW
    # H0 shape (docs/privacy-evaluation.md reports the figure for larger runs).
    traces = simulate_neighbourhood(24, WINTER, 7, seed=21)
    mean = np.mean([t.readings_wh for t in traces], axis=0)
    h0 = np.array(bdew_profile_wh(WINTER, 7))
    hourly = mean.reshape(-1, 4).sum(axis=1), h0.reshape(-1, 4).sum(axis=1)
    assert np.corrcoef(*hourly)[0, 1] > 0.8
    # One household alone correlates far less (the privacy-relevant individuality).
    single = np.array(traces[0].readings_wh, dtype=float).reshape(-1, 4).sum(axis=1)
    assert np.corrcoef(single, hourly[1])[0, 1] < np.corrcoef(*hourly)[0, 1]


# --------------------------------------------------------------------------
# Ground truth


def test_ground_truth_is_consistent() -> None:
    traces = simulate_neighbourhood(8, WINTER, 14, seed=11)
    for trace in traces:
        r = np.array(trace.readings_wh)
        occupied = np.array(trace.occupied)
        asleep = np.array(trace.asleep)
        active = trace.truth["active"]
        present = trace.truth["present"]
        assert not (asleep & ~occupied).any(), "asleep implies at home"
        assert (active <= present + 1e-9).all()
        day_bounds = {first: first + count for _, first, count in trace.days()}
        for ev in trace.appliance_events:
            assert ev.appliance in APPLIANCES
            assert 0 <= ev.start_index < ev.end_index <= len(r)
            assert ev.energy_wh > 0
            # Switched on only with an active occupant in the starting interval.
            assert active[ev.start_index] > 0
            first = max(f for f in day_bounds if f <= ev.start_index)
            assert ev.end_index <= day_bounds[first]
            # The run's energy is in the readings (rounding costs < 1 Wh per interval).
            assert r[ev.start_index : ev.end_index].sum() >= ev.energy_wh - (ev.end_index - ev.start_index)
        # The components add up to the readings (integer rounding carries within a day).
        total = sum(trace.truth[c] for c in load_mod.COMPONENTS)
        assert np.abs(total - r).max() < 1.0 + 1e-6
        for _, first, count in trace.days():
            assert abs(total[first : first + count].sum() - r[first : first + count].sum()) <= 0.5 + 1e-6


def test_no_occupant_driven_load_without_active_occupants() -> None:
    # Occupancy zero means no occupant-driven switches: with nobody active in an
    # interval, watched appliances, lighting and small appliances draw nothing, and
    # with nobody at home no appliance run starts.
    traces = simulate_neighbourhood(8, WINTER, 14, seed=12)
    watched = sorted(WATCHED) + ["lighting", "other", "space_heating"]
    checked = 0
    for trace in traces:
        idle = trace.truth["active"] == 0
        away = trace.truth["present"] == 0
        for name in watched:
            assert (trace.truth[name][idle] == 0).all(), name
        starts = np.array([e.start_index for e in trace.appliance_events], dtype=int)
        assert not away[starts].any()
        # Away with no programme appliance running: the readings are the passive load.
        running = np.zeros(len(trace.readings_wh), dtype=bool)
        for e in trace.appliance_events:
            running[e.start_index : e.end_index] = True
        quiet = away & ~running
        if quiet.sum() < 50:
            continue
        checked += 1
        passive = sum(trace.truth[c] for c in PASSIVE)
        r = np.array(trace.readings_wh, dtype=float)
        assert np.abs(r[quiet] - passive[quiet]).max() <= 1.0 + 1e-6
        awake_home = trace.truth["active"] >= 0.5
        assert r[awake_home].mean() > 1.5 * r[quiet].mean()
        assert abs(passive.mean() - trace.base_load_wh) < 1e-6
    assert checked >= 4


def _find(pred, seed: int, prefix: str = "h") -> str:
    for k in range(500):
        hid = f"{prefix}{k}"
        if pred(household_traits(hid, seed)):
            return hid
    raise AssertionError("no household with the trait among 500")


def test_space_heating_only_in_the_heating_season() -> None:
    heated = _find(lambda t: t.electric_space_heating, seed=13)
    unheated = _find(lambda t: not t.electric_space_heating, seed=13)
    winter = simulate_load(heated, WINTER, 4, seed=13)
    summer = simulate_load(heated, dt.date(2025, 7, 7), 4, seed=13)
    assert winter.truth["space_heating"].sum() > 1000
    assert summer.truth["space_heating"].sum() == 0
    assert simulate_load(unheated, WINTER, 4, seed=13).truth["space_heating"].sum() == 0
    assert winter.params["electric_space_heating"] is True


def test_every_appliance_shows_up() -> None:
    hid = _find(lambda t: {"shower", "dryer", "dishwasher", "microwave", "computer"} <= t.owns
                and t.residents >= 3, seed=5)
    trace = simulate_load(hid, WINTER, 14, seed=5)
    assert {e.appliance for e in trace.appliance_events} == set(APPLIANCES)
    # Ratings: a kettle run draws about 2-3 kW (scaled by the household factor).
    scale = trace.annual_kwh / load_mod.expected_annual_kwh(hid, 5)
    kettle = [e for e in trace.appliance_events if e.appliance == "kettle"]
    assert kettle and all(e.energy_wh <= 3000 * scale * 5 / 60 + 1 for e in kettle)


def test_full_time_workers_are_away_on_workdays() -> None:
    traces = simulate_neighbourhood(24, WINTER, 14, seed=14)
    workers = [t for t in traces if t.params["n_home"] == 0 and t.params["n_part_time"] == 0
               and not t.params["children"]]
    assert workers
    for trace in workers:
        occ = np.array(trace.occupied)
        hours = np.array([s.astimezone(ZoneInfo(trace.tz)).hour for s in trace.starts])
        weekday = np.array([local_day_of(s, trace.tz).weekday() < 5 for s in trace.starts])
        at_noon = (hours == 12) & weekday
        assert occ[at_noon].mean() < 0.25
        assert occ[hours == 3].mean() > 0.85  # nights at home (bar trips)


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
    assert all(700.0 <= t.annual_kwh <= 15000.0 for t in households)
    assert all(5000.0 <= t.annual_kwh <= 60000.0 for t in businesses)
    assert len({t.annual_kwh for t in households}) > 1
    assert simulate_neighbourhood(0, WINTER, 1) == []


def test_neighbourhood_month_shape() -> None:
    # A month for 20 households: every trace complete, with ground truth. (Speed is a
    # benchmark's business, not a wall-clock assertion that fails on a loaded CI machine.)
    traces = simulate_neighbourhood(20, dt.date(2025, 2, 1), 30, seed=1)
    assert len(traces) == 20
    assert all(t.truth for t in traces)
    assert all(len(t.readings_wh) == 30 * 96 for t in traces)
    assert len({t.household_id for t in traces}) == 20


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
