"""Forks of the group registry across days (docs/fraud.md, "forks").

The red team's demonstration (formerly ``tests/leaks/leak_registry_fork_across_days.py``),
attack shape kept: block 0 gives every hub ``F = {v} + P + Q`` for day 1, which they
release; then the grid operator forks: ``P``'s hubs get a block with group ``P`` for day
2, ``Q``'s hubs another with ``Q``. Each branch passes every hub's check and each group's
members hold one branch, so before the fix ``F(d1) - P(d2) - Q(d2)`` estimated household
``v`` (the sums the registry's time-agnostic rule refuses on one chain). Now a hub that
released under one registry head releases under another only when every co-member has
tagged that head (applet messages ``05``/``06``), and the masks bind the head a day is
released under, so the two branches cannot both be released.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_history
from meterhub.hub.aggregation import AGGREGATION_APP_AID
from meterhub.model.formats.aggregation import FormatError
from meterhub.model.formats.membership import demo_directory
from meterhub.model.group_registry import HeadTags, isolated_households
from meterhub.utility.fraud import (
    GroupRegistry,
    collect_day,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    relay_head_tags,
    verify_feeder_day,
)
from meterhub.utility.settlement import HubRefused
from meterhub.utility.verifier import Rejected
from test_fraud_aggregation import CODE_HASH, DAY, Hub, _inputs, _truth

D1, D2 = DAY, DAY + timedelta(days=1)
P = [f"p{k}" for k in range(5)]
Q = [f"q{k}" for k in range(5)]
NAMES = ["v", *P, *Q]


@pytest.fixture()
def hubs(tmp_path):
    return {n: Hub(tmp_path / f"{n}.sqlite", make_history(start=DAY, n_days=2, seed=700 + k, meter_id=n))
            for k, n in enumerate(NAMES)}


def _grp(hubs, gid, members, day):
    return make_group(gid, "f", {i: hubs[i].key for i in members}, day, day, demo_grid_key())


def _sum(hubs, g, day):
    members = sorted(g.meter_ids)
    rel, rec, _ = collect_day({i: hubs[i].mailbox() for i in members}, g, day, AGGREGATION_APP_AID)
    regs, comms = _inputs(hubs, members, day)
    return verify_feeder_day(g, day, rel, rec, regs, comms, code_hash=CODE_HASH).hours


def _fork(hubs, base: GroupRegistry, first, second):
    """Branch A (``first``'s groups) to the P hubs and v, branch B to the Q hubs."""
    a, b = base.next_block(first), base.next_block(second)
    for i in NAMES:
        mb = hubs[i].mailbox()
        mb.send(b"\x03" + (b if i in Q else a).to_bytes(), "forked block")
        for g in (*first, *second):
            if g.member(i) is not None and (i in Q) == (g in second):
                push_group(mb, g)
    return a, b


def test_a_forked_registry_does_not_isolate_a_household_across_days(hubs) -> None:
    f, p, q = _grp(hubs, "F", NAMES, D1), _grp(hubs, "P", P, D2), _grp(hubs, "Q", Q, D2)
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish([f])
    for i in NAMES:
        push_registry(hubs[i].mailbox(), reg)
        push_group(hubs[i].mailbox(), f)
    released = {"F": _sum(hubs, f, D1)}  # every member of F releases day 1 (one chain)
    assert released["F"] == _truth(hubs, NAMES, D1)
    _fork(hubs, reg, [p], [q])
    # the operator relays what tags it can: each branch's hubs tag their own head only
    relay_head_tags({i: hubs[i].mailbox() for i in NAMES})
    for gid, g in (("P", p), ("Q", q)):
        try:
            released[gid] = _sum(hubs, g, D2)
        except (HubRefused, Rejected):
            pass
    assert isolated_households(s for gid, s in (("F", f.meter_ids), ("P", p.meter_ids), ("Q", q.meter_ids))
                               if gid in released) == [], "F(d1) - P(d2) - Q(d2) isolates household v"
    # the refusal is the hubs' rule (6985), naming the co-members that did not tag the head
    with pytest.raises(HubRefused) as ei:
        hubs["p0"].mailbox().send(b"\x10" + _request("P", D2), "release on branch A")
    assert ei.value.sw == 0x6985


def _request(gid, day) -> bytes:
    from meterhub.model.formats.aggregation import AggregationRequest

    return AggregationRequest(gid, day).to_bytes()


def test_a_fork_before_any_release_gives_masks_that_do_not_cancel(hubs) -> None:
    """Fork first, release after: no hub has released under another head, but the masks
    of day 1 bind each hub's head, and F's members hold two: its sum stays hidden."""
    f, p, q = _grp(hubs, "F", NAMES, D1), _grp(hubs, "P", P, D2), _grp(hubs, "Q", Q, D2)
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish([f])
    for i in NAMES:
        push_registry(hubs[i].mailbox(), reg)
        push_group(hubs[i].mailbox(), f)
    _fork(hubs, reg, [p], [q])
    with pytest.raises(Rejected, match="out of range|product of the commitments"):
        _sum(hubs, f, D1)


def test_a_new_block_after_a_release_needs_every_co_members_tag(hubs) -> None:
    """The honest path: a later block (groups for a later day) is held by every hub; until
    the co-members' tags are relayed a hub that released refuses (6985), a forged tag is
    refused (6982), and after the relay the releases go on and verify."""
    f1, f2 = _grp(hubs, "F1", NAMES, D1), _grp(hubs, "F2", NAMES, D2)
    left = _grp(hubs, "L", ["v", *P], D2)
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish([f1])
    for i in NAMES:
        push_registry(hubs[i].mailbox(), reg)
        push_group(hubs[i].mailbox(), f1)
    assert _sum(hubs, f1, D1) == _truth(hubs, NAMES, D1)
    reg.publish([f2, left])
    for i in NAMES:
        push_registry(hubs[i].mailbox(), reg)
        push_group(hubs[i].mailbox(), f2)
    with pytest.raises(HubRefused) as ei:
        hubs["v"].mailbox().send(b"\x10" + _request("F2", D2), "before the tags")
    assert ei.value.sw == 0x6985
    # a tag the operator made up does not verify
    mine = HeadTags.from_bytes(hubs["v"].mailbox().send(b"\x05", "tags"))
    forged = HeadTags(mine.feeder_id, mine.version, mine.head, "v", (("p0", bytes(16)),))
    with pytest.raises(HubRefused) as ei:
        hubs["v"].mailbox().send(b"\x06" + forged.to_bytes(), "forged")
    assert ei.value.sw == 0x6982
    # tags over an older head are refused too
    old = HeadTags(mine.feeder_id, mine.version - 1, reg.blocks[0].chain_value(), "v", ())
    with pytest.raises(HubRefused) as ei:
        hubs["v"].mailbox().send(b"\x06" + old.to_bytes(), "old head")
    assert ei.value.sw == 0x6985
    assert relay_head_tags({i: hubs[i].mailbox() for i in NAMES}) == sorted(NAMES)
    assert _sum(hubs, f2, D2) == _truth(hubs, NAMES, D2)


def test_head_tags_parse_strictly() -> None:
    tags = HeadTags("f", 3, bytes(range(32)), "v", (("a", bytes(16)), ("a", b"\x01" * 16), ("b", bytes(16))))
    assert HeadTags.from_bytes(tags.to_bytes()) == tags
    raw = tags.to_bytes()
    for bad in (raw[:-1], raw + b"\x00", b"MHGH\x02" + raw[5:]):
        with pytest.raises(ValueError):
            HeadTags.from_bytes(bad)
    with pytest.raises(ValueError):
        HeadTags("f", 3, bytes(32), "v", (("b", bytes(16)), ("a", bytes(16)))).to_bytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 2**32 - 1))
def test_head_tags_parser_refuses_or_round_trips(junk: bytes, seed: int) -> None:
    """Arbitrary bytes, and mutations of a valid message: refused with the format's own
    error or parsed into a message that encodes to the same bytes."""
    rnd = random.Random(seed)
    valid = HeadTags("feeder-1", seed, bytes(range(32)), "m0",
                     tuple(sorted((f"p{k}", bytes([k]) * 16) for k in range(rnd.randint(0, 4))))).to_bytes()
    cut = rnd.randrange(len(valid) + 1)
    for raw in (junk, b"MHGH\x01" + junk, valid[:cut] + junk + valid[cut:]):
        try:
            out = HeadTags.from_bytes(raw)
        except FormatError:
            continue
        assert out.to_bytes() == raw
