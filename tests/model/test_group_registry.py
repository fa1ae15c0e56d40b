"""The group registry (meterhub.model.group_registry, docs/fraud.md): the exact span test, the
block format, the chain rules, equivocation (forked registries: masks do not cancel), no
retroactive groups, and regroupings that must still work."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_history, mutate_bytes
from meterhub.crypto import ecdsa
from meterhub.hub.aggregation import AGGREGATION_APP_AID
from meterhub.model.errors import FormatError
from meterhub.model.formats.aggregation import (
    GroupDefinition,
    GroupMember,
    PolicyRefusal,
    demo_group_key,
)
from meterhub.model.formats.membership import demo_certificates, demo_directory
from meterhub.model.group_registry import (
    RegistryBlock,
    RegistryView,
    isolated_households,
    reduced_rows,
    registry_problems,
    set_problems,
    span_digest,
)
from meterhub.utility.fraud import (
    GroupRegistry,
    collect_day,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    registry_head,
    verify_feeder_day,
)
from meterhub.utility.settlement import HubRefused
from meterhub.utility.verifier import Rejected
from test_fraud_aggregation import CODE_HASH, DAY, Hub, _inputs

SIGNER = [ecdsa.public_bytes(demo_group_key())]
YEAR = (date(2027, 1, 1), date(2027, 12, 31))


def _g(gid: str, names, valid=YEAR, feeder: str = "f") -> GroupDefinition:
    members = tuple(GroupMember(n, n.encode().ljust(32, b"\0")) for n in sorted(names))
    return GroupDefinition(gid, feeder, 60, valid[0], valid[1], members).signed(demo_group_key())


def _block(view: RegistryView, *groups, feeder: str = "f", key=None) -> RegistryBlock:
    return RegistryBlock(feeder, view.version + 1, view.head, groups).signed(key or demo_group_key())


def _h(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}{k:02d}" for k in range(start, start + n)]


# -- the exact span test -------------------------------------------------------------------------

def _rank(rows: list[list[int]]) -> int:
    m = [[Fraction(x) for x in r] for r in rows]
    r = 0
    for c in range(len(m[0]) if m else 0):
        piv = next((i for i in range(r, len(m)) if m[i][c]), None)
        if piv is None:
            continue
        m[r], m[piv] = m[piv], m[r]
        for i in range(len(m)):
            if i != r and m[i][c]:
                f = m[i][c] / m[r][c]
                m[i] = [x - f * y for x, y in zip(m[i], m[r], strict=True)]
        r += 1
    return r


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_isolation_matches_a_rank_test_over_the_rationals(seed: int) -> None:
    """``e_w`` is in the span iff appending it does not raise the rank (Fractions)."""
    rnd = random.Random(seed)
    n, m = rnd.randint(2, 10), rnd.randint(1, 8)
    sets = [frozenset(f"h{j}" for j in range(n) if rnd.random() < 0.5) or frozenset({"h0"}) for _ in range(m)]
    cols = sorted(set().union(*sets))
    rows = [[int(c in s) for c in cols] for s in sets]
    expect = [c for k, c in enumerate(cols)
              if _rank([*rows, [int(j == k) for j in range(len(cols))]]) == _rank(rows)]
    assert isolated_households(sets) == expect
    # the reduced rows span the same space and are as many as the rank
    cols2, red = reduced_rows(sets)
    assert cols2 == cols and len(red) == _rank(rows) == _rank([*rows, *map(list, red)])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_sum_or_difference_of_two_households_in_the_span_is_refused(seed: int) -> None:
    """Complete for pairs: ``e_v +- e_w`` in the span (a rank test over Fractions) iff
    the set test names a combination of two households (formerly
    ``tests/leaks/leak_registry_pair_sum.py``)."""
    rnd = random.Random(seed)
    n, m = rnd.randint(3, 9), rnd.randint(1, 6)
    sets = [frozenset(f"h{j}" for j in range(n) if rnd.random() < 0.6) or frozenset({"h0"}) for _ in range(m)]
    cols = sorted(set().union(*sets))
    rows = [[int(c in s) for c in cols] for s in sets]
    base = _rank(rows)
    pairs = set()
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            for sign in (1, -1):
                vec = [1 if k == i else sign if k == j else 0 for k in range(len(cols))]
                if _rank([*rows, vec]) == base and _rank([*rows, [int(k == i) for k in range(len(cols))]]) > base:
                    pairs.add((cols[i], cols[j]))  # in the span, and not because one household is
    named = {tuple(p.split("(")[1].rstrip(")").split(", ")) for p in set_problems([(str(k), s) for k, s in
                                                                                   enumerate(sets)], 5)
             if "combination of 2 households" in p}
    assert pairs <= named | {(b, a) for a, b in named} | _isolated_pairs(sets, cols)


def _isolated_pairs(sets, cols) -> set[tuple[str, str]]:
    """Pairs whose members are both isolated (reported as isolated households instead)."""
    iso = set(isolated_households(sets))
    return {(a, b) for a in cols for b in cols if a in iso and b in iso}


def test_the_pair_sum_of_three_groups_is_refused() -> None:
    """``G1 = {v} + X``, ``G2 = {w} + Y``, ``G3 = X + Y``: no household in the span, every
    two groups differ by at least 6, the reduced rows have 6, 6 and 10 households, but
    ``G1 + G2 - G3 = v + w``: refused as a combination of 2 households."""
    x, y = _h("x", 5), _h("y", 5)
    groups = [_g("G1", ["v", *x]), _g("G2", ["w", *y]), _g("G3", [*x, *y])]
    assert isolated_households(g.meter_ids for g in groups) == []
    assert "combination of 2 households (v, w)" in registry_problems(groups)[-1]


def test_span_digest_is_the_span_not_the_list() -> None:
    a, b = frozenset(_h("c", 6)), frozenset(_h("c", 6, 6))
    g = [_g("A", a), _g("B", b)]
    same = [_g("AB", a | b), _g("B2", b)]  # other groups, the same span
    assert span_digest(g) == span_digest(same) == span_digest([*g, *same])
    assert span_digest(g) != span_digest(g[:1]) != span_digest([])


def test_registry_problems_name_each_leak() -> None:
    c = _h("c", 12)
    assert registry_problems([_g("F", c), _g("L", c[:6]), _g("R", c[6:])]) == []
    assert "fewer than 5" in registry_problems([_g("S", c[:4])])[0]
    assert "differ by 1" in registry_problems([_g("F", c), _g("F-1", c[1:])])[-1]
    # groups that pairwise differ by at least 5 but combine to fewer households:
    # A - B + C = {c06, c07, c08} (no two of them differ by fewer than 5)
    p, q = _h("p", 5), _h("q", 5)
    probs = registry_problems([_g("A", c[6:9] + p), _g("B", p + q), _g("C", q)])
    assert probs and all("differ" not in p for p in probs)
    assert "combination of 3 households (c06, c07, c08)" in probs[0]
    # R2 brings households of its own: no small combination
    assert registry_problems([_g("F", c), _g("L", c[:6]), _g("R2", c[9:] + _h("x", 5))]) == []


# -- the block format ---------------------------------------------------------------------------

def _sample_block() -> RegistryBlock:
    return RegistryBlock("f", 3, bytes(range(32)), (_g("A", _h("c", 5)), _g("B", _h("c", 6, 5)))).signed(
        demo_group_key())


def test_block_round_trip_and_chain_value() -> None:
    b = _sample_block()
    raw = b.to_bytes()
    assert RegistryBlock.from_bytes(raw) == b and b.verify(demo_group_key().public_key())
    assert b.chain_value() == dataclasses.replace(b, signature=bytes(64)).chain_value()  # signature excluded
    assert b.chain_value() != dataclasses.replace(b, version=4).chain_value()
    with pytest.raises(FormatError):
        RegistryBlock("f", 0, bytes(32), ()).to_bytes()  # unsigned


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_block_parser_on_mutations(data) -> None:
    op, raw = mutate_bytes(data, _sample_block().to_bytes())
    try:
        out = RegistryBlock.from_bytes(bytes(raw))
    except FormatError:
        return
    assert op == "flip" and out.to_bytes() == bytes(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_block_parser_on_random_bytes(raw: bytes) -> None:
    try:
        out = RegistryBlock.from_bytes(raw)
    except FormatError:
        return
    assert out.to_bytes() == raw


# -- the chain rules ----------------------------------------------------------------------------

def test_a_block_must_extend_the_chain_held() -> None:
    v0 = RegistryView()
    b0 = _block(v0, _g("F", _h("c", 10)))
    v0.check_extension(b0, SIGNER, lambda d: False)
    v1 = v0.extended(b0)
    ok = _block(v1, _g("L", _h("c", 5)))
    v1.check_extension(ok, SIGNER, lambda d: False)
    bad = {
        "stale": dataclasses.replace(ok, version=0).signed(demo_group_key()),
        "gap": dataclasses.replace(ok, version=2).signed(demo_group_key()),
        "fork": dataclasses.replace(ok, prev=bytes(32)).signed(demo_group_key()),
        "other feeder": _block(v1, _g("L", _h("c", 5), feeder="g"), feeder="g"),
        "group of another feeder": _block(v1, _g("L", _h("c", 5), feeder="g")),
        "id taken": _block(v1, _g("F", _h("c", 5))),
        "15-minute group": _block(v1, dataclasses.replace(_g("Q", _h("c", 5)), interval_minutes=15)
                                  .signed(demo_group_key())),
    }
    for why, b in bad.items():
        with pytest.raises(PolicyRefusal):
            v1.check_extension(b, SIGNER, lambda d: False)
            pytest.fail(why)
    with pytest.raises(PermissionError):  # the block signed by another key
        v1.check_extension(_block(v1, _g("L", _h("c", 5)), key=ecdsa.generate_signing_key()), SIGNER, lambda d: False)
    other = ecdsa.generate_signing_key()
    with pytest.raises(PermissionError):  # a group inside signed by another key
        v1.check_extension(_block(v1, dataclasses.replace(_g("L", _h("c", 5))).signed(other)), SIGNER,
                           lambda d: False)


def test_legitimate_regroupings_still_work() -> None:
    """Localisation halves and quarters of a feeder, a reconfiguration that moves five
    customers, a new group for days not yet released, and the same members under a new
    id for a released day: all accepted."""
    reg = GroupRegistry("f", demo_group_key(), directory=demo_directory)
    c = _h("c", 20)
    jan, feb = (date(2027, 1, 1), date(2027, 1, 31)), (date(2027, 2, 1), date(2027, 2, 28))
    reg.publish([_g("F", c, jan), _g("L", c[:10], jan), _g("R", c[10:], jan)])
    reg.publish([_g("LL", c[:5], jan), _g("LR", c[5:10], jan)])
    # February: five customers moved to another transformer, five new ones connected
    released = {jan[0] + timedelta(days=k) for k in range(31)}
    reg.publish([_g("F2", c[5:] + _h("d", 5), feb)], released=lambda d: d in released)
    reg.publish([_g("F2-again", c[5:] + _h("d", 5), feb), _g("R-again", c[10:], jan)],
                released=lambda d: d in released)
    assert isolated_households(g.meter_ids for g in reg.view.groups.values()) == []
    # but a new span for a released day is refused (no retroactive groups)
    with pytest.raises(Rejected, match="released"):
        reg.publish([_g("late", c[10:15] + _h("e", 5), jan)], released=lambda d: d in released)


# -- on the cards: equivocation and retroactive groups ------------------------------------------

@pytest.fixture(scope="module")
def six(tmp_path_factory):
    base = tmp_path_factory.mktemp("registry")
    hubs = {}
    for k in range(6):
        h = make_history(start=DAY, n_days=2, seed=300 + k, meter_id=f"r{k}")
        hubs[h.registration.meter_id] = Hub(base / f"r{k}.sqlite", h)
    return hubs


def test_equivocation_makes_the_masks_not_cancel(six) -> None:
    """The grid operator shows half of a group one registry and the other half another
    (both extend the same first block and isolate no one on their own). The masks bind
    the day's span and the registry head the day is released under: on the day the two
    views give different spans, and on the day they give the same span, the masks do
    not cancel, the sum is hidden and the grid operator's check rejects it. A hub
    offered the other branch refuses it."""
    ids = sorted(six)
    g = make_group("eq", "f", {i: six[i].key for i in ids}, DAY, DAY + timedelta(days=1), demo_grid_key())
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish([g])
    day2 = DAY + timedelta(days=1)
    branch_a = reg.next_block([_g("xa", _h("x", 5), (day2, day2))])
    branch_b = reg.next_block([_g("xb", _h("y", 5), (day2, day2))])
    for k, i in enumerate(ids):
        mb = six[i].mailbox()
        push_registry(mb, reg)
        mb.send(b"\x03" + (branch_a if k < 3 else branch_b).to_bytes(), "fork")
        push_group(mb, g)
    assert registry_head(six[ids[0]].mailbox())[1] == branch_a.chain_value()
    assert registry_head(six[ids[5]].mailbox())[1] == branch_b.chain_value()
    boxes = {i: six[i].mailbox() for i in ids}
    rel, rec, _ = collect_day(boxes, g, DAY, AGGREGATION_APP_AID)  # DAY: the same span in both views
    regs, comms = _inputs(six, ids, DAY)
    with pytest.raises(Rejected, match="out of range|product of the commitments"):  # but two heads
        verify_feeder_day(g, DAY, rel, rec, regs, comms, code_hash=CODE_HASH)
    boxes = {i: six[i].mailbox() for i in ids}
    rel, rec, _ = collect_day(boxes, g, day2, AGGREGATION_APP_AID)
    regs, comms = _inputs(six, ids, day2)
    with pytest.raises(Rejected, match="out of range|product of the commitments"):
        verify_feeder_day(g, day2, rel, rec, regs, comms, code_hash=CODE_HASH)
    # the other branch's block is refused, and the operator's tool sees the fork
    with pytest.raises(HubRefused) as ei:
        six[ids[0]].mailbox().send(b"\x03" + branch_b.to_bytes(), "other branch")
    assert ei.value.sw == 0x6985
    reg_b = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg_b.blocks, reg_b.view = [*reg.blocks, branch_b], reg.view.extended(branch_b)
    with pytest.raises(Rejected, match="another registry"):
        push_registry(six[ids[0]].mailbox(), reg_b)
    # a resent block the hub holds is accepted without change
    reg_a = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg_a.blocks, reg_a.view = [*reg.blocks, branch_a], reg.view.extended(branch_a)
    push_registry(six[ids[0]].mailbox(), reg_a)
    six[ids[0]].mailbox().send(b"\x03" + reg.blocks[0].to_bytes(), "again")
    assert registry_head(six[ids[0]].mailbox())[1] == branch_a.chain_value()


def test_no_retroactive_group_after_a_release(six) -> None:
    """After the hubs released DAY (test above), a block that adds a new span to DAY is
    refused; one for a day not released is not."""
    ids = sorted(six)
    mb = six[ids[0]].mailbox()
    held, head = registry_head(mb)
    view = RegistryView("f", held - 1, head)
    late_g = _g("late", _h("z", 5), (DAY, DAY))
    late = RegistryBlock("f", held, head, (late_g,), certificates=tuple(demo_certificates([late_g]))
                         ).signed(demo_grid_key())
    with pytest.raises(HubRefused) as ei:
        mb.send(b"\x03" + late.to_bytes(), "late")
    assert ei.value.sw == 0x6985
    later = DAY + timedelta(days=3)
    fine_g = _g("later", _h("z", 5), (later, later))
    fine = RegistryBlock("f", held, head, (fine_g,), certificates=tuple(demo_certificates([fine_g]))
                         ).signed(demo_grid_key())
    mb.send(b"\x03" + fine.to_bytes(), "later")
    assert registry_head(six[ids[0]].mailbox()) == (held + 1, view.extended(fine).head)
