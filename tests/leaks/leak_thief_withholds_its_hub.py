"""OPEN FINDING (red team round 4, issue 13; not collected: run it on its own with
``pytest tests/leaks/leak_thief_withholds_its_hub.py``; it fails while the hole is open).

A hostile co-member hub cannot under-report through the aggregation (the sum is bound to
its meter's commitments), but it can stay out of it. A thief who bypasses its meter
lets its hub's host drop the grid operator's STORE DATA (its security domain's
messages; the supplier's billing and settlement go on as before). Every day of its
feeder is then a recovery: the operator learns the present members' sum, which is
checked and correct, but the day is **incomplete** and the balance skips it
(``meterhub.utility.theft.balance``: days without 75% complete hours are NaN, and the
CUSUM keeps its value over NaN days). The feeder meter sees the stolen energy on every
one of those days, and the detector never sees a single day. Where the registry holds
the feeder's cable segments (the demo's feeders of about ten), no present set is
admitted at all and the feeder has no sum on any day (``group_days_unavailable``),
which also hides any other thief on the feeder.

Nothing flags a member that is missing every day: ``collect_day`` returns the missing
members, the demo counts unavailable group-days, the detector ignores both. Recommended
fix (the operator's side, no change to what hubs release): count the days each member
is missing over the CUSUM horizon and raise a "withholding" alarm for a member missing
on more than a few days of it (honest outages are rare and short), sending it to the
check-meter localisation like a CUSUM alarm; the member's identity is no secret (the
operator names it missing in every unmasking request).
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
    collect_day,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    verify_feeder_day,
)
from meterhub.utility.theft import balance
from test_fraud_aggregation import CODE_HASH, DAY, Hub, _inputs, _truth

NAMES = ["thief", "n1", "n2", "n3", "n4", "n5"]


def test_a_thief_that_withholds_its_hub_is_never_balanced(tmp_path) -> None:
    days = [DAY, DAY + timedelta(days=1)]
    hubs = {m: Hub(tmp_path / f"{m}.sqlite", make_history(start=DAY, n_days=2, seed=800 + k, meter_id=m))
            for k, m in enumerate(NAMES)}
    g = make_group("feeder-9", "f", {m: h.key for m, h in hubs.items()}, days[0], days[-1], demo_grid_key())
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish([g])
    for h in hubs.values():
        push_registry(h.mailbox(), reg)
        push_group(h.mailbox(), g)
    # the thief's meter records half of what the household draws; the feeder meter sees all
    feeder, sums, complete = [], [], []
    for day in days:
        drawn = [2 * a + b for a, b in zip(_truth(hubs, ["thief"], day), _truth(hubs, NAMES[1:], day), strict=True)]
        reach = {m: (None if m == "thief" else h.mailbox()) for m, h in hubs.items()}  # its host drops them
        rel, rec, missing = collect_day(reach, g, day, AGGREGATION_APP_AID, registry=reg.view)
        assert missing == ["thief"] and rec  # a recovery, admitted: the day is verified ...
        fd = verify_feeder_day(g, day, rel, rec, *_inputs(hubs, sorted(rel), day), code_hash=CODE_HASH)
        assert fd.hours == _truth(hubs, NAMES[1:], day) and not fd.complete  # ... and incomplete
        feeder += drawn
        sums += fd.hours
        complete += [fd.complete] * len(fd.hours)
    for h in hubs.values():
        h.card.close()
    cal = hour_calendar([s for d in days for s in day_starts(d, "Europe/Berlin", 60)], "Europe/Berlin")
    lossless = LossModel(0.0, 0.0)
    b = balance(np.array(feeder), np.array(sums), lossless, cal, np.array(complete))
    # the stolen energy is half the thief's draw on both days; the detector's daily
    # discrepancy should show it (it does if the thief's hub answers: the raw check below)
    raw = balance(np.array(feeder), np.array(sums) + np.array([x for d in days for x in _truth(hubs, ["thief"], d)]),
                  lossless, cal)
    assert np.all(raw.energy > 1.0)  # with the thief's recorded readings: several percent every day
    assert not np.all(np.isnan(b.energy)), "the feeder's days are all skipped: the withholding thief is never seen"
