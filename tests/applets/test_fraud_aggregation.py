"""Private verified aggregation: zero-sum masks, the aggregation applet and its policy,
the grid operator's check, recovery of a dropped hub, power loss mid-round, parsers."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_history, mutate_bytes
from meterhub.card import Card, PowerLoss
from meterhub.crypto import ecdsa, zerosum
from meterhub.crypto.group import Q
from meterhub.demo.hubs import demo_tsm, provision_demo_hub
from meterhub.hub.aggregation import AGGREGATION_APP_AID
from meterhub.hub.secure_element import (
    RECIPIENT_SDS,
    ReadingsClient,
)
from meterhub.model.formats.aggregation import (
    AggregationRequest,
    FormatError,
    GroupDefinition,
    GroupMember,
    MaskedRelease,
    RecoveryRelease,
    RecoveryRequest,
    mask_context,
)
from meterhub.model.formats.membership import demo_certificates, demo_directory
from meterhub.model.group_registry import RegistryBlock
from meterhub.utility.fraud import (
    AGGREGATION_CLASS,
    GroupRegistry,
    collect_day,
    demo_grid_key,
    hub_key,
    make_group,
    push_group,
    push_registry,
    relay_head_tags,
    verify_feeder_day,
)
from meterhub.utility.settlement import AppletMailbox, HubRefused, expected_code_hash
from meterhub.utility.verifier import Rejected

GRID = RECIPIENT_SDS["grid-operator"]
CODE_HASH = bytes.fromhex(expected_code_hash(AGGREGATION_CLASS))
DAY = date(2027, 3, 27)  # the spring DST change follows: 23 hours on 2027-03-28


class Hub:
    def __init__(self, path, h) -> None:
        self.path, self.h = path, h
        self.card = provision_demo_hub(path, ("aggregation",))  # the group key: demo_grid_key()
        rc = ReadingsClient(self.card.transmit, AGGREGATION_APP_AID)
        rc.select()
        rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
        for d in h.days:
            rc.put_openings(d.batch.batch.day, d.first_index, d.openings)
        self.key = hub_key(self.mailbox())

    def mailbox(self) -> AppletMailbox:
        t = demo_tsm(self.card, "grid-operator")
        t.open()
        return AppletMailbox(t, AGGREGATION_APP_AID)

    def reopen(self) -> None:
        self.card.close()
        self.card = Card(self.path)
        self.card.power_on()


class Feeder(dict):
    """The feeder's hubs and the grid operator's group registry, which every hub holds."""

    registry: GroupRegistry

    def publish(self, g: GroupDefinition) -> GroupDefinition:
        if g.group_id not in self.registry.view.groups:
            self.registry.publish([g])
        for hub in self.values():
            push_registry(hub.mailbox(), self.registry)
        # hubs that released under the old head need their co-members' tags over the new one
        relay_head_tags({i: hub.mailbox() for i, hub in self.items()})
        return self.registry.group(g.group_id)


@pytest.fixture(scope="module")
def feeder(tmp_path_factory):
    base = tmp_path_factory.mktemp("feeder")
    hubs = Feeder()
    hubs.registry = GroupRegistry("f1", demo_grid_key(), directory=demo_directory)
    for k in range(7):
        h = make_history(start=DAY, n_days=6, seed=100 + k, meter_id=f"m{k}")
        hubs[h.registration.meter_id] = Hub(base / f"m{k}.sqlite", h)
    return hubs


def _unpublished(hubs, ids, gid="feeder-1", days=(DAY, DAY + timedelta(days=1)), **kw):
    return make_group(gid, "f1", {i: hubs[i].key for i in ids}, days[0], days[1], demo_grid_key(), **kw)


def _group(hubs, ids, gid="feeder-1", days=(DAY, DAY + timedelta(days=1)), **kw):
    """A group the grid operator published in the feeder's registry. A test with a
    recovery gives its group days of its own: another group of the same members answered
    complete on the day would give the missing member's sum (docs/fraud.md)."""
    return hubs.publish(_unpublished(hubs, ids, gid, days, **kw))


def _inputs(hubs, ids, day):
    regs = {i: hubs[i].h.registration for i in ids}
    k = (day - DAY).days
    comms = {i: [hubs[i].h.day_commitments()[k]] for i in ids}
    return regs, comms


