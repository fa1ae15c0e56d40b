"""Red team round 4 (issue 13): a thief that withholds its hub from the aggregation.

A hostile co-member hub cannot under-report through the aggregation (the sum is bound to
its meter's commitments), but it can stay out of it: the thief lets its hub's host drop
the grid operator's STORE DATA. Every day of its feeder is then a recovery without it
(verified, but incomplete: the balance skips it) or, where the registry holds the
feeder's cable segments, a group-day with no sum. The balance then never judges a day,
and before the withholding alarm nothing flagged the thief (the former open finding
``tests/leaks/leak_thief_withholds_its_hub.py``).

The grid operator's answer (:class:`meterhub.utility.theft.WithholdingDetector`): it counts
the days each member did not answer (:func:`meterhub.utility.fraud.collect_group_day`) and
alarms for a member missing on more than the threshold; the feeder is reported as not
balanced on those days. Nothing changes in what the hubs release.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from helpers import make_history
from meterhub.hub.aggregation import AGGREGATION_APP_AID
from meterhub.model.formats.membership import demo_directory
from meterhub.model.grid import LossModel, hour_calendar
from meterhub.model.timebase import day_starts
from meterhub.utility.fraud import (
    GroupRegistry,
    collect_group_day,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    verify_feeder_day,
)
from meterhub.utility.settlement import AppletMailbox, HubRefused
from meterhub.utility.theft import WithholdingDetector, balance, unbalanced_days
from test_fraud_aggregation import CODE_HASH, DAY, Hub, _inputs, _truth

N_DAYS = 4  # WithholdingDetector().threshold(4) == 2: a member missing on 3 of 4 days alarms


def _hubs(tmp_path, names, seed):
    return {m: Hub(tmp_path / f"{m}.sqlite", make_history(start=DAY, n_days=N_DAYS, seed=seed + k, meter_id=m))
            for k, m in enumerate(names)}


def _registry(hubs, groups) -> GroupRegistry:
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish(groups)
    for m, h in hubs.items():
        mb = h.mailbox()
        push_registry(mb, reg)
        for g in groups:
            if g.member(m) is not None:
                push_group(mb, g)
    return reg


def _days():
    return [DAY + timedelta(days=k) for k in range(N_DAYS)]


def _cal(days):
    return hour_calendar([s for d in days for s in day_starts(d, "Europe/Berlin", 60)], "Europe/Berlin")


def test_a_thief_that_withholds_its_hub_is_flagged_and_its_feeder_reported_unbalanced(tmp_path) -> None:
    """Six hubs, one group: every day a verified recovery without the thief, skipped by
    the balance; the withholding alarm names the thief on the third day, and only it."""
    names = ["thief", "n1", "n2", "n3", "n4", "n5"]
    hubs = _hubs(tmp_path, names, 800)
    days = _days()
    g = make_group("feeder-9", "f", {m: h.key for m, h in hubs.items()}, days[0], days[-1], demo_grid_key())
    reg = _registry(hubs, [g])
    feeder, sums, complete = [], [], []
    silent: dict[str, list[int]] = {}
    try:
        for k, day in enumerate(days):
            # the thief's meter records half of what the household draws; the feeder meter sees all
            drawn = [2 * a + b for a, b in zip(_truth(hubs, ["thief"], day), _truth(hubs, names[1:], day), strict=True)]
            reach = {m: (None if m == "thief" else h.mailbox()) for m, h in hubs.items()}  # its host drops them
            got = collect_group_day(reach, g, day, AGGREGATION_APP_AID, registry=reg.view)
            assert got.missing == ["thief"] and got.unanswered == ["thief"] and got.has_sum
            fd = verify_feeder_day(g, day, got.releases, got.recoveries, *_inputs(hubs, sorted(got.releases), day),
                                   code_hash=CODE_HASH)
            assert fd.hours == _truth(hubs, names[1:], day) and not fd.complete  # verified, incomplete
            for m in got.unanswered:
                silent.setdefault(m, []).append(k)
            feeder += drawn
            sums += fd.hours
            complete += [fd.complete] * len(fd.hours)
    finally:
        for h in hubs.values():
            h.card.close()
    b = balance(np.array(feeder), np.array(sums), LossModel(0.0, 0.0), _cal(days), np.array(complete))
    assert np.all(np.isnan(b.energy))  # the CUSUM sees no day: the hole the red team found ...
    assert unbalanced_days(b) == N_DAYS  # ... now reported: "not balanced on 4 of 4 days"
    wd = WithholdingDetector()
    assert wd.alarms(silent, N_DAYS) == {"thief": wd.threshold(N_DAYS)}  # alarm on its 3rd missing day


def test_a_group_day_without_a_sum_counts_against_the_silent_member_only(tmp_path) -> None:
    """The demo's registry shape (the feeder and its two cable segments of five): with the
    thief silent no present set is admitted, so the feeder has no sum on any day. The
    silent member is counted every day; the members of its half, which the recovery rule
    would name missing with it, answered and are not."""
    names = ["thief", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"]
    hubs = _hubs(tmp_path, names, 900)
    days = _days()
    groups = [make_group(gid, "f", {m: hubs[m].key for m in ms}, days[0], days[-1], demo_grid_key())
              for gid, ms in (("F", names), ("L", names[:5]), ("R", names[5:]))]
    reg = _registry(hubs, groups)
    silent: dict[str, list[int]] = {}
    try:
        for k, day in enumerate(days):
            reach = {m: (None if m == "thief" else h.mailbox()) for m, h in hubs.items()}
            got = collect_group_day(reach, groups[0], day, AGGREGATION_APP_AID, registry=reg.view)
            assert not got.has_sum and got.recoveries == {} and got.unanswered == ["thief"]
            for m in got.unanswered:
                silent.setdefault(m, []).append(k)
    finally:
        for h in hubs.values():
            h.card.close()
    assert WithholdingDetector().alarms(silent, N_DAYS) == {"thief": 2}


class _RefusesUnmasking(AppletMailbox):
    """A hub whose host passes the release but drops the unmasking round: the day then
    has no sum and the thief is not even named missing."""

    def send(self, message: bytes, what: str, *, personalize: bool = True) -> bytes:
        if message[:1] == b"\x11":
            raise HubRefused(what, None)
        return super().send(message, what, personalize=personalize)


def test_a_thief_that_answers_the_release_but_not_the_unmasking_round_is_counted(tmp_path) -> None:
    names = ["thief", "n1", "n2", "n3", "n4", "n5"]
    hubs = _hubs(tmp_path, names, 700)
    days = _days()
    g = make_group("feeder-7", "f", {m: h.key for m, h in hubs.items()}, days[0], days[-1], demo_grid_key())
    reg = _registry(hubs, [g])
    silent: dict[str, list[int]] = {}
    try:
        for k, day in enumerate(days):
            reach: dict[str, AppletMailbox | None] = {m: h.mailbox() for m, h in hubs.items()}
            thief = reach["thief"]
            assert thief is not None
            reach["thief"] = _RefusesUnmasking(thief.tsm, AGGREGATION_APP_AID)
            got = collect_group_day(reach, g, day, AGGREGATION_APP_AID, registry=reg.view)
            assert got.missing == [] and not got.has_sum  # nobody named missing, and no sum
            assert got.unanswered == ["thief"]
            for m in got.unanswered:
                silent.setdefault(m, []).append(k)
    finally:
        for h in hubs.values():
            h.card.close()
    assert WithholdingDetector().alarms(silent, N_DAYS) == {"thief": 2}
