"""Red team, fourth round (issue 13): a hostile grid operator against the hub's side of
private feeder aggregation, through the applet's own STORE DATA messages (docs/fraud.md).

* FINDING tests: an attack that worked on the code under review; the test failed before
  the fix named in its docstring and passes after.
* REFUSED tests: attacks tried and correctly refused, kept where they add coverage (each
  says which check stops it; disabling that check makes the test fail).

Open findings whose fix is a design change are demonstrated in ``tests/leaks/leak_*.py``
(never collected; each runs on its own and fails while the leak is open).
"""

from __future__ import annotations

import os
import time
from datetime import date, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.model.formats.aggregation import (
    AggregationRequest,
    GroupDefinition,
    GroupMember,
    RecoveryRequest,
)
from meterhub.model.formats.membership import demo_certificates, demo_directory
from meterhub.model.group_registry import HeadTags, RegistryBlock
from meterhub.utility.fraud import (
    GroupRegistry,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    registry_head,
)
from meterhub.utility.settlement import HubRefused
from test_fraud_aggregation import DAY, Hub

# the answers a hub may give a hostile message: done, malformed, signature, policy, unknown
# group or day; never 6F00 (an exception the applet did not expect)
REFUSALS = {0x9000, 0x6A80, 0x6982, 0x6985, 0x6A88}


def _send(mb, message: bytes) -> int:
    try:
        mb.send(message, "hostile message")
    except HubRefused as exc:
        return exc.sw
    return 0x9000


def _certified_block(view_version: int, prev: bytes, *groups: GroupDefinition) -> RegistryBlock:
    return RegistryBlock("f", view_version, prev, tuple(groups),
                         certificates=tuple(demo_certificates(groups))).signed(demo_grid_key())


def _strangers(n: int, prefix: str = "x") -> dict[str, bytes]:
    """X25519 keys of other members (the demo certifier signs whatever it is given, so
    these stand for real, certified hubs that never answer on this card)."""
    return {f"{prefix}{k}": os.urandom(32) for k in range(n)}


@pytest.fixture()
def lone(tmp_path):
    """One real hub ``v`` (two days of readings) with an empty registry."""
    return Hub(tmp_path / "v.sqlite", make_history(start=DAY, n_days=2, seed=41, meter_id="v"))


# -- FINDING: a group valid until 9999-12-31 ------------------------------------------------------

def test_finding_a_group_valid_until_year_9999_neither_stalls_the_card_nor_answers_6f00(lone) -> None:
    """FINDING (fixed; availability): the no-retroactive-groups check walked every day of
    each new group's validity and asked the store whether the hub had released it. A
    registry block with one group valid from today to 9999-12-31 kept the card busy for
    about a minute (some 2.9 million store look-ups; the card serves the supplier's
    billing and settlement applets too, and a block may hold 256 such groups: hours),
    then overflowed the date and answered ``6F00``. The check now walks the days the hub
    released (the guard's own records): the block is accepted at once, and a group of
    the same validity that adds to a released day is still refused (``6985``)."""
    keys = {"v": lone.key} | _strangers(4)
    forever = make_group("forever", "f", keys, DAY, date(9999, 12, 31), demo_grid_key())
    mb = lone.mailbox()
    t0 = time.perf_counter()
    assert _send(mb, b"\x03" + _certified_block(0, bytes(32), forever).to_bytes()) == 0x9000
    assert time.perf_counter() - t0 < 10  # was about 60 s on this machine, then 6F00
    push_group(mb, forever)
    mb.send(b"\x10" + AggregationRequest("forever", DAY).to_bytes(), "release")  # the hub released DAY
    _, head = registry_head(mb)
    # a retroactive group valid until 9999 (its five members differ from ``forever`` by
    # five, so only the released day's span refuses it): still refused, still at once
    later = {"v": lone.key} | _strangers(5, "y")
    other = make_group("later", "f", later, DAY, date(9999, 12, 31), demo_grid_key())
    t0 = time.perf_counter()
    assert _send(mb, b"\x03" + _certified_block(1, head, other).to_bytes()) == 0x6985
    assert time.perf_counter() - t0 < 10
    # the same group from the next day on adds nothing to a released day: accepted
    ok = make_group("later", "f", later, DAY + timedelta(days=1), date(9999, 12, 31), demo_grid_key())
    assert _send(mb, b"\x03" + _certified_block(1, head, ok).to_bytes()) == 0x9000