def _truth(hubs, ids, day):
    k = (day - DAY).days
    out = None
    for i in ids:
        r = hubs[i].h.readings[k]
        hours = [sum(r[j : j + 4]) for j in range(0, len(r), 4)]
        out = hours if out is None else [a + b for a, b in zip(out, hours, strict=True)]
    return out


# -- masks ------------------------------------------------------------------------------

def test_masks_cancel_exactly() -> None:
    keys = [zerosum.generate_private_key() for _ in range(9)]
    pubs = [zerosum.public_key_bytes(k) for k in keys]
    ctx = mask_context("g", DAY, 24, bytes(32))
    cols = []
    for k, own in zip(keys, pubs, strict=True):
        pairs = [zerosum.pair_key(k, p) for p in pubs if p != own]
        cols.append(zerosum.member_masks(pairs, ctx, 300))  # crosses the HKDF block size
    assert zerosum.sum_masks(cols) == [0] * 300
    assert all(len(set(c)) == 300 for c in cols)  # each member's masks look random
    # another context gives other masks
    other = zerosum.member_masks([zerosum.pair_key(keys[0], pubs[1])], mask_context("g", DAY, 23, bytes(32)), 3)
    assert other != zerosum.member_masks([zerosum.pair_key(keys[0], pubs[1])], ctx, 3)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 12), st.integers(1, 60), st.text("abcxyz-", min_size=1, max_size=10))
def test_masks_cancel_for_any_group(n: int, count: int, gid: str) -> None:
    keys = [zerosum.generate_private_key() for _ in range(n)]
    pubs = [zerosum.public_key_bytes(k) for k in keys]
    ctx = mask_context(gid, DAY, 24, bytes(32))
    cols = [zerosum.member_masks([zerosum.pair_key(k, p) for p in pubs if p != own], ctx, count)
            for k, own in zip(keys, pubs, strict=True)]
    assert zerosum.sum_masks(cols) == [0] * count
    # any proper subset leaves a non-zero mask: a partial sum is not revealed
    if n > 2:
        assert zerosum.sum_masks(cols[:-1]) != [0] * count


def test_pair_key_refusals() -> None:
    k = zerosum.generate_private_key()
    with pytest.raises(zerosum.ZeroSumError):
        zerosum.pair_key(k, zerosum.public_key_bytes(k))
    with pytest.raises(zerosum.ZeroSumError):
        zerosum.pair_key(k, bytes(32))  # low-order point: all-zero shared secret
    with pytest.raises(zerosum.ZeroSumError):
        zerosum.pair_key(k, bytes(31))


# -- the protocol ------------------------------------------------------------------------------

def test_feeder_sum_verifies_and_equals_the_readings(feeder) -> None:
    ids = sorted(feeder)[:6]
    g = _group(feeder, ids)
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    for day in (DAY, DAY + timedelta(days=1)):
        rel, rec, missing = collect_day({i: feeder[i].mailbox() for i in ids}, g, day, AGGREGATION_APP_AID)
        # no dropout: the unmasking round asks only for each hub's self-mask share sum
        assert not missing and set(rec) == set(rel)
        assert all(not r.missing and set(r.values) == {(0, 0)} and r.present == tuple(i for i in ids if i != m)
                   and len(r.share) == len(r.values) for m, r in rec.items())
        # t - 1 = 3 of each release's 5 shares are derived from the pair secrets, 2 travel sealed
        assert all(len(r.shares) == 2 for r in rel.values())
        # no single release reveals its hub's sums
        k = (day - DAY).days
        own = feeder[ids[0]].h.readings[k]
        assert rel[ids[0]].values[0][0] != sum(own[:4])
        regs, comms = _inputs(feeder, ids, day)
        fd = verify_feeder_day(g, day, rel, rec, regs, comms, code_hash=CODE_HASH)
        assert fd.complete and fd.hours == _truth(feeder, ids, day)
        assert len(fd.hours) == (23 if day == date(2027, 3, 28) else 24)


