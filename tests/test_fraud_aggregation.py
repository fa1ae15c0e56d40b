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

from helpers import make_history
from meterhub.card import Card, PowerLoss
from meterhub.crypto import ecdsa, zerosum
from meterhub.crypto.group import Q
from meterhub.hub.aggregation import AGGREGATION_APP_AID, aggregation_load_file
from meterhub.hub.secure_element import (
    RECIPIENT_SDS,
    ReadingsClient,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
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
    verify_feeder_day,
)
from meterhub.utility.settlement import AppletMailbox, HubRefused, expected_code_hash
from meterhub.utility.tsm import TSM, dap_signer
from meterhub.utility.verifier import Rejected

GRID = RECIPIENT_SDS["grid-operator"]
CODE_HASH = bytes.fromhex(expected_code_hash(AGGREGATION_CLASS))
DAY = date(2027, 3, 27)  # the spring DST change follows: 23 hours on 2027-03-28


def tsm(card) -> TSM:
    return TSM(card.transmit, demo_scp03_keys("grid-operator"), sd_aid=GRID,
               dap=dap_signer(GRID, demo_dap_key("grid-operator")))


class Hub:
    def __init__(self, path, h) -> None:
        self.path, self.h = path, h
        self.card = open_hub_card(path, issuer_keys=demo_scp03_keys("issuer"),
                                  supplier_keys=demo_scp03_keys("supplier"),
                                  supplier_dap=demo_dap_key("supplier").public_key())
        with tsm(self.card) as t:
            t.deploy(aggregation_load_file(), AGGREGATION_APP_AID, params=ecdsa.public_bytes(demo_grid_key()))
        rc = ReadingsClient(self.card.transmit, AGGREGATION_APP_AID)
        rc.select()
        rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
        for d in h.days:
            rc.put_openings(d.batch.batch.day, d.first_index, d.openings)
        self.key = hub_key(self.mailbox())

    def mailbox(self) -> AppletMailbox:
        t = tsm(self.card)
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
        return self.registry.group(g.group_id)


@pytest.fixture(scope="module")
def feeder(tmp_path_factory):
    base = tmp_path_factory.mktemp("feeder")
    hubs = Feeder()
    hubs.registry = GroupRegistry("f1", demo_grid_key())
    for k in range(7):
        h = make_history(start=DAY, n_days=2, seed=100 + k, meter_id=f"m{k}")
        hubs[h.registration.meter_id] = Hub(base / f"m{k}.sqlite", h)
    return hubs


def _unpublished(hubs, ids, gid="feeder-1", **kw):
    return make_group(gid, "f1", {i: hubs[i].key for i in ids}, DAY, DAY + timedelta(days=1), demo_grid_key(), **kw)


