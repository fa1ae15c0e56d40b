"""OPEN LEAK (red team round 4, issue 13; not collected: run it on its own with
``pytest tests/leaks/leak_operator_hosted_members.py``; it fails while the leak is open).

What the member certificates stop, and what they do not. A certificate binds a meter id
to the aggregation key of the card of the hub serving that meter, so the grid operator
can no longer list keys it holds (phantom members, ``tests/attacks/test_attacks_phantom.py``).
It does not stop the operator from listing **real, certified hubs whose readings it
knows**: the meters of its own premises on the feeder (a substation's auxiliary supply,
street lighting, its depots: it is a customer like any other), or hubs handed back to
it (a swapped or returned unit keeps its card, its aggregation key and its certificate,
which has no validity period, feeder or revocation, and the readings applet takes
plain openings from whoever is the hub's host, ``PUT DAY`` P1 ``01``). A group of the
victim and four such hubs passes every rule of the hub (signed by the pinned key, five
members, every member certified, the registry's span test) and its verified sum, minus
what the operator knows, is the victim's hourly readings, exactly, every day.

The docs' threshold assumption ("fewer than ``t`` of X's peers collude with the grid
operator") covers it in words; the point here is that the operator needs no accomplice:
its own certified hubs are the colluding peers, so the minimum group size of 5 protects
nobody whose feeder has four of them.
"""

from __future__ import annotations

from datetime import timedelta

from helpers import make_history
from meterhub.hub.aggregation import AGGREGATION_APP_AID
from meterhub.model.formats.membership import demo_directory, demo_member_certifier_key
from meterhub.utility.fraud import (
    GroupRegistry,
    collect_day,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    verify_feeder_day,
)
from test_fraud_aggregation import CODE_HASH, DAY, Hub, _inputs, _truth


def test_four_operator_hosted_hubs_and_the_victim(tmp_path) -> None:
    hubs = {m: Hub(tmp_path / f"{m}.sqlite", make_history(start=DAY, n_days=2, seed=700 + k, meter_id=m))
            for k, m in enumerate(["v", "op-depot", "op-light-1", "op-light-2", "op-substation"])}
    g = make_group("feeder-7", "f", {m: h.key for m, h in hubs.items()}, DAY, DAY + timedelta(days=1), demo_grid_key())
    # the operator's own tool, told the certifier's key, finds nothing to object to
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory,
                        certifier=demo_member_certifier_key().public_key())
    reg.publish([g])
    for h in hubs.values():
        push_registry(h.mailbox(), reg)  # every hub, the victim's included, accepts the block
        push_group(h.mailbox(), g)
    learnt = {}
    for day in (DAY, DAY + timedelta(days=1)):
        rel, rec, missing = collect_day({m: h.mailbox() for m, h in hubs.items()}, g, day, AGGREGATION_APP_AID,
                                        registry=reg.view)
        assert not missing
        fd = verify_feeder_day(g, day, rel, rec, *_inputs(hubs, sorted(rel), day), code_hash=CODE_HASH)
        known = _truth(hubs, [m for m in hubs if m != "v"], day)  # the operator's own meters
        learnt[day] = [s - k for s, k in zip(fd.hours, known, strict=True)]
    for h in hubs.values():
        h.card.close()
    assert learnt[DAY] != _truth(hubs, ["v"], DAY), "household v's hourly readings, from a group of 5 certified hubs"