def test_a_hub_lying_about_its_blinding_is_caught(feeder) -> None:
    ids = sorted(feeder)[:6]
    g = _group(feeder, ids)
    rel, rec, _ = collect_day({i: feeder[i].mailbox() for i in ids}, g, DAY, AGGREGATION_APP_AID)
    regs, comms = _inputs(feeder, ids, DAY)
    liar = ids[2]
    v = list(rel[liar].values)
    for what in ("blinding", "reading", "both"):
        a, b = v[5]
        if what == "blinding":
            bad = (a, (b + 1) % Q)
        elif what == "reading":
            bad = ((a - 100) % Q, b)  # under-report 100 Wh in hour 5
        else:
            bad = ((a - 100) % Q, (b - 7) % Q)
        forged = dict(rel)
        forged[liar] = dataclasses.replace(rel[liar], values=tuple(v[:5] + [bad] + v[6:]))
        with pytest.raises(Rejected, match="hour 5: the product of the commitments"):
            verify_feeder_day(g, DAY, forged, rec, regs, comms, code_hash=CODE_HASH)
    # releases from another applet's code, another day or a foreign member
    with pytest.raises(Rejected, match="code hash"):
        verify_feeder_day(g, DAY, rel, rec, regs, comms, code_hash=bytes(32))
    with pytest.raises(Rejected, match="not a member"):
        verify_feeder_day(g, DAY, {**rel, "m6": rel[liar]}, rec, regs, comms)
    moved = {**rel, liar: dataclasses.replace(rel[liar], first_index=rel[liar].first_index + 1)}
    with pytest.raises(Rejected, match="starts at reading"):
        verify_feeder_day(g, DAY, moved, rec, regs, comms)


def test_dropped_hub_is_recovered_and_reported_incomplete(feeder) -> None:
    ids = sorted(feeder)[:6]
    day = DAY + timedelta(days=2)
    g = _group(feeder, ids, gid="dropout", days=(day, day))  # a day no other group of these members has
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    boxes = {i: feeder[i].mailbox() for i in ids}
    boxes[ids[4]] = None  # does not answer
    rel, rec, missing = collect_day(boxes, g, day, AGGREGATION_APP_AID)
    assert missing == [ids[4]] and set(rec) == set(rel)
    regs, comms = _inputs(feeder, ids, day)
    fd = verify_feeder_day(g, day, rel, rec, regs, comms, code_hash=CODE_HASH)
    present = [i for i in ids if i != ids[4]]
    assert not fd.complete and fd.missing == [ids[4]] and fd.hours == _truth(feeder, present, day)
    # a recovery term is the missing hub's pairwise masks only: it does not unmask its sender
    k = 2
    own = feeder[ids[0]].h.readings[k]
    a, _ = rel[ids[0]].values[0]
    assert (a - rec[ids[0]].values[0][0]) % Q != sum(own[:4])
    # another missing set is refused (ids[3] was answered as present, and one round per day)
    other = b"\x11" + RecoveryRequest(g.group_id, day, (ids[3],)).to_bytes()
    with pytest.raises(HubRefused) as ei:
        feeder[ids[0]].mailbox().send(other, "second recovery")
    assert ei.value.sw == 0x6985
    # the same round again gets the same answers (idempotent: the releases' sealed shares
    # are the stored bytes, so the unmasking requests are the same too)
    boxes = {i: feeder[i].mailbox() for i in ids}
    boxes[ids[4]] = None
    rel2, rec2, _ = collect_day(boxes, g, day, AGGREGATION_APP_AID)
    assert rel2 == rel and rec2 == rec


def test_recovery_policy(feeder) -> None:
    ids = sorted(feeder)[:6]
    g = _group(feeder, ids)
    mb = feeder[ids[1]].mailbox()
    push_group(mb, g)
    # before its own release for the day
    req = RecoveryRequest(g.group_id, DAY + timedelta(days=5), (ids[0],))
    with pytest.raises(HubRefused):
        mb.send(b"\x11" + req.to_bytes(), "early")
    mb.send(b"\x10" + AggregationRequest(g.group_id, DAY).to_bytes(), "release")
    for missing, why in (((ids[1],),  "itself"), ((ids[0], ids[2]), "too few left"), (("zz",), "not a member")):
        with pytest.raises(HubRefused) as ei:
            mb.send(b"\x11" + RecoveryRequest(g.group_id, DAY, missing).to_bytes(), why)
        assert ei.value.sw == 0x6985, why


