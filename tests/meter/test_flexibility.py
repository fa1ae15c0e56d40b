"""Flexible loads: shed within the window, rebound after, never below zero."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.meter.flexibility import FlexibleLoad, household_loads, respond

HP = FlexibleLoad("heat pump", 2000.0, 4000.0, 60, 1.1, 60)


def test_shed_in_window_rebound_after():
    cf = [600] * 16
    r = respond(cf, [(4, 8)], 15, [HP])
    assert r.readings_wh[:4] == cf[:4]
    assert sum(r.readings_wh[4:8]) < sum(cf[4:8])
    assert sum(r.readings_wh[8:12]) > sum(cf[8:12])  # the rebound
    shed = sum(cf[4:8]) - sum(r.readings_wh[4:8])
    assert abs((sum(r.readings_wh[8:]) - sum(cf[8:])) - 1.1 * shed) <= 4  # losses, rounding
    assert r.reduction_wh < 0  # over the whole day the household used more


def test_comfort_limit_and_opted_out_household():
    cf = [2000] * 12
    r = respond(cf, [(2, 10)], 15, [HP])
    assert all(x == 2000 for x in r.readings_wh[6:10])  # 60 minutes max, then it runs again
    assert respond(cf, [(2, 10)], 15, []).readings_wh == cf


def test_loads_are_drawn_per_household_and_reproducible():
    assert household_loads("h1", 7) == household_loads("h1", 7)
    assert any(household_loads(f"h{k}", 7) != household_loads("h1", 7) for k in range(2, 10))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=8, max_size=40), st.integers(0, 6), st.floats(0, 1))
def test_never_negative_never_more_shed_than_drawn(cf, first, comp):
    end = min(len(cf), first + 2)
    r = respond(cf, [(first, end)], 15, household_loads("x", 1) + [HP], base_wh=50.0, compliance=comp)
    assert all(x >= 0 for x in r.readings_wh)
    for k in range(first, end):
        assert r.readings_wh[k] >= min(cf[k], 50) - 1
