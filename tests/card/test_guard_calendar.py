"""Budgets per calendar time (docs/privacy.md): a cycle change by the customer gives no
fresh budget over days already charged, and a demand-response release is charged to every
period its baseline days reach into, not only to its event day's."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from helpers import cycle_policy, provision_test_guard
from meterhub.card import Applet, Card, ins, register_applet_class
from meterhub.card.guard import GUARD_AID
from meterhub.hub.secure_element import RECIPIENT_SDS, GuardClient
from meterhub.policy import LogEntry, LogError, chain_hash, sign_policy, verify_release_log
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU


class SpanProbe(Applet):
    """Test applet: asks the guard to release ``functionals`` functionals of kind ``kind``
    for ``first..last`` (with ``support_from`` for ``dr``), as a real applet would."""

    @ins(0x52, cla=0x80)
    def release(self, apdu: CommandAPDU) -> bytes:
        req = json.loads(bytes(apdu.data))
        port = self.ctx.get_shareable(GUARD_AID)
        first, last = date.fromisoformat(req["first"]), date.fromisoformat(req["last"])
        support = date.fromisoformat(req["support_from"]) if req.get("support_from") else None
        again = port.begin(req["kind"], first, last, bytes(apdu.data), chunked=False)
        if again is not None:
            return again
        return port.commit(req["kind"], first, last, bytes(apdu.data), b"released", functionals=req["n"],
                           chunked=False, support_from=support)


register_applet_class("tests.span-probe/1", SpanProbe)
PROBE = {"supplier": "F04D4800535001", "grid-operator": "F04D4800535002"}
D0 = date(2027, 5, 3)


def _card(policy):
    card = Card(None)
    customer = provision_test_guard(card, policy)
    for who, aid in PROBE.items():
        card.registry.install_applet("tests.span-probe/1", aid, sd_aid=RECIPIENT_SDS[who])
    card.power_on()
    return card, customer


def _ask(card, who: str, kind: str, first: date, last: date, n: int, support_from: date | None = None) -> int:
    card.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(PROBE[who])).to_bytes())
    body = {"kind": kind, "first": first.isoformat(), "last": last.isoformat(), "n": n}
    if support_from:
        body["support_from"] = support_from.isoformat()
    r = ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0x80, 0x52, 0, 0, json.dumps(body).encode(), le=256).to_bytes()))
    return r.sw


def _log(card) -> tuple[GuardClient, list[bytes], bytes]:
    g = GuardClient(card.transmit)
    g.select()
    _, head = g.head()
    return g, g.raw_entries(), head


def _set_policy(card, customer, policy) -> None:
    g = GuardClient(card.transmit)
    g.select()
    g.set_policy(sign_policy(policy, customer))


def test_a_cycle_change_gives_no_fresh_budget_over_spent_days():
    """Budget 16 on 2-day cells; the supplier spends it on D0..D0+1. Moved by one day (or
    shortened to one day), the new cells overlap the spent one: nothing more for those
    days. Before budgets went per calendar time, each new cell started at 0 (another 16)."""
    card, customer = _card(cycle_policy(D0, 2))
    assert _ask(card, "supplier", "bill", D0, D0 + timedelta(days=1), 16) == 0x9000
    _set_policy(card, customer, cycle_policy(D0 + timedelta(days=1), 2, version=2))
    assert _ask(card, "supplier", "settlement", D0 + timedelta(days=1), D0 + timedelta(days=2), 1) == 0x6A84
    _set_policy(card, customer, cycle_policy(D0, 1, version=3))
    assert _ask(card, "supplier", "settlement", D0 + timedelta(days=1), D0 + timedelta(days=1), 1) == 0x6A84
    # Days not charged yet have their budget; a cell overlapping the spent days does not.
    assert _ask(card, "supplier", "settlement", D0 + timedelta(days=2), D0 + timedelta(days=2), 16) == 0x9000
    g, raws, head = _log(card)
    kinds = [json.loads(r)["kind"] for r in raws]
    assert kinds == ["policy", "bill", "policy", "policy", "settlement"]
    policies = {v: cycle_policy(a, d, version=v) for v, a, d in ((1, D0, 2), (2, D0 + timedelta(days=1), 2), (3, D0, 1))}
    verify_release_log(raws, head, policies=policies)


def test_the_auditor_refuses_a_log_that_renews_the_budget_by_a_cycle_change():
    """The auditor's check applies the same calendar rule: a log whose second release
    would only fit under per-cycle-label budgets is refused."""
    pol1, pol2 = cycle_policy(D0, 2), cycle_policy(D0 + timedelta(days=1), 2, version=2)
    entries = [
        LogEntry(0, "policy", "customer", "", "", 1, GUARD_AID, "", "", 0),
        LogEntry(1, "bill", "supplier", D0.isoformat(), (D0 + timedelta(days=1)).isoformat(), 1, "AA", "r", "o", 16),
        LogEntry(2, "policy", "customer", "", "", 2, GUARD_AID, "", "", 0),
        LogEntry(3, "settlement", "supplier", (D0 + timedelta(days=1)).isoformat(),
                 (D0 + timedelta(days=2)).isoformat(), 2, "AA", "r", "o", 2),
    ]
    raws = [e.canonical_bytes() for e in entries]
    h = bytes(32)
    for r in raws:
        h = chain_hash(h, r)
    with pytest.raises(LogError, match="exceeds its budget"):
        verify_release_log(raws, h, policies={1: pol1, 2: pol2})
    verify_release_log(raws[:3], chain_hash(chain_hash(chain_hash(bytes(32), raws[0]), raws[1]), raws[2]),
                       policies={1: pol1, 2: pol2})


def test_a_dr_release_is_charged_to_the_periods_of_its_baseline_days():
    """Monthly cells. The grid operator spends May's budget; a DR event on 2 June whose
    baseline days reach back into May is refused (6A84): its reduction is a functional of
    May's readings too. With baseline days in June only it is released, and its log
    entry names its support for the auditor."""
    card, _ = _card(cycle_policy(date(2027, 5, 1), 0))
    may1, may31, jun2 = date(2027, 5, 1), date(2027, 5, 31), date(2027, 6, 2)
    assert _ask(card, "grid-operator", "scores", may1, may31, 16) == 0x9000
    assert _ask(card, "grid-operator", "dr", jun2, jun2, 1, support_from=date(2027, 5, 20)) == 0x6A84
    assert _ask(card, "grid-operator", "dr", jun2, jun2, 1, support_from=date(2027, 6, 1)) == 0x9000
    # only a DR release may reach back, and only to earlier days
    assert _ask(card, "grid-operator", "scores", date(2027, 6, 1), date(2027, 6, 30), 1,
                support_from=date(2027, 5, 30)) == 0x6A80
    g, raws, head = _log(card)
    entries = verify_release_log(raws, head, policies={1: cycle_policy(date(2027, 5, 1), 0)})
    assert [(e.kind, e.support_from) for e in entries[1:]] == [("scores", ""), ("dr", "2027-06-01")]
    # The auditor charges a logged DR release to its baseline days' periods as well.
    forged = LogEntry(3, "dr", "grid-operator", "2027-06-03", "2027-06-03", 1, "AA", "r", "o", 1,
                      support_from="2027-05-25").canonical_bytes()
    with pytest.raises(LogError, match="exceeds its budget"):
        verify_release_log([*raws, forged], chain_hash(head, forged), policies={1: cycle_policy(date(2027, 5, 1), 0)})