def test_group_policy_refusals(feeder, tmp_path) -> None:
    ids = sorted(feeder)
    hub = feeder[ids[0]]
    base = _group(feeder, ids[:6], gid="base")
    mb = hub.mailbox()  # (publishing opened sessions of its own)
    push_group(mb, base)
    cases = {
        "below the minimum": _unpublished(feeder, ids[:4], gid="small"),
        "differs by one member": _unpublished(feeder, ids[:7], gid="plus-one"),
        "differs by two": _unpublished(feeder, ids[:5] + ids[6:7], gid="swap"),
        "other interval": _unpublished(feeder, ids[:6], gid="quarter", interval_minutes=15),
        "same id, other content": _unpublished(feeder, ids[:5], gid="base"),
    }
    for why, g in cases.items():
        # a block of the registry with it is refused, and the group is not in the registry
        with pytest.raises(HubRefused) as ei:
            mb.send(b"\x03" + feeder.registry.next_block([g]).to_bytes(), why)
        assert ei.value.sw == 0x6985, why
        with pytest.raises(HubRefused) as ei:
            push_group(mb, g)
        assert ei.value.sw == 0x6985, why
    # the hub's own rules for a group in the registry: a member with this applet's key
    later = DAY + timedelta(days=5)  # (a new span for a released day would be refused)
    outsiders = make_group("without", "f1", {f"x{k}": bytes([k + 40]) * 32 for k in range(5)}, later, later,
                           demo_grid_key())
    outsiders = feeder.publish(outsiders)
    mb = hub.mailbox()
    with pytest.raises(HubRefused) as ei:
        push_group(mb, outsiders)
    assert ei.value.sw == 0x6985
    # signed by someone else
    forged = _unpublished(feeder, ids[:6], gid="forged")
    forged = dataclasses.replace(forged, signature=bytes(64)).signed(ecdsa.generate_signing_key())
    with pytest.raises(HubRefused) as ei:
        push_group(mb, forged)
    assert ei.value.sw == 0x6982
    # another key listed for this hub: where another group of those days lists the hub's
    # own key the registry itself is refused (one household, one key: group_registry._key_conflicts) ...
    keys = {i: feeder[i].key for i in ids[:6]}
    keys[ids[0]] = feeder[ids[6]].key
    with pytest.raises(Rejected, match="different hub keys"):
        feeder.publish(make_group("wrongkey-day", "f1", keys, DAY, DAY, demo_grid_key()))
    # ... and on days no other group lists the hub, its own admission rule refuses it
    wrongkey = feeder.publish(make_group("wrongkey", "f1", keys, DAY + timedelta(days=6), DAY + timedelta(days=6),
                                         demo_grid_key()))
    with pytest.raises(HubRefused):
        push_group(hub.mailbox(), wrongkey)
    # a member key that is a low-order point (all-zero shared secret)
    keys = {i: feeder[i].key for i in ids[:6]}
    keys[ids[5]] = bytes(32)
    loworder = feeder.publish(make_group("loworder", "f1", keys, DAY + timedelta(days=7), DAY + timedelta(days=7),
                                         demo_grid_key()))
    with pytest.raises(HubRefused) as ei:
        push_group(hub.mailbox(), loworder)
    assert ei.value.sw == 0x6A80
    # the same members again under a new id are fine (nothing new to learn)
    again = _group(feeder, ids[:6], gid="again")
    mb = hub.mailbox()
    push_group(mb, again)
    # a malformed definition
    with pytest.raises(HubRefused) as ei:
        mb.send(b"\x01" + b"MHAG\x01garbage", "junk")
    assert ei.value.sw == 0x6A80


