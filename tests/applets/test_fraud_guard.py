"""Private aggregation under the privacy guard (issues 11 and 13): the group-signing key is
the customer's pinned one, the group rules hold over every applet of the recipient, each
masked release and recovery is a logged release (a re-ask answers the same bytes), the
entitlement is the customer's, and suspect profiles count against the budget."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta

import pytest

from helpers import make_history
from meterhub.card.guard import GUARD_AID, output_allowed
from meterhub.crypto import ecdsa
from meterhub.demo.hubs import demo_tsm, open_demo_hub
from meterhub.hub.aggregation import (
    AGGREGATION_APP_AID,
    AGGREGATION_MODULE_AID,
    AGGREGATION_PACKAGE_AID,
    aggregation_load_file,
)
from meterhub.hub.secure_element import (
    PROFILING_APP_AID,
    RECIPIENT_SDS,
    GuardClient,
    ReadingsClient,
    demo_pinned,
    profiling_load_file,
)
from meterhub.model.formats.aggregation import AggregationRequest, RecoveryRequest
from meterhub.model.formats.membership import demo_certificates, demo_directory
from meterhub.model.group_registry import RegistryBlock
from meterhub.policy import LogEntry, LogError, default_policy, verify_release_log
from meterhub.tariffs.price_index import sign_series
from meterhub.utility.fraud import (
    GroupRegistry,
    collect_day,
    demo_grid_key,
    hub_key,
    make_group,
    push_group,
    push_registry,
    relay_head_tags,
)
from meterhub.utility.settlement import AppletMailbox, HubRefused
from meterhub.utility.tsm import TSMError

GRID = RECIPIENT_SDS["grid-operator"]
DAY = date(2027, 3, 27)
SECOND_AGG = "F04D480041470102"


def mailbox(card, aid: str = AGGREGATION_APP_AID) -> AppletMailbox:
    t = demo_tsm(card, "grid-operator")
    t.open()
    return AppletMailbox(t, aid)


def build(path, h, *, policy=None, params: bytes = b"", extra_applet: bool = False):
    card = open_demo_hub(path, policy=policy or default_policy(anchor=DAY, days=2))
    with demo_tsm(card, "grid-operator") as t:
        t.deploy(aggregation_load_file(), AGGREGATION_APP_AID, params=params)
        if extra_applet:
            t.install(AGGREGATION_PACKAGE_AID, AGGREGATION_MODULE_AID, SECOND_AGG)
    for aid in (AGGREGATION_APP_AID, SECOND_AGG) if extra_applet else (AGGREGATION_APP_AID,):
        rc = ReadingsClient(card.transmit, aid)
        rc.select()
        rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
        for d in h.days:
            rc.put_openings(d.batch.batch.day, d.first_index, d.openings)
    return card


class Hubs(dict):
    """meter id -> (card, history, key), and the grid operator's registry they all hold."""

    registry: GroupRegistry

    def publish(self, g):
        if g.group_id not in self.registry.view.groups:
            self.registry.publish([g])
        for card, _, _ in self.values():
            push_registry(mailbox(card), self.registry)
        # hubs that released under the old head need their co-members' tags over the new one
        relay_head_tags({i: mailbox(card) for i, (card, _, _) in self.items()})
        return self.registry.group(g.group_id)


def genesis(*groups) -> list[RegistryBlock]:
    """A one-block registry of feeder "f" (a card of its own)."""
    return [RegistryBlock("f", 0, bytes(32), tuple(groups), certificates=tuple(demo_certificates(groups))
                          ).signed(demo_grid_key())]


@pytest.fixture(scope="module")
def hubs(tmp_path_factory):
    base = tmp_path_factory.mktemp("guarded")
    out = Hubs()
    out.registry = GroupRegistry("f", demo_grid_key(), directory=demo_directory)
    for k in range(7):
        h = make_history(start=DAY, n_days=2, seed=200 + k, meter_id=f"g{k}")
        card = build(base / f"g{k}.sqlite", h, extra_applet=(k == 0))
        out[h.registration.meter_id] = (card, h, hub_key(mailbox(card)))
    return out


def _log(card) -> list[LogEntry]:
    g = GuardClient(card.transmit)
    g.select()
    _, head = g.head()
    return verify_release_log(g.raw_entries(), head)


