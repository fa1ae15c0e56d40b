"""A recovery round (the unmasking round with members missing) releases the sum of the
*present* members; the hub answers it only if that present set, with everything the
day's groups and this hub's earlier recoveries of the day give, keeps every household
out of the span (``meterhub.model.group_registry.recovery_problems``, docs/fraud.md).

The first two tests are the red team's demonstrations (formerly
``tests/leaks/leak_recovery_outside_span.py``), attack shape kept: they fail on the code
before the rule (the operator learns household ``v``'s hourly readings) and pass after.
The others are the honest paths: a dropped hub is recovered when its present set is
admitted and the day is reported incomplete; when no present set is admitted the day is
reported without a sum and nothing stalls.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from helpers import make_history
from meterhub.hub.aggregation import AGGREGATION_APP_AID
from meterhub.model.formats.aggregation import GroupDefinition, GroupMember, demo_group_key
from meterhub.model.formats.membership import demo_directory
from meterhub.model.group_registry import (
    RegistryBlock,
    RegistryView,
    recovery_problems,
    set_problems,
)
from meterhub.utility.fraud import (
    GroupRegistry,
    collect_day,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    recovery_missing,
    verify_feeder_day,
)
from meterhub.utility.settlement import HubRefused
from meterhub.utility.verifier import Rejected
from test_fraud_aggregation import CODE_HASH, DAY, Hub, _inputs, _truth

NAMES = ["v", *(f"a{k}" for k in range(5)), *(f"b{k}" for k in range(4))]


@pytest.fixture()
def ten(tmp_path):
    """Ten hubs with three days of readings and an empty registry (one per test: a card
    holds one registry per recipient, and each test publishes its own groups)."""
    return {n: Hub(tmp_path / f"{n}.sqlite", make_history(start=DAY, n_days=3, seed=900 + k, meter_id=n))
            for k, n in enumerate(NAMES)}


def _publish(ten, groups) -> GroupRegistry:
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish(groups)  # the operator's own tool: the registry passes the hubs' rules
    for i in ten:
        mb = ten[i].mailbox()
        push_registry(mb, reg)
        for g in groups:
            if g.member(i) is not None:
                push_group(mb, g)
    return reg


def _round(ten, g, asked, day=DAY, **kw):
    boxes = {m.meter_id: (ten[m.meter_id].mailbox() if m.meter_id in asked else None) for m in g.members}
    rel, rec, _ = collect_day(boxes, g, day, AGGREGATION_APP_AID, **kw)
    regs, comms = _inputs(ten, sorted(rel), day)
    return verify_feeder_day(g, day, rel, rec, regs, comms, code_hash=CODE_HASH)


def _grp(ten, gid, members, first=DAY, last=DAY):
    return make_group(gid, "f", {i: ten[i].key for i in members}, first, last, demo_grid_key())


# -- the red team's demonstrations ------------------------------------------------------------

def test_a_recovery_round_does_not_isolate_a_household(ten) -> None:
    """``G1 = {v} + A`` complete, ``G2 = A + B`` with ``B`` never asked: the present set
    ``A`` would give ``G1 - A = v``. The present hubs refuse the recovery."""
    a, b = [f"a{k}" for k in range(5)], [f"b{k}" for k in range(4)]
    g1, g2 = _grp(ten, "G1", ["v", *a]), _grp(ten, "G2", [*a, *b])
    _publish(ten, [g1, g2])
    s1 = _round(ten, g1, ["v", *a]).hours
    learnt = None
    try:
        s2 = _round(ten, g2, a).hours  # the b hubs "unreachable": a recovery for them
        learnt = [x - y for x, y in zip(s1, s2, strict=True)]
    except (HubRefused, Rejected):
        pass
    assert learnt != _truth(ten, ["v"], DAY), "household v's hourly readings of the day, from two groups and a recovery"
    # the refusal is the hub's rule, with its reason (6985), not a transport failure
    with pytest.raises(HubRefused) as ei:
        ten["a0"].mailbox().send(b"\x11" + _missing_request(g2, DAY, tuple(b)), "recovery")
    assert ei.value.sw == 0x6985


def _missing_request(g: GroupDefinition, day: date, missing: tuple[str, ...]) -> bytes:
    from meterhub.model.formats.aggregation import RecoveryRequest

    return RecoveryRequest(g.group_id, day, missing).to_bytes()


def test_a_feeder_and_its_halves_with_a_recovery_do_not_isolate_a_household(ten) -> None:
    """The demo's own registry shape (a feeder group and its cable segments): both halves
    complete, the feeder without ``v``: ``L + R - (F - v) = v``, any member, any day."""
    day = DAY + timedelta(days=1)
    left, right = ["v", "a0", "a1", "a2", "a3"], ["a4", "b0", "b1", "b2", "b3"]
    grp = {gid: _grp(ten, gid, ms, day, day) for gid, ms in (("F", NAMES), ("L", left), ("R", right))}
    _publish(ten, list(grp.values()))
    learnt = None
    try:
        sl, sr = _round(ten, grp["L"], left, day).hours, _round(ten, grp["R"], right, day).hours
        sf = _round(ten, grp["F"], [n for n in NAMES if n != "v"], day).hours
        learnt = [x + y - z for x, y, z in zip(sl, sr, sf, strict=True)]
    except (HubRefused, Rejected):
        pass
    assert learnt != _truth(ten, ["v"], day), "household v's hourly readings from the feeder, its halves and a recovery"


# -- the honest paths -------------------------------------------------------------------------

def test_a_dropped_hub_is_recovered_when_its_present_set_is_admitted(ten) -> None:
    """One group on the day: a dropped hub's present set (9 of 10) is admitted, the day is
    verified and reported incomplete; two dropped hubs on the next day likewise (8 of
    10, above the seeds' threshold ``t = 6``)."""
    g = _grp(ten, "F", NAMES, DAY, DAY + timedelta(days=1))
    reg = _publish(ten, [g])
    fd = _round(ten, g, [n for n in NAMES if n != "a2"], registry=reg.view)
    assert not fd.complete and fd.missing == ["a2"]
    assert fd.hours == _truth(ten, [n for n in NAMES if n != "a2"], DAY)
    day = DAY + timedelta(days=1)
    fd = _round(ten, g, [n for n in NAMES if n not in ("v", "b3")], day, registry=reg.view)
    assert fd.missing == ["b3", "v"] and fd.hours == _truth(ten, [n for n in NAMES if n not in ("v", "b3")], day)


def test_no_admitted_present_set_is_reported_not_stalled(ten) -> None:
    """The feeder and its halves on the day: the present set ``F - x`` is refused (it gives
    ``x``), the one without x's half is ``R`` (5 members, below ``t + 1 = 7`` holders of
    each seed): the operator's tool names no recovery, no hub spends its unmasking answer,
    the day of ``F`` has no sum, and the halves' own rounds still verify."""
    left, right = ["v", "a0", "a1", "a2", "a3"], ["a4", "b0", "b1", "b2", "b3"]
    grp = {gid: _grp(ten, gid, ms) for gid, ms in (("F", NAMES), ("L", left), ("R", right))}
    reg = _publish(ten, list(grp.values()))
    boxes = {n: (None if n == "a1" else ten[n].mailbox()) for n in NAMES}
    assert recovery_missing(reg.view, grp["F"], DAY, ["a1"]) is None
    rel, rec, missing = collect_day(boxes, grp["F"], DAY, AGGREGATION_APP_AID, registry=reg.view)
    assert missing == ["a1"] and rec == {}  # reported without a sum
    with pytest.raises(Rejected):
        verify_feeder_day(grp["F"], DAY, rel, rec, *_inputs(ten, sorted(rel), DAY), code_hash=CODE_HASH)
    # the operator insisting on "a1 missing" is refused by the present hubs (6985) ...
    with pytest.raises(HubRefused) as ei:
        ten["b0"].mailbox().send(b"\x11" + _missing_request(grp["F"], DAY, ("a1",)), "recovery")
    assert ei.value.sw == 0x6985
    # ... and nothing stalls: the right half is complete and verifies that day
    assert _round(ten, grp["R"], right).hours == _truth(ten, right, DAY)


def test_a_same_member_group_answered_complete_blocks_a_recovery_of_its_copy(ten) -> None:
    """Two groups of the same members on one day (equal sets are allowed: nothing new):
    one unmasked complete, the other with ``x`` missing would give ``x``."""
    ga, gb = _grp(ten, "A", NAMES), _grp(ten, "B", NAMES)
    reg = _publish(ten, [ga, gb])
    full = _round(ten, ga, NAMES)
    assert full.complete
    assert recovery_missing(reg.view, gb, DAY, ["v"]) is None
    with pytest.raises((HubRefused, Rejected)):
        _round(ten, gb, [n for n in NAMES if n != "v"])


# -- the rule itself (pure) -------------------------------------------------------------------

def _h(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{k:02d}" for k in range(n)]


def test_recoveries_the_hub_does_not_see_cannot_be_chained() -> None:
    """Three recoveries of three groups on one day, answered by three sets of hubs none of
    which holds all three present sets: ``(v + X) - (X + Y) + Y = v``. Each present set
    passes the span check of its own hubs (the other groups complete, their own earlier
    recoveries in place of theirs), so the rule also needs the group to split the day's
    span; the three groups cross each other and each recovery is refused."""
    x, y, a, b, c = _h("x", 10), _h("y", 10), _h("a", 4), _h("b", 2), _h("c", 4)
    day = {"G1": frozenset(["v", *x, *a]), "G2": frozenset([*x, *y, *b]), "G3": frozenset([*y, *c])}
    assert set_problems(list(day.items())) == []  # the registry is fine
    p = {"G1": frozenset(["v", *x]), "G2": frozenset([*x, *y]), "G3": frozenset(y)}
    # what each set of hubs would see: the v hub G1 only, the X hubs G1 and G2, the Y hubs G2 and G3
    for seen in ({"G1"}, {"G1", "G2"}, {"G2", "G3"}):
        assert set_problems([(gid, p[gid] if gid in seen else s) for gid, s in day.items()]) == [], seen
    assert "isolate household v" in set_problems(list(p.items()))[0]
    for gid in day:
        assert "cross group" in recovery_problems(day, gid, p[gid], {})[0]


def test_the_present_sets_a_hub_answered_replace_their_groups() -> None:
    """What the operator learns of a group with a recovery is its present set, not the
    group: the hub counts the present set it recorded in place of the group, in both
    directions (``recovery_problems``'s ``answered``)."""
    g, k = frozenset(_h("c", 24)), frozenset(_h("c", 12))
    day = {"G": g, "K": k}
    p_k = k - {"c03"}
    # the group complete: K without c03 leaves G - (K - c03) = 13 households, fine
    assert not recovery_problems(day, "K", p_k, {})
    # G recovered earlier that day as K without c05: K - c03 differs from it by two
    assert "differ by 2" in recovery_problems(day, "K", p_k, {"G": k - {"c05"}})[0]
    # and with G recovered as its other half, K - c03 gives nothing new
    assert not recovery_problems(day, "K", p_k, {"G": g - k})


def test_recovery_missing_drops_a_segment_of_a_large_feeder() -> None:
    """A feeder of 24 with halves and quarters (the demo's cable segments): one member
    dropped; ``F - x`` is refused (the quarters give ``x``), ``F`` without ``x``'s quarter
    (18 present, ``t = 16``) is admitted and in the registry's span."""
    names = _h("c", 24)

    def g(gid: str, ms: list[str]) -> GroupDefinition:
        members = tuple(GroupMember(n, n.encode().ljust(32, b"\0")) for n in sorted(ms))
        return GroupDefinition(gid, "f", 60, DAY, DAY, members).signed(demo_group_key())

    parts = [g("F", names), g("L", names[:12]), g("R", names[12:])]
    parts += [g(f"Q{k}", names[6 * k : 6 * k + 6]) for k in range(4)]
    view = RegistryView()
    from meterhub.crypto import ecdsa

    view.check_extension(RegistryBlock("f", 0, bytes(32), tuple(parts)).signed(demo_group_key()),
                         [ecdsa.public_bytes(demo_group_key())], lambda d: False)
    view = view.extended(RegistryBlock("f", 0, bytes(32), tuple(parts)).signed(demo_group_key()))
    assert view.recovery_problems("F", DAY, frozenset(names) - {"c07"}, {})
    assert recovery_missing(view, parts[0], DAY, ["c07"]) == tuple(names[6:12])
    assert recovery_missing(view, parts[0], DAY, ["c07", "c20"]) is None  # 12 present < t + 1