def test_power_loss_mid_round(feeder, tmp_path) -> None:
    """Tear a fresh hub's card at every write of a release and of a recovery: after the
    restart the hub answers the round again (the recovery identically; the release with
    a fresh self-mask, since the torn one never left the card), and a recovery that may have
    left the card still blocks a recovery with other missing members."""
    h = make_history(start=DAY, n_days=2, seed=99, meter_id="m9")
    hub = Hub(tmp_path / "m9.sqlite", h)
    others = sorted(feeder)[:5]
    keys = {i: feeder[i].key for i in others} | {"m9": hub.key}
    g = make_group("torn", "f9", keys, DAY, DAY + timedelta(days=1), demo_grid_key())
    push_registry(hub.mailbox(), [RegistryBlock("f9", 0, bytes(32), (g,), certificates=tuple(demo_certificates([g]))
                                                ).signed(demo_grid_key())])
    push_group(hub.mailbox(), g)
    day = DAY + timedelta(days=1)
    rel_req = b"\x10" + AggregationRequest(g.group_id, day).to_bytes()
    rec_req = b"\x11" + RecoveryRequest(g.group_id, day, (others[0],)).to_bytes()
    other_rec = b"\x11" + RecoveryRequest(g.group_id, day, (others[1],)).to_bytes()
    for req in (rel_req, rec_req):
        # count the write points of a first answer on a copy of the card's file
        probe_path = tmp_path / "probe.sqlite"
        hub.card.close()
        for ext in ("", "-wal", "-shm", ".sk"):  # SQLite in WAL mode; the sealed store's key
            src = Path(str(hub.path) + ext)
            if src.exists():
                shutil.copy(src, Path(str(probe_path) + ext))
        probe = Card(probe_path)
        probe.power_on()
        t = demo_tsm(probe, "grid-operator")
        t.open()
        counter = _Tear(-1)
        probe.store.fault_hook = counter
        expected = AppletMailbox(t, AGGREGATION_APP_AID).send(req, "count")
        probe.close()
        assert counter.calls >= 1
        for at in range(1, counter.calls + 1):
            hub.reopen()
            mb = hub.mailbox()
            hub.card.store.fault_hook = _Tear(at)
            with pytest.raises(PowerLoss):
                mb.send(req, "torn")
        hub.reopen()
        got = hub.mailbox().send(req, "after restart")
        if req is rel_req:  # a fresh self-mask per answer: only its shape repeats
            a, e = MaskedRelease.from_bytes(got), MaskedRelease.from_bytes(expected)
            assert (a.group_id, a.meter_id, a.day, a.first_index, len(a.values), [i for i, _ in a.shares]) == (
                e.group_id, e.meter_id, e.day, e.first_index, len(e.values), [i for i, _ in e.shares])
        else:  # the pairwise masks are deterministic
            assert got == expected
        assert hub.mailbox().send(req, "re-ask") == got  # once out, the same bytes
    with pytest.raises(HubRefused):
        hub.mailbox().send(other_rec, "other recovery")


class _Tear:
    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, what: str, n: int) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise PowerLoss(what)


# -- parsers --------------------------------------------------------------------------------

def _sample_group() -> GroupDefinition:
    members = tuple(GroupMember(f"m{k}", bytes([k + 1]) * 32) for k in range(5))
    return GroupDefinition("g-1", "f-1", 60, DAY, DAY + timedelta(days=30), members).signed(demo_grid_key())


def _samples() -> list[bytes]:
    g = _sample_group()
    return [
        g.to_bytes(),
        AggregationRequest("g-1", DAY).to_bytes(),
        MaskedRelease("g-1", "m0", DAY, 96, bytes(32), ((1, 2), (Q - 1, 0)),
                      (("m1", bytes(158)), ("m3", b"\x07" * 158))).to_bytes(),  # 2 intervals: 4 scalars sealed
        RecoveryRequest("g-1", DAY, ("m1", "m2"), (("m3", bytes(94)), ("m4", b""))).to_bytes(),
        RecoveryRelease("g-1", "m0", DAY, ("m1",), ("m2", "m3"), ((3, 4),), ((5, Q - 1),)).to_bytes(),
    ]


_CLASSES = (GroupDefinition, AggregationRequest, MaskedRelease, RecoveryRequest, RecoveryRelease)


def test_round_trips() -> None:
    for cls, raw in zip(_CLASSES, _samples(), strict=True):
        assert cls.from_bytes(raw).to_bytes() == raw
    assert GroupDefinition.from_bytes(_samples()[0]).verify(demo_grid_key().public_key())


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4), st.data())
def test_parsers_on_mutations(which: int, data) -> None:
    op, raw = mutate_bytes(data, _samples()[which])
    cls = _CLASSES[which]
    try:
        out = cls.from_bytes(bytes(raw))
    except FormatError:
        return
    assert out.to_bytes() == bytes(raw)  # what parses re-encodes to the same bytes
    if which == 0 and op != "flip":
        pytest.fail("a cut or extended group definition parsed")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_on_random_bytes(raw: bytes) -> None:
    for cls in _CLASSES:
        try:
            out = cls.from_bytes(raw)
        except FormatError:
            continue  # refused with the format's own error, never anything else
        assert out.to_bytes() == raw


# -- double masking: the false "missing" claim (docs/fraud.md) ---------------------------------

def _releases(feeder, ids, g, day) -> dict[str, MaskedRelease]:
    req = b"\x10" + AggregationRequest(g.group_id, day).to_bytes()
    return {i: MaskedRelease.from_bytes(feeder[i].mailbox().send(req, f"release of {i}")) for i in ids}