def _group(hubs, ids, gid="feeder-1", **kw):
    """A group the grid operator published in the feeder's registry."""
    return hubs.publish(_unpublished(hubs, ids, gid, **kw))


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
        # no dropout: the unmasking round asks only for the self-mask seeds' shares
        assert not missing and set(rec) == set(rel)
        assert all(not r.missing and set(r.values) == {(0, 0)} and len(r.shares) == 5 for r in rec.values())
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
    g = _group(feeder, ids, gid="dropout")  # (feeder-1's days were unmasked complete above)
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    day = DAY + timedelta(days=1)
    boxes = {i: feeder[i].mailbox() for i in ids}
    boxes[ids[4]] = None  # does not answer
    rel, rec, missing = collect_day(boxes, g, day, AGGREGATION_APP_AID)
    assert missing == [ids[4]] and set(rec) == set(rel)
    regs, comms = _inputs(feeder, ids, day)
    fd = verify_feeder_day(g, day, rel, rec, regs, comms, code_hash=CODE_HASH)
    present = [i for i in ids if i != ids[4]]
    assert not fd.complete and fd.missing == [ids[4]] and fd.hours == _truth(feeder, present, day)
    # a recovery term is the missing hub's pairwise masks only: it does not unmask its sender
    k = 1
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
    a fresh self-mask seed, since the torn one never left the card), and a recovery that may have
    left the card still blocks a recovery with other missing members."""
    h = make_history(start=DAY, n_days=2, seed=99, meter_id="m9")
    hub = Hub(tmp_path / "m9.sqlite", h)
    others = sorted(feeder)[:5]
    keys = {i: feeder[i].key for i in others} | {"m9": hub.key}
    g = make_group("torn", "f9", keys, DAY, DAY + timedelta(days=1), demo_grid_key())
    push_registry(hub.mailbox(), [RegistryBlock("f9", 0, bytes(32), (g,)).signed(demo_grid_key())])
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
        t = tsm(probe)
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
        if req is rel_req:  # a fresh self-mask seed per answer: only its shape repeats
            a, e = MaskedRelease.from_bytes(got), MaskedRelease.from_bytes(expected)
            assert (a.group_id, a.meter_id, a.day, a.first_index, len(a.values), len(a.shares)) == (
                e.group_id, e.meter_id, e.day, e.first_index, len(e.values), len(e.shares))
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
        MaskedRelease("g-1", "m0", DAY, 96, bytes(32), ((1, 2), (Q - 1, 0)), (bytes(46), b"\x07" * 46)).to_bytes(),
        RecoveryRequest("g-1", DAY, ("m1", "m2"), (("m3", bytes(46)), ("m4", b"\x01" * 46))).to_bytes(),
        RecoveryRelease("g-1", "m0", DAY, ("m1",), ((3, 4),), (("m2", 1, bytes(16)), ("m3", 9, b"x" * 16))).to_bytes(),
    ]


_CLASSES = (GroupDefinition, AggregationRequest, MaskedRelease, RecoveryRequest, RecoveryRelease)


def test_round_trips() -> None:
    for cls, raw in zip(_CLASSES, _samples(), strict=True):
        assert cls.from_bytes(raw).to_bytes() == raw
    assert GroupDefinition.from_bytes(_samples()[0]).verify(demo_grid_key().public_key())


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4), st.data())
def test_parsers_on_mutations(which: int, data) -> None:
    raw = bytearray(_samples()[which])
    op = data.draw(st.sampled_from(["flip", "cut", "append"]))
    if op == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
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
    others = [m.meter_id for m in g.members if m.meter_id != sender]
    return rel[sender].shares[others.index(receiver)]


def _ask(feeder, g, day, who: str, missing: tuple[str, ...], present: tuple[str, ...], rel) -> bytes:
    req = RecoveryRequest(g.group_id, day, missing, tuple((p, _sealed_to(g, rel, p, who)) for p in present))
    return feeder[who].mailbox().send(b"\x11" + req.to_bytes(), f"unmasking of {who}")


def test_false_missing_claim_is_refused_and_values_stay_hidden(feeder) -> None:
    """The grid operator claims that X, which answered, is missing: the others remove
    their pairwise masks with X, but X's release keeps its self-mask, and no card that
    answered "missing" for X gives a share of X's seed afterwards."""
    ids = sorted(feeder)[:6]
    g = _group(feeder, ids, gid="false-missing")
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    rel = _releases(feeder, ids, g, DAY)
    x, liars_to, spare = ids[5], ids[:4], ids[4]
    terms = {}
    for y in liars_to:  # "X is missing"; the other present members' shares as usual
        rec = RecoveryRelease.from_bytes(_ask(feeder, g, DAY, y, (x,), tuple(p for p in ids[:5] if p != y), rel))
        assert rec.missing == (x,) and x not in [p for p, _, _ in rec.shares]
        terms[y] = rec.values
    # one card not yet asked gives its share of X's seed: one share, below the threshold
    ok = RecoveryRelease.from_bytes(_ask(feeder, g, DAY, spare, (), (x,), rel))
    assert [p for p, _, _ in ok.shares] == [x]
    # every card that answered "missing" for X refuses the share of X's seed
    for y in liars_to:
        with pytest.raises(HubRefused) as ei:
            _ask(feeder, g, DAY, y, (), (x,), rel)
        assert ei.value.sw == 0x6985
    # what the operator holds about X: its release minus the pairwise masks it got,
    # which is X's hourly sums plus its self-mask and its pairwise mask with `spare`
    truth = _truth(feeder, [x], DAY)
    seen = [(a + sum(terms[y][h][0] for y in liars_to)) % Q for h, (a, _) in enumerate(rel[x].values)]
    assert all(v != t and v > 1 << 64 for v, t in zip(seen, truth, strict=True))
    # the whole attack of version 1 on the next day: all five others told "X is missing"
    # (their pairwise masks with X: that alone unmasked X before double masking)
    day = DAY + timedelta(days=1)
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
    t = tsm(card)
    t.open()
    return AppletMailbox(t, AGGREGATION_APP_AID)


def test_power_loss_between_the_two_answer_kinds(feeder, tmp_path) -> None:
    """Tear a card at every write of a "missing" answer for X, restart, then ask for its
    share of X's seed: the card gives one kind or the other, never both, wherever the
    power failed (the per-member record is in the answer's card transaction)."""
    ids = sorted(feeder)[:6]
    g = _group(feeder, ids, gid="torn-kinds")
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    rel = _releases(feeder, ids, g, DAY)
    a, x = ids[0], ids[5]
    as_missing = RecoveryRequest(g.group_id, DAY, (x,), tuple((p, _sealed_to(g, rel, p, a)) for p in ids[1:5]))
    as_present = RecoveryRequest(g.group_id, DAY, (), ((x, _sealed_to(g, rel, x, a)),))
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
            assert share.shares[0][0] == x
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


def test_version_1_messages_are_refused(feeder) -> None:
    old_release = b"MHAR\x01" + MaskedRelease("g", "m0", DAY, 0, bytes(32), ((1, 2),)).to_bytes()[5:-2]
    with pytest.raises(FormatError, match="version-2"):
        MaskedRelease.from_bytes(old_release)
    old_request = RecoveryRequest("feeder-1", DAY, ("m1",)).to_bytes()[5:]  # version 1 had no magic
    with pytest.raises(FormatError, match="version-2"):
        RecoveryRequest.from_bytes(old_request)
    with pytest.raises(HubRefused) as ei:
        feeder[sorted(feeder)[0]].mailbox().send(b"\x11" + old_request, "version 1")
    assert ei.value.sw == 0x6A80