# -- REFUSED: hostile messages of every kind, through the applet -----------------------------------

@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A hub that holds a one-group registry and released the group's first day, and the
    messages a hostile grid operator starts from."""
    hub = Hub(tmp_path_factory.mktemp("fuzz") / "v.sqlite",
              make_history(start=DAY, n_days=2, seed=42, meter_id="v"))
    keys = {"v": hub.key} | _strangers(5)
    g = make_group("G", "f", keys, DAY, DAY + timedelta(days=1), demo_grid_key())
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish([g])
    mb = hub.mailbox()
    push_registry(mb, reg)
    push_group(mb, g)
    mb.send(b"\x10" + AggregationRequest("G", DAY).to_bytes(), "release")
    tags = HeadTags.from_bytes(mb.send(b"\x05", "tags"))
    yield hub, keys, reg, tags
    hub.card.close()


_IDS = st.sampled_from(["v", "x0", "x1", "x2", "x3", "x4", "y0", "y1", "y2"])
_DATES = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))


@st.composite
def _hostile_group(draw, keys: dict[str, bytes]) -> GroupDefinition:
    """A group the grid operator signs with its real key: any members, validity,
    interval, feeder and id."""
    ids = sorted(draw(st.sets(_IDS, min_size=1, max_size=9)))
    first = draw(_DATES)
    last = draw(st.one_of(st.just(date(9999, 12, 31)), _DATES.filter(lambda d: d >= first)))
    last = max(first, last)
    members = tuple(GroupMember(i, keys.get(i) or draw(st.binary(min_size=32, max_size=32))) for i in ids)
    if len({m.hub_key for m in members}) != len(members):
        members = tuple(GroupMember(m.meter_id, os.urandom(32)) for m in members)
    return GroupDefinition(draw(st.sampled_from(["G", "H", "G2", "{x}"])), draw(st.sampled_from(["f", "g"])),
                           draw(st.sampled_from([15, 30, 60])), first, last, members).signed(demo_grid_key())


@settings(max_examples=60, deadline=None)
@given(st.data())
@example(None)  # the first example: the year-9999 group of the finding above, in a block
def test_refused_hostile_messages_of_every_kind_never_break_the_card(released, data) -> None:
    """REFUSED: signed group definitions and registry blocks with any validity (to
    9999-12-31), interval, feeder and members, head tags over any head, aggregation and
    unmasking requests for any group, day and member lists, each also cut or with a byte
    changed: every answer is a refusal with its status word or an honest acceptance,
    never ``6F00``; a refused block leaves the registry head unchanged. (Before the fix
    above the first example answered ``6F00``.)"""
    hub, keys, reg, tags = released
    mb = hub.mailbox()
    before = registry_head(mb)
    if data is None:  # the explicit example
        g = make_group("forever", "f", {"v": keys["v"]} | _strangers(4), DAY + timedelta(days=1),
                       date(9999, 12, 31), demo_grid_key())
        kind, raw = 0x03, _certified_block(before[0], before[1], g).to_bytes()
    else:
        kind = data.draw(st.sampled_from([0x01, 0x03, 0x06, 0x10, 0x11]))
        if kind == 0x01:
            raw = data.draw(_hostile_group(keys)).to_bytes()
        elif kind == 0x03:
            groups = data.draw(st.lists(_hostile_group(keys), min_size=1, max_size=3))
            version = data.draw(st.sampled_from([before[0], before[0] - 1, 0, 7]))
            block = RegistryBlock(groups[0].feeder_id, max(version, 0), before[1] if version == before[0] else bytes(32),
                                  tuple(groups), certificates=tuple(demo_certificates(groups)))
            raw = block.signed(demo_grid_key()).to_bytes()
        elif kind == 0x06:
            raw = HeadTags(tags.feeder_id, data.draw(st.sampled_from([tags.version, tags.version + 1])),
                           data.draw(st.sampled_from([tags.head, bytes(32)])), data.draw(_IDS),
                           tuple(sorted({(p, data.draw(st.binary(min_size=16, max_size=16))) for p, _ in
                                         tags.tags[: data.draw(st.integers(0, len(tags.tags)))]}))).to_bytes()
        elif kind == 0x10:
            raw = AggregationRequest(data.draw(st.sampled_from(["G", "H", "forever"])), data.draw(_DATES)).to_bytes()
        else:
            named = sorted(data.draw(st.sets(_IDS, min_size=1, max_size=6)))
            cut = data.draw(st.integers(0, len(named)))
            present = tuple((p, data.draw(st.sampled_from([b"", os.urandom(1566)]))) for p in named[cut:])
            raw = RecoveryRequest("G", data.draw(st.sampled_from([DAY, DAY + timedelta(days=1), date(9999, 12, 31)])),
                                  tuple(named[:cut]), present).to_bytes()
        mutation = data.draw(st.sampled_from(["none", "flip", "cut"]))
        if mutation == "flip":
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255))]) + raw[pos + 1 :]
        elif mutation == "cut":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    sw = _send(mb, bytes([kind]) + raw)
    assert sw in REFUSALS, f"message {kind:02X} answered {sw:04X}"
    if kind == 0x03 and sw != 0x9000:
        assert registry_head(mb) == before


# -- FINDING: a same-member copy added after a recovery ---------------------------------------------

SEVEN = ["x", "p1", "p2", "p3", "p4", "p5", "p6"]


@pytest.fixture()
def seven(tmp_path):
    """Seven hubs with two days of readings and an empty registry."""
    return {m: Hub(tmp_path / f"{m}.sqlite", make_history(start=DAY, n_days=2, seed=950 + k, meter_id=m))
            for k, m in enumerate(SEVEN)}


def _copy_after_recovery(seven) -> tuple[list[int] | None, GroupRegistry]:
    """The attack: a recovery of ``G`` on ``DAY`` that drops ``x``'s release, then a
    block that adds ``H``, a copy of ``G``, for the same day, unmasked complete: ``H -
    (G - x)`` is ``x``. Returns what the operator learns (``None`` if the hubs refuse)
    and its registry."""
    from meterhub.hub.aggregation import AGGREGATION_APP_AID
    from meterhub.utility.fraud import collect_day, relay_head_tags, verify_feeder_day
    from meterhub.utility.verifier import Rejected
    from test_fraud_aggregation import CODE_HASH, _inputs

    keys = {m: h.key for m, h in seven.items()}
    g = make_group("G", "f", keys, DAY, DAY, demo_grid_key())
    reg = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    reg.publish([g])
    for h in seven.values():
        push_registry(h.mailbox(), reg)
        push_group(h.mailbox(), g)
    # x releases the day (so that its day is bound to the same registry head as the
    # others'), the operator drops that release and names x missing: the present set G - x
    # is the only group of the day, so the present hubs admit it
    seven["x"].mailbox().send(b"\x10" + AggregationRequest("G", DAY).to_bytes(), "release of x")
    boxes = {m: (None if m == "x" else h.mailbox()) for m, h in seven.items()}
    rel, rec, missing = collect_day(boxes, g, DAY, AGGREGATION_APP_AID, registry=reg.view)
    assert missing == ["x"] and rec
    without_x = verify_feeder_day(g, DAY, rel, rec, *_inputs(seven, sorted(rel), DAY), code_hash=CODE_HASH).hours
    # a copy of G for the released day: "in the day's span already, nothing new"
    h_copy = make_group("H", "f", keys, DAY, DAY, demo_grid_key())
    reg.publish([h_copy], released={DAY})
    try:
        for h in seven.values():
            push_registry(h.mailbox(), reg)
        relay_head_tags({m: h.mailbox() for m, h in seven.items()})
        for h in seven.values():
            push_group(h.mailbox(), h_copy)
        rel, rec, missing = collect_day({m: h.mailbox() for m, h in seven.items()}, h_copy, DAY,
                                        AGGREGATION_APP_AID, registry=reg.view)
        if missing or not rec:
            return None, reg
        full = verify_feeder_day(h_copy, DAY, rel, rec, *_inputs(seven, sorted(rel), DAY), code_hash=CODE_HASH).hours
    except (HubRefused, Rejected):
        return None, reg
    return [a - b for a, b in zip(full, without_x, strict=True)], reg


def test_finding_a_copy_of_a_recovered_group_added_to_its_day_is_refused(seven) -> None:
    """FINDING (fixed; exact hourly readings of any member, one day per attack): the rule
    "no retroactive groups" let a block add a group to a released day if the group lay in
    the span of that day's *groups*, which reveals nothing new only if every group of the
    day was unmasked complete. After a recovery of ``G`` with ``x`` named missing (the
    operator may simply drop ``x``'s release), the day's groups still span ``G``, so a
    copy ``H`` of ``G`` for that day was accepted by every hub, released and unmasked
    complete (a complete unmasking was never checked against the recoveries the hub had
    answered), and ``H - (G - x)`` gave ``x``'s hourly readings. Now a hub that answered
    a recovery on a day refuses a group for that day outside the span of the day's
    vectors as it answered them (``6985``), and checks a complete unmasking against
    those vectors as well."""
    from test_fraud_aggregation import _truth

    learnt, reg = _copy_after_recovery(seven)
    assert learnt != _truth(seven, ["x"], DAY), "household x's hourly readings: a copy of G minus G without x"
    assert learnt is None
    # who refuses: every hub that answered the recovery (6985, the block is not held);
    # x, named missing, holds no present set for the day and accepts the block
    for m, h in seven.items():
        assert registry_head(h.mailbox())[0] == (2 if m == "x" else 1), m
        if m != "x":
            with pytest.raises(HubRefused) as ei:
                push_registry(h.mailbox(), reg)
            assert ei.value.sw == 0x6985


def test_finding_a_complete_unmasking_counts_the_recoveries_of_its_day() -> None:
    """FINDING (fixed, the second half): a complete unmasking was answered without any
    check, so a group ``H`` with the members of ``G``, once on the hub's registry for a
    day on which it answered ``G`` without ``x``, gave ``x``. The rule now checks the
    complete answer against the day's vectors as this hub answered them."""
    from meterhub.model.group_registry import recovery_problems

    g = frozenset(SEVEN)
    day = {"G": g, "H": g}
    assert recovery_problems(day, "H", g, {}) == []  # nothing answered that day: as before
    problems = recovery_problems(day, "H", g, {"G": g - {"x"}})
    assert problems and "isolate household x" in problems[0]
    # a copy of a group answered complete is fine
    assert recovery_problems(day, "H", g, {"G": g}) == []


def test_finding_a_union_of_a_recovered_half_and_its_other_half_is_refused() -> None:
    """FINDING (fixed, the union form of the copy attack): the feeder's halves ``L`` and
    ``R`` on a released day, ``L`` recovered without ``x``: the feeder ``F = L + R`` is in
    the span of the day's groups, and unmasked complete it gave ``F - R - (L - x) = x``.
    The block check now refuses ``F`` at a hub that answered ``L - x``, and still admits
    what the day already gave (a copy of ``R``; ``F`` where the halves were complete)."""
    from meterhub.model.formats.aggregation import PolicyRefusal
    from meterhub.model.group_registry import RegistryView

    left, right = ["x", "a1", "a2", "a3", "a4", "a5"], ["b1", "b2", "b3", "b4", "b5"]
    keys = {m: os.urandom(32) for m in left + right}

    def grp(gid: str, ids: list[str]) -> GroupDefinition:
        return make_group(gid, "f", {m: keys[m] for m in ids}, DAY, DAY, demo_grid_key())

    view = RegistryView().extended(_certified_block(0, bytes(32), grp("L", left), grp("R", right)))
    signer = [ecdsa.public_bytes(demo_grid_key())]
    answered = {DAY: {"L": frozenset(left) - {"x"}}}

    def add(g: GroupDefinition, answers) -> None:
        view.check_extension(_certified_block(1, view.head, g), signer, {DAY}, answered=answers)

    with pytest.raises(PolicyRefusal, match="would add to the span"):
        add(grp("F", left + right), answered)
    add(grp("R2", right), answered)  # nothing new: R was unmasked complete
    add(grp("F", left + right), {})  # the halves complete: F is their sum
    add(grp("F", left + right), {DAY + timedelta(days=1): answered[DAY]})  # a recovery of another day