def test_the_group_signer_is_pinned_not_chosen_at_install(tmp_path) -> None:
    assert demo_pinned().roles()["group/grid-operator"] == (ecdsa.public_bytes(demo_grid_key()),)
    h = make_history(start=DAY, n_days=1, seed=5, meter_id="x0")
    own = ecdsa.generate_signing_key()
    with pytest.raises(TSMError) as ei:  # the grid operator names its own key at install
        build(tmp_path / "x0.sqlite", h, params=ecdsa.public_bytes(own))
    assert ei.value.sw == 0x6982
    # the pinned key may be repeated; groups signed by any other key are refused
    card = build(tmp_path / "x1.sqlite", h, params=ecdsa.public_bytes(demo_grid_key()))
    key = hub_key(mailbox(card))
    members = {"x0": key} | {f"o{k}": bytes([k + 9]) * 32 for k in range(5)}
    with pytest.raises(HubRefused) as ei:
        push_group(mailbox(card), make_group("own", "f", members, DAY, DAY, own))
    assert ei.value.sw == 0x6982
    pinned = make_group("pinned", "f", members, DAY, DAY, demo_grid_key())
    with pytest.raises(HubRefused) as ei:  # a registry signed by another key
        push_registry(mailbox(card), [RegistryBlock("f", 0, bytes(32), (pinned,)).signed(own)])
    assert ei.value.sw == 0x6982
    push_registry(mailbox(card), genesis(pinned))
    push_group(mailbox(card), pinned)
    card.close()


def test_group_rules_hold_across_the_recipients_applets(hubs) -> None:
    ids = sorted(hubs)
    card = hubs[ids[0]][0]
    keys = {i: hubs[i][2] for i in ids}
    # the second applet of the same recipient has a key of its own
    key2 = hub_key(mailbox(card, SECOND_AGG))
    assert key2 != keys[ids[0]]
    others = {f"o{k}": bytes([k + 9]) * 32 for k in range(6)}
    a = hubs.publish(make_group("a", "f", {ids[0]: keys[ids[0]]} | dict(list(others.items())[:5]), DAY, DAY,
                                demo_grid_key()))
    push_group(mailbox(card), a)
    # a group one member larger, pushed to the other applet, would isolate o5: the
    # registry the recipient's applets share refuses it, and so does the guard's own rule
    plus_one = make_group("b", "f", {ids[0]: key2} | others, DAY, DAY, demo_grid_key())
    with pytest.raises(HubRefused) as ei:
        mailbox(card, SECOND_AGG).send(b"\x03" + hubs.registry.next_block([plus_one]).to_bytes(), "registry")
    assert ei.value.sw == 0x6985
    with pytest.raises(HubRefused) as ei:
        push_group(mailbox(card, SECOND_AGG), plus_one)
    assert ei.value.sw == 0x6985
    # nor may the other applet answer for group "a", which lists the first applet's key
    with pytest.raises(HubRefused) as ei:
        mailbox(card, SECOND_AGG).send(b"\x10" + AggregationRequest("a", DAY).to_bytes(), "other applet")
    assert ei.value.sw == 0x6985


def test_every_aggregate_is_a_logged_release(hubs) -> None:
    ids = sorted(hubs)[1:7]
    g = hubs.publish(make_group("logged", "f", {i: hubs[i][2] for i in ids}, DAY, DAY + timedelta(days=1),
                                demo_grid_key()))
    before = {i: len(_log(hubs[i][0])) for i in ids}  # (reading the log ends a secure channel)
    boxes = {i: mailbox(hubs[i][0]) for i in ids}
    for mb in boxes.values():
        push_group(mb, g)
    boxes[ids[5]] = None
    rel, rec, missing = collect_day(boxes, g, DAY, AGGREGATION_APP_AID)
    assert missing == [ids[5]] and set(rec) == set(rel)
    card = hubs[ids[0]][0]
    entries = _log(card)
    assert len(entries) == before[ids[0]] + 2
    agg, recov = entries[-2:]
    assert (agg.kind, agg.group, agg.period_from, agg.functionals) == ("aggregate", "logged", DAY.isoformat(), 24)
    assert (recov.kind, recov.group, recov.functionals) == ("recovery", "logged", 0)
    g_client = GuardClient(card.transmit)
    g_client.select()
    assert g_client.release(agg.seq) == rel[ids[0]].to_bytes()
    # a re-ask answers the same bytes and logs nothing
    again = mailbox(card).send(b"\x10" + AggregationRequest("logged", DAY).to_bytes(), "again")
    assert again == rel[ids[0]].to_bytes() and len(_log(card)) == len(entries)
    # a second recovery with another missing member: refused, nothing logged
    with pytest.raises(HubRefused) as ei:
        mailbox(card).send(b"\x11" + RecoveryRequest("logged", DAY, (ids[4],)).to_bytes(), "second")
    assert ei.value.sw == 0x6985 and len(_log(card)) == len(entries)
    # the auditor refuses a log with a second aggregate for the group and day
    gc = GuardClient(card.transmit)
    gc.select()
    raws = gc.raw_entries()
    dup = dataclasses.replace(agg, seq=len(raws), request_digest="00" * 32).canonical_bytes()
    with pytest.raises(LogError, match="second aggregate"):
        verify_release_log(raws + [dup], b"")
    # and a recovery logged before the day's release
    early = dataclasses.replace(recov, seq=len(raws), period_from="2027-03-28", period_to="2027-03-28")
    with pytest.raises(LogError, match="before the day's release"):
        verify_release_log(raws + [early.canonical_bytes()], b"")