def _sealed_to(g: GroupDefinition, rel: dict[str, MaskedRelease], sender: str, receiver: str) -> bytes:
    """The sealed share ``sender`` sent ``receiver``; empty where the receiver derives it."""
    return dict(rel[sender].shares).get(receiver, b"")


def _ask(feeder, g, day, who: str, missing: tuple[str, ...], present: tuple[str, ...], rel) -> bytes:
    req = RecoveryRequest(g.group_id, day, missing, tuple((p, _sealed_to(g, rel, p, who)) for p in present))
    return feeder[who].mailbox().send(b"\x11" + req.to_bytes(), f"unmasking of {who}")


def test_false_missing_claim_is_refused_and_values_stay_hidden(feeder) -> None:
    """The grid operator claims that X, which answered, is missing: the others remove
    their pairwise masks with X, but X's release keeps its self-mask, and no card that
    answered "missing" for X gives a share of X's self-mask afterwards."""
    ids = sorted(feeder)[:6]
    d0 = DAY + timedelta(days=3)  # days of its own (see _group)
    g = _group(feeder, ids, gid="false-missing", days=(d0, d0 + timedelta(days=1)))
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    rel = _releases(feeder, ids, g, d0)
    x, liars_to, spare = ids[5], ids[:4], ids[4]
    terms = {}
    for y in liars_to:  # "X is missing"; the other present members' shares as usual
        rec = RecoveryRelease.from_bytes(_ask(feeder, g, d0, y, (x,), tuple(p for p in ids[:5] if p != y), rel))
        assert rec.missing == (x,) and x not in rec.present
        terms[y] = rec.values
    # one card not yet asked gives its share of X's self-mask (plus its own): one share,
    # below the threshold
    ok = RecoveryRelease.from_bytes(_ask(feeder, g, d0, spare, (), (x,), rel))
    assert ok.present == (x,)
    # every card that answered "missing" for X refuses its share of X's self-mask
    for y in liars_to:
        with pytest.raises(HubRefused) as ei:
            _ask(feeder, g, d0, y, (), (x,), rel)
        assert ei.value.sw == 0x6985
    # what the operator holds about X: its release minus the pairwise masks it got,
    # which is X's hourly sums plus its self-mask and its pairwise mask with `spare`
    truth = _truth(feeder, [x], d0)
    seen = [(a + sum(terms[y][h][0] for y in liars_to)) % Q for h, (a, _) in enumerate(rel[x].values)]
    assert all(v != t and v > 1 << 64 for v, t in zip(seen, truth, strict=True))
    # the whole attack of version 1 on the next day: all five others told "X is missing"
    # (their pairwise masks with X: that alone unmasked X before double masking)
    day = d0 + timedelta(days=1)
    rel = _releases(feeder, ids, g, day)
    terms = {y: RecoveryRelease.from_bytes(_ask(feeder, g, day, y, (x,), tuple(p for p in ids[:5] if p != y), rel)
                                           ).values for y in ids[:5]}
    for y in ids[:5]:
        with pytest.raises(HubRefused) as ei:
            _ask(feeder, g, day, y, (), (x,), rel)
        assert ei.value.sw == 0x6985
    truth = _truth(feeder, [x], day)
    seen = [(a + sum(terms[y][h][0] for y in ids[:5])) % Q for h, (a, _) in enumerate(rel[x].values)]
    assert all(v != t and v > 1 << 64 for v, t in zip(seen, truth, strict=True))  # still the self-mask on it


def _copy_card(hub: Hub, dest: Path) -> Card:
    hub.card.close()
    for ext in ("", "-wal", "-shm", ".sk"):  # SQLite in WAL mode; the sealed store's key
        src = Path(str(hub.path) + ext)
        if src.exists():
            shutil.copy(src, Path(str(dest) + ext))
    hub.reopen()
    card = Card(dest)
    card.power_on()
    return card


def _box(card: Card) -> AppletMailbox:
    t = demo_tsm(card, "grid-operator")
    t.open()
    return AppletMailbox(t, AGGREGATION_APP_AID)


