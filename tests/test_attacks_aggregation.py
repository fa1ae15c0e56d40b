"""A hostile grid operator against the aggregation rules in the guard (docs/fraud.md):
recovery claims and groups that differ by exactly the minimum. (A chain of four groups,
which no single hub can see, is a known leak: tests/leaks/leak_aggregate_chain.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from meterhub.aggregation import AggregationRequest, RecoveryRequest
from meterhub.utility.fraud import demo_grid_key, make_group, push_group
from meterhub.utility.settlement import HubRefused
from test_fraud_guard import DAY, _log, hubs, mailbox  # noqa: F401 - the fixture


def _group(hubs, gid: str, ids):  # noqa: F811
    return make_group(gid, "f", {i: hubs[i][2] for i in ids}, DAY, DAY + timedelta(days=1), demo_grid_key())


def test_recovery_claims_that_would_unmask_are_refused(hubs):  # noqa: F811
    ids = sorted(hubs)[:6]
    g = _group(hubs, "claims", ids)
    card = hubs[ids[0]][0]
    push_group(mailbox(card), g)
    mailbox(card).send(b"\x10" + AggregationRequest("claims", DAY).to_bytes(), "release")
    before = len(_log(card))
    for missing in ((ids[4], ids[5]),  # 4 would remain: their sum minus the asker's masks
                    (ids[0],),  # its own masks
                    ("g-nobody",)):  # not a member
        with pytest.raises(HubRefused) as e:
            mailbox(card).send(b"\x11" + RecoveryRequest("claims", DAY, missing).to_bytes(), "recover")
        assert e.value.sw == 0x6985, missing
    assert len(_log(card)) == before  # nothing released, nothing logged


def test_groups_differing_by_fewer_than_five_are_refused_at_every_member(hubs):  # noqa: F811
    ids = sorted(hubs)
    small, big = _group(hubs, "base5", ids[:5]), _group(hubs, "plus1", ids[:6])
    card = hubs[ids[1]][0]
    push_group(mailbox(card), small)
    before = len(_log(card))
    with pytest.raises(HubRefused) as e:  # {ids[5]} alone is the difference
        push_group(mailbox(card), big)
    assert e.value.sw == 0x6985
    swapped = _group(hubs, "swap", [*ids[1:5], ids[6]])  # differs by {ids[0], ids[6]}
    with pytest.raises(HubRefused) as e:
        push_group(mailbox(card), swapped)
    assert e.value.sw == 0x6985
    assert len(_log(card)) == before