def test_a_group_id_with_braces_is_an_ordinary_id(hubs) -> None:
    ids = sorted(hubs)[1:7]
    # the next day: on DAY these hubs answered the recovery of "logged" (the same members)
    # without ids[5], and a copy unmasked complete that day would give ids[5] (the hubs
    # refuse the block: tests/attacks/test_attacks_redteam4.py)
    day = DAY + timedelta(days=1)
    g = hubs.publish(make_group("f{0}{}", "f", {i: hubs[i][2] for i in ids}, day, day, demo_grid_key()))
    boxes = {i: mailbox(hubs[i][0]) for i in ids}
    for mb in boxes.values():
        push_group(mb, g)
    rel, rec, missing = collect_day(boxes, g, day, AGGREGATION_APP_AID)
    assert not missing and set(rel) == set(ids)


def test_aggregates_need_the_customers_entitlement(tmp_path) -> None:
    policy = default_policy(anchor=DAY, days=2)
    ent = dict(policy.entitlements)
    ent["grid-operator"] = ("scores", "samples")
    policy = dataclasses.replace(policy, entitlements=ent)
    h = make_history(start=DAY, n_days=1, seed=6, meter_id="y0")
    card = build(tmp_path / "y0.sqlite", h, policy=policy)
    members = {"y0": hub_key(mailbox(card))} | {f"o{k}": bytes([k + 9]) * 32 for k in range(5)}
    with pytest.raises(HubRefused) as ei:
        push_group(mailbox(card), make_group("g", "f", members, DAY, DAY, demo_grid_key()))
    assert ei.value.sw == 0x6982
    card.close()


def test_output_gate_withholds_an_unissued_aggregation_answer(hubs) -> None:
    card = hubs[sorted(hubs)[0]][0]
    rec = card.registry.get(AGGREGATION_APP_AID)
    assert card.registry.get(GUARD_AID) is not None
    assert not output_allowed(card.runtime, rec, b"\x01" * 32)  # nothing issued for it


def test_suspect_profiles_respect_the_pinned_signer_and_the_budget(tmp_path) -> None:
    from meterhub.tariffs.price_index import KIND_LOAD_PROFILE, Series
    from meterhub.tariffs.profiles import PROFILE_UNIT

    h = make_history(start=DAY, n_days=2, seed=7, meter_id="z0")
    card = open_demo_hub(tmp_path / "z0.sqlite", policy=default_policy(anchor=DAY, days=2, budget={"functionals_per_period": 8}))
    with demo_tsm(card, "grid-operator") as t:
        t.deploy(profiling_load_file(), PROFILING_APP_AID)
    rc = ReadingsClient(card.transmit, PROFILING_APP_AID)
    rc.select()
    rc.pair("z0", "Europe/Berlin", 15)
    for d in h.days:
        rc.put_openings(d.batch.batch.day, d.first_index, d.openings)
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    start = datetime(2027, 3, 27, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)

    def series(sid: str, n: int = 47) -> Series:
        return Series(kind=KIND_LOAD_PROFILE, series_id=sid, version=1, publisher="grid", start=start,
                      interval_minutes=60, unit=PROFILE_UNIT, scale=1_000_000, expires=DAY + timedelta(days=60),
                      values=tuple(1000 if k % 3 else 0 for k in range(n)))

    mb = mailbox(card, PROFILING_APP_AID)
    with pytest.raises(HubRefused) as ei:  # signed by a key the customer did not pin
        mb.push_series(sign_series(series("rogue"), ecdsa.generate_signing_key()))
    assert ei.value.sw == 0x6982
    ids = [f"s{k}" for k in range(7)]
    for sid in ids:
        mb.push_series(sign_series(series(sid), demo_grid_key()))  # the grid operator's own pinned signer
    period = DAY.year.to_bytes(2, "big") + bytes((DAY.month, DAY.day))
    end = DAY + timedelta(days=1)
    period += end.year.to_bytes(2, "big") + bytes((end.month, end.day))
    with pytest.raises(HubRefused) as ei:  # 7 profiles + energy + squares = 9 > 8
        mb.request(b"\x21" + period + ",".join(ids).encode(), "suspects")
    assert ei.value.sw == 0x6A84
    raw = mb.request(b"\x21" + period + ",".join(ids[:6]).encode(), "suspects")
    assert json.loads(raw)["scores"] and _log(card)[-1].kind == "suspects" and _log(card)[-1].functionals == 8
    card.close()


def test_the_demos_aggregation_keys_never_repeat_a_released_draw() -> None:
    """The demo opens each card several times and the card's seeded source restarts per
    open: the fraud section draws from a stream of its own, so an applet's X25519 key is
    never the coin-toss nonce the same card released with its samples."""
    from meterhub.demo.system import DemoRandom

    r = DemoRandom(2027)
    toss = r.card_rng("hh-0000")(32)  # the first draw of an ordinary open (the hub's nonce)
    key = r.card_rng("hh-0000", "fraud")(32)  # the first draw of a fraud-section open
    assert key != toss and r.card_rng("hh-0000", "fraud")(32) == key  # apart, and reproducible
