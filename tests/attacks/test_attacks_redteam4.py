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
