"""A hostile DR program operator (OpenADR VTN) against the hub's guard (docs/privacy.md).

Everything here is what the grid operator may send: events signed with its own pinned
VTN key through the host (PUT EVENT), and STORE DATA through its own SCP03 domain.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from helpers import make_history
from meterhub.demo.hubs import demo_tsm
from meterhub.hub.dr_host import DR_APP_AID, EventRefused
from meterhub.model.timebase import local_midnight_utc
from meterhub.utility.settlement import AppletMailbox, HubRefused
from test_demand_response import N_DAYS, START, Hub, _event_on, _guard_entries, make_event

DAY = START + timedelta(days=N_DAYS - 1)


@pytest.mark.parametrize(
    ("minute", "duration"),
    [
        (0, 15),  # one reading of the event day against one reading of each baseline day
        (0, 30),
        (0, 45),
        (15, 60),  # an hour off the hour: two events on two days differ by quarter hours
        (0, 75),
    ],
)
def test_sub_hour_event_windows_are_refused_and_nothing_is_released(tmp_path, minute, duration):
    h = make_history(start=START, n_days=N_DAYS, seed=31)
    hub = Hub(tmp_path / "hub.sqlite", h)
    start = local_midnight_utc(DAY, "Europe/Berlin") + timedelta(hours=17, minutes=minute)
    ev = make_event(h, event_id="tiny", start=start, duration_minutes=duration)
    with pytest.raises(EventRefused, match="6A80"):
        hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    t = demo_tsm(hub.card, "grid-operator")
    t.open()
    try:
        with pytest.raises(HubRefused) as exc:
            AppletMailbox(t, DR_APP_AID).request(b"\x02tiny", "release")
    finally:
        t.close()
    assert exc.value.sw == 0x6A88  # the hub never stored the event
    assert [e.kind for e in _guard_entries(hub)].count("dr") == 0


def test_whole_hour_events_are_still_released(tmp_path):
    h = make_history(start=START, n_days=N_DAYS, seed=32)
    hub = Hub(tmp_path / "hub.sqlite", h)
    ev = _event_on(h, DAY, "hourly", hour=18)
    hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    hub.release("hourly")
    assert [e.kind for e in _guard_entries(hub)].count("dr") == 1


def test_a_re_ask_with_another_event_id_for_a_released_day_is_refused(tmp_path):
    """Same-day trick: the operator re-signs the released event under a new id and a
    shorter window (a modification the customer's VEN would accept before the day)."""
    h = make_history(start=START, n_days=N_DAYS, seed=33)
    hub = Hub(tmp_path / "hub.sqlite", h)
    a = _event_on(h, DAY, "ev-a", hour=17)
    b = make_event(h, event_id="ev-b", start=a.start, duration_minutes=60)
    for ev in (a, b):
        hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    first = hub.release("ev-a")
    with pytest.raises(HubRefused) as exc:
        hub.release("ev-b")
    assert exc.value.sw == 0x6985
    assert hub.release("ev-a").to_bytes() == first.to_bytes()  # a re-ask: the same bytes
    assert [e.kind for e in _guard_entries(hub)].count("dr") == 1


@pytest.mark.parametrize("baseline", [
    lambda ev: ev.baseline_days[:4],  # fewer than 5 days: a near-single-day baseline
    lambda ev: (*ev.baseline_days[:4], DAY),  # the event day itself
    lambda ev: (*ev.baseline_days[:4], DAY + timedelta(days=1)),  # a day after the event
    lambda ev: (*ev.baseline_days[:4], ev.baseline_days[0]),  # a repeated day (weights it twice)
    lambda ev: (*ev.baseline_days[:4], DAY - timedelta(days=46)),  # beyond the 45-day lookback
    lambda ev: (*ev.baseline_days[:4], DAY - timedelta(days=2)),  # a Sunday for a Tuesday event
])
def test_crafted_baseline_days_are_refused(tmp_path, baseline):
    h = make_history(start=START, n_days=N_DAYS, seed=34)
    hub = Hub(tmp_path / "hub.sqlite", h)
    ev = _event_on(h, DAY, "crafted")
    bad = make_event(h, event_id="crafted", start=ev.start, baseline_days=tuple(baseline(ev)))
    with pytest.raises(EventRefused, match="6A80"):
        hub.client.put_event(bad.event_id, bad.to_bytes(), True)
    assert [e.kind for e in _guard_entries(hub)].count("dr") == 0


def test_dr_events_share_the_period_budget(tmp_path):
    """Many events, each one functional of the period's budget: with the budget spent,
    the next event of the period is refused with 6A84 before the events cap (6)."""
    from meterhub.policy import default_policy

    h = make_history(start=START, n_days=N_DAYS, seed=35)
    hub = Hub(tmp_path / "hub.sqlite", h, policy=default_policy(budget={"functionals_per_period": 2}))
    evs = [_event_on(h, DAY - timedelta(days=k), f"ev-{k}") for k in (0, 1, 4)]  # Tue, Mon, Fri
    for ev in evs:
        hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    hub.release(evs[0].event_id)
    hub.release(evs[1].event_id)
    with pytest.raises(HubRefused) as exc:
        hub.release(evs[2].event_id)
    assert exc.value.sw == 0x6A84
    assert [e.kind for e in _guard_entries(hub)].count("dr") == 2
