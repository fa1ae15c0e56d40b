"""Test helpers: a small honest meter history, its tariff and its bill."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from meterhub.crypto import ecdsa
from meterhub.crypto.pedersen import Opening
from meterhub.hub.billing import bill_statement
from meterhub.meter.device import DayRecord, Meter
from meterhub.model.formats.statements import BillStatement
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.tariffs import Tariff, example_signed_tariff
from meterhub.utility.verifier import DayCommitments, MeterRegistration


@dataclass
class History:
    meter: Meter
    registration: MeterRegistration
    tariff: Tariff
    start: date
    days: list[DayRecord]
    readings: list[list[int]]
    statement: BillStatement

    def uploads(self) -> list[DayUpload]:
        return [DayUpload(d.batch, encode_records(d.first_index, d.commitments)) for d in self.days]

    def day_commitments(self) -> list[DayCommitments]:
        out = []
        for d in self.days:
            b = d.batch.batch
            out.append(DayCommitments(d.batch, d.commitments, list(range(b.first_index, b.first_index + b.count))))
        return out

    @property
    def openings(self) -> list[Opening]:
        return [o for d in self.days for o in d.openings]

    def prices(self) -> list[int]:
        return [
            p
            for k in range(len(self.days))
            for p in self.tariff.prices_for(day_starts(self.start + timedelta(days=k), "Europe/Berlin", 15))
        ]


def make_history(start: date = date(2027, 3, 27), n_days: int = 3, seed: int = 1, meter_id: str = "m-test") -> History:
    rng = random.Random(seed)
    tariff = example_signed_tariff().tariff
    meter = Meter(meter_id, ecdsa.generate_signing_key())
    days, readings = [], []
    for k in range(n_days):
        day = start + timedelta(days=k)
        n = len(day_starts(day, "Europe/Berlin", 15))
        r = [rng.choice([0, 0, rng.randint(0, 50), rng.randint(50, 900)]) for _ in range(n)]
        readings.append(r)
        days.append(meter.record_day(day, r))
    reg = MeterRegistration(meter_id, meter.signing_key.public_key(), "Europe/Berlin", 15)
    h = History(meter, reg, tariff, start, days, readings, None)  # type: ignore[arg-type]
    h.statement = bill_statement(
        meter_id=meter_id,
        tariff=tariff,
        period_from=start,
        period_to=start + timedelta(days=n_days - 1),
        first_index=0,
        prices=h.prices(),
        openings=h.openings,
    )
    return h


def cycle_policy(start: date = date(2027, 3, 27), days: int = 1, **overrides):
    """The default release policy on a cycle of ``days`` days from ``start`` (the tests'
    billing period), everything else at its default."""
    from meterhub.policy import default_policy

    return default_policy(anchor=start, days=days, **overrides)


def provision_test_guard(card, policy=None, *, customer=None, pinned=None):
    """Install the privacy guard on a bare card (no card manager), with the demo pinned
    keys and the recipients' security-domain AIDs; returns the customer key."""
    from meterhub.card.guard import provision_guard
    from meterhub.hub.secure_element import RECIPIENT_SDS, demo_pinned
    from meterhub.policy import sign_policy

    customer = customer or ecdsa.generate_signing_key()
    provision_guard(
        card,
        customer_key=customer.public_key(),
        pinned=pinned or demo_pinned(),
        recipients={aid: name for name, aid in RECIPIENT_SDS.items()},
        policy=sign_policy(policy or cycle_policy(), customer),
    )
    return customer


def card_vault(path=None):
    """The storage vault of a hub card (in memory unless ``path``), as the host's
    :class:`meterhub.hub.store.RecordVault`: the card holds the record key."""
    from meterhub.hub.secure_element import VaultClient, open_vault_card

    if path is None:
        from meterhub.card import Card
        from meterhub.card.vault import provision_vault

        card = Card(None)
        provision_vault(card)
        card.power_on()
    else:
        card = open_vault_card(path)
    vault = VaultClient(card.transmit)
    vault.card = card  # keeps the card with its client (tests close it through here)
    return vault


class SettlementHub:
    """One demo hub card (:func:`meterhub.demo.hubs.provision_demo_hub`) with the settlement
    applet (supplier SD) and the profiling applet (grid operator SD), paired with a test
    meter history; the ``settlement_hub`` fixture (conftest.py) makes them per test."""

    def __init__(self, path, h: History, policy=None) -> None:
        from meterhub.demo.hubs import provision_demo_hub
        from meterhub.hub.secure_element import (
            PROFILING_APP_AID,
            SETTLEMENT_APP_AID,
            ReadingsClient,
        )
        from meterhub.policy import default_policy

        self.h = h
        self.aids = (SETTLEMENT_APP_AID, PROFILING_APP_AID)
        # The customer's cycle is the test history (the release policy's period grid).
        self.card = provision_demo_hub(
            path, ("settlement", "profiling"), policy=policy or default_policy(anchor=h.start, days=len(h.days))
        )
        for aid in self.aids:
            rc = ReadingsClient(self.card.transmit, aid)
            rc.select()
            rc.pair(h.registration.meter_id, "Europe/Berlin", 15)

    @property
    def last(self) -> date:
        return self.h.start + timedelta(days=len(self.h.days) - 1)

    def feed(self, days=None) -> None:
        from meterhub.hub.secure_element import ReadingsClient

        for aid in self.aids:
            rc = ReadingsClient(self.card.transmit, aid)
            rc.select()
            for d in self.h.days if days is None else days:
                rc.put_openings(d.batch.batch.day, d.first_index, d.openings)

    def mailbox(self, party: str, aid: str):
        """An open session of ``party``'s TSM to the applet ``aid`` (its mailbox)."""
        from meterhub.demo.hubs import demo_tsm
        from meterhub.utility.settlement import AppletMailbox

        t = demo_tsm(self.card, party)
        t.open()
        return AppletMailbox(t, aid)


def signed_index(h: History, *, version: int = 1, key=None, **kw):
    """The example price index over ``h``'s days, signed by ``key`` (default: the demo
    index publisher)."""
    from meterhub.tariffs.price_index import (
        demo_index_publisher_key,
        example_price_index,
        sign_series,
    )

    s = example_price_index(h.start, len(h.days), version=version, **kw)
    return sign_series(s, key or demo_index_publisher_key())


def mutate_bytes(data, raw: bytes) -> tuple[str, bytes]:
    """One hypothesis-drawn damage to a wire encoding: a flipped byte, a cut (possibly to
    nothing) or appended bytes. Returns the kind ("flip", "cut", "append") and the result;
    parser tests assert a FormatError, or for a flip a message that re-encodes exactly."""
    from hypothesis import strategies as st

    out = bytearray(raw)
    op = data.draw(st.sampled_from(["flip", "cut", "append"]))
    if op == "flip":
        pos = data.draw(st.integers(0, len(out) - 1))
        out[pos] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        out = out[: data.draw(st.integers(0, len(out) - 1))]
    else:
        out += data.draw(st.binary(min_size=1, max_size=8))
    return op, bytes(out)