def test_power_loss_between_the_two_answer_kinds(feeder, tmp_path) -> None:
    """Tear a card at every write of a "missing" answer for X, restart, then ask for its
    share of X's self-mask: the card gives one kind or the other, never both, wherever the
    power failed (the per-member record is in the answer's card transaction)."""
    ids = sorted(feeder)[:6]
    d5 = DAY + timedelta(days=5)  # a day of its own (see _group)
    g = _group(feeder, ids, gid="torn-kinds", days=(d5, d5))
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    rel = _releases(feeder, ids, g, d5)
    a, x = ids[0], ids[5]
    as_missing = RecoveryRequest(g.group_id, d5, (x,), tuple((p, _sealed_to(g, rel, p, a)) for p in ids[1:5]))
    as_present = RecoveryRequest(g.group_id, d5, (), ((x, _sealed_to(g, rel, x, a)),))
    probe = _copy_card(feeder[a], tmp_path / "probe.sqlite")
    counter = _Tear(-1)
    probe.store.fault_hook = counter
    _box(probe).send(b"\x11" + as_missing.to_bytes(), "count")
    probe.close()
    outcomes = set()
    for at in range(1, counter.calls + 1):
        card = _copy_card(feeder[a], tmp_path / f"torn{at}.sqlite")
        card.store.fault_hook = _Tear(at)
        with pytest.raises(PowerLoss):
            _box(card).send(b"\x11" + as_missing.to_bytes(), "torn")
        card.close()
        card = Card(tmp_path / f"torn{at}.sqlite")
        card.power_on()
        try:
            share = RecoveryRelease.from_bytes(_box(card).send(b"\x11" + as_present.to_bytes(), "share of X"))
        except HubRefused as exc:  # the "missing" answer was committed: it is answered again, the share never
            assert exc.sw == 0x6985
            again = RecoveryRelease.from_bytes(_box(card).send(b"\x11" + as_missing.to_bytes(), "again"))
            assert again.missing == (x,)
            outcomes.add("missing")
        else:  # nothing was committed: the share is given, and now "missing" is refused
            assert share.present == (x,)
            with pytest.raises(HubRefused):
                _box(card).send(b"\x11" + as_missing.to_bytes(), "missing after share")
            outcomes.add("present")
        card.close()
    assert "present" in outcomes  # a tear before the commit leaves nothing behind
    # and on the real card, after a clean answer and a power cycle, the record holds
    _box(feeder[a].card).send(b"\x11" + as_missing.to_bytes(), "missing")
    feeder[a].reopen()
    with pytest.raises(HubRefused) as ei:
        feeder[a].mailbox().send(b"\x11" + as_present.to_bytes(), "share after restart")
    assert ei.value.sw == 0x6985


def test_versions_1_and_2_are_refused(feeder) -> None:
    """Version 3 shares the self-mask linearly over Z_q; a release, request or answer of
    version 2 (a seed in GF(2^128) shares) or 1 (no self-mask) is refused by name."""
    rel = MaskedRelease("g", "m0", DAY, 0, bytes(32), ((1, 2),)).to_bytes()
    req = RecoveryRequest("feeder-1", DAY, ("m1",)).to_bytes()
    ans = RecoveryRelease("g", "m0", DAY, ("m1",), ("m2",), ((1, 2),), ((3, 4),)).to_bytes()
    for cls, raw in ((MaskedRelease, rel), (RecoveryRequest, req), (RecoveryRelease, ans)):
        assert raw[4] == 3
        for old in (1, 2):
            with pytest.raises(FormatError, match=f"version {old} is refused"):
                cls.from_bytes(raw[:4] + bytes([old]) + raw[5:])
    with pytest.raises(FormatError, match="version-3"):
        RecoveryRequest.from_bytes(req[5:])  # version 1 requests had no magic
    for old in (req[5:], req[:4] + b"\x02" + req[5:]):
        with pytest.raises(HubRefused) as ei:
            feeder[sorted(feeder)[0]].mailbox().send(b"\x11" + old, "old version")
        assert ei.value.sw == 0x6A80


def test_a_wrong_unmasking_answer_is_reported(feeder) -> None:
    """A hub's self-mask share sum that is off by one in one coordinate, whether among
    the ``t`` answers interpolated or after them: the grid operator finds the answers
    off one polynomial and rejects the day."""
    ids = sorted(feeder)[:6]
    g = _group(feeder, ids, gid="wrong-share")  # 6 members, t = 4
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    rel, rec, missing = collect_day({i: feeder[i].mailbox() for i in ids}, g, DAY, AGGREGATION_APP_AID)
    regs, comms = _inputs(feeder, ids, DAY)
    assert verify_feeder_day(g, DAY, rel, rec, regs, comms).hours == _truth(feeder, ids, DAY)
    for liar in (ids[0], ids[5]):  # one of the first t answers, one after them
        sh = list(rec[liar].share)
        sh[3] = (sh[3][0], (sh[3][1] + 1) % Q)
        forged = {**rec, liar: dataclasses.replace(rec[liar], share=tuple(sh))}
        with pytest.raises(Rejected, match="do not lie on one polynomial"):
            verify_feeder_day(g, DAY, rel, forged, regs, comms)
    # a release whose sealed shares are not for the members that need them
    moved = {**rel, ids[2]: dataclasses.replace(rel[ids[2]], shares=rel[ids[2]].shares[:-1])}
    with pytest.raises(Rejected, match="sealed shares"):
        verify_feeder_day(g, DAY, moved, rec, regs, comms)


def test_unmasking_request_with_shares_of_the_wrong_kind_is_refused(feeder) -> None:
    """A hub derives some shares from the pair secret and opens the others: a request
    that sends a derived one, leaves out a sealed one, or forwards another member's
    sealed share is refused (6985) and leaves the round open."""
    ids = sorted(feeder)[:6]
    g = _group(feeder, ids, gid="share-kinds")
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    rel = _releases(feeder, ids, g, DAY)
    a = ids[0]
    others = ids[1:]
    sent_to_a = [p for p in others if _sealed_to(g, rel, p, a)]
    derived_by_a = [p for p in others if not _sealed_to(g, rel, p, a)]
    assert sent_to_a and derived_by_a
    wrong = [
        tuple((p, _sealed_to(g, rel, sent_to_a[0], a) if p == derived_by_a[0] else _sealed_to(g, rel, p, a))
              for p in others),  # a derived share sent
        tuple((p, b"" if p == sent_to_a[0] else _sealed_to(g, rel, p, a)) for p in others),  # a sealed one left out
        tuple((p, next(s for i, s in rel[p].shares if i != a) if p == sent_to_a[0] else _sealed_to(g, rel, p, a))
              for p in others if any(i != a for i, _ in rel[p].shares) or p != sent_to_a[0]),  # another's share
    ]
    for present in wrong:
        req = RecoveryRequest(g.group_id, DAY, (), present)
        with pytest.raises(HubRefused) as ei:
            feeder[a].mailbox().send(b"\x11" + req.to_bytes(), "wrong kind")
        assert ei.value.sw == 0x6985
    ok = RecoveryRelease.from_bytes(_ask(feeder, g, DAY, a, (), tuple(others), rel))
    assert ok.present == tuple(others)


def test_store_data_blocks_are_joined_in_sequence(feeder) -> None:
    """The applet joins STORE DATA blocks in transient memory: a block out of sequence
    is refused (by the security domain, 6A86, or the applet, 6985) and the next message
    starts again at block 0; a long unmasking request of many blocks arrives whole."""
    from meterhub.protocols.gp.constants import INS

    hub = feeder[sorted(feeder)[0]]
    mb = hub.mailbox()
    mb.tsm._run("INSTALL [for personalization]", mb.tsm.client.install_for_personalization, AGGREGATION_APP_AID)
    _, sw = mb.tsm._run("STORE DATA", mb.tsm.client.send, INS.STORE_DATA, 0x80, 1, b"\x02", 256)
    assert sw in (0x6A86, 0x6985)
    _, sw = mb.tsm._run("STORE DATA", mb.tsm.client.send, INS.STORE_DATA, 0x00, 0, b"\x02", None)
    assert sw == 0x9000
    _, sw = mb.tsm._run("STORE DATA", mb.tsm.client.send, INS.STORE_DATA, 0x80, 2, b"\x02", 256)  # block 1 skipped
    assert sw in (0x6A86, 0x6985)
    assert mb.send(b"\x02", "key again", personalize=False) == hub.key
    # a message of 200 blocks (the mailbox's 200-byte blocks) arrives whole: the
    # applet parses it and refuses it as malformed (6A80), not as a broken sequence
    with pytest.raises(HubRefused) as ei:
        mb.send(b"\x11" + b"MHAU\x03" + bytes(200 * 200 - 7), "long", personalize=False)
    assert ei.value.sw == 0x6A80
