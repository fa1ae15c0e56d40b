"""The billing applet inside the card runtime: pairing, tariff, sealed days, bills."""

from __future__ import annotations

from datetime import timedelta

import pytest

from helpers import cycle_policy, make_history, provision_test_guard
from meterhub.applets.billing import CLASS_NAME, encode_day, encode_pairing
from meterhub.card import Card
from meterhub.crypto import ecdsa
from meterhub.hub.secure_element import SUPPLIER_SD_AID
from meterhub.model.formats.sealed import new_home_link_key, seal_openings
from meterhub.model.formats.statements import BillStatement
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.tariffs import (
    demo_supplier_key,
    dump_tariff,
    example_signed_tariff,
    example_tariff,
    sign_tariff,
)
from meterhub.utility.verifier import verify_bill

AID = "F04D480001010101"


def _send(card: Card, ins: int, data: bytes = b"", le: int | None = None) -> ResponseAPDU:
    capdu = CommandAPDU(0x80, ins, 0, 0, data, le=le, extended=len(data) > 255 or (le or 0) > 256)
    return ResponseAPDU.from_bytes(card.transmit(capdu.to_bytes()))


def _card(tmp_path) -> Card:
    card = Card(tmp_path / "hub.db")
    provision_test_guard(card, cycle_policy(days=3))  # the bills below cover 3 days
    card.registry.install_applet(
        CLASS_NAME, AID, sd_aid=SUPPLIER_SD_AID, params=ecdsa.public_bytes(demo_supplier_key())
    )
    card.power_on()
    r = ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0, 0xA4, 4, 0, bytes.fromhex(AID), le=256).to_bytes()))
    assert r.sw == 0x9000
    return card


def test_bill_from_the_applet_verifies(tmp_path):
    h = make_history(n_days=3, seed=31)
    key = new_home_link_key()
    card = _card(tmp_path)
    assert _send(card, 0x30, bytes(8)).sw == 0x6985  # not paired yet
    assert _send(card, 0x10, encode_pairing("m-test", "Europe/Berlin", 15, key)).sw == 0x9000
    assert _send(card, 0x10, encode_pairing("m-x", "Europe/Berlin", 15, key)).sw == 0x6985
    assert _send(card, 0x12, dump_tariff(example_signed_tariff())).sw == 0x9000
    for d in h.days:
        sealed = seal_openings(key, "m-test", d.batch.batch.day, d.first_index, d.openings)
        assert _send(card, 0x20, encode_day(sealed)).sw == 0x9000
        assert _send(card, 0x20, encode_day(sealed)).sw == 0x9000  # idempotent re-delivery
    period = b"".join(x.year.to_bytes(2, "big") + bytes([x.month, x.day]) for x in (h.start, h.start + timedelta(days=2)))
    r = _send(card, 0x30, period, le=65536)
    assert r.sw == 0x9000, hex(r.sw)
    st = BillStatement.from_json(r.data)
    assert st.energy_charge == h.statement.energy_charge and st.blinding == h.statement.blinding
    assert verify_bill(st, h.registration, h.day_commitments(), h.tariff).ok
    # The state survives a restart of the card.
    card.close()
    card2 = Card(tmp_path / "hub.db")
    card2.power_on()
    card2.transmit(CommandAPDU(0, 0xA4, 4, 0, bytes.fromhex(AID)).to_bytes())
    r2 = _send(card2, 0x30, period, le=65536)
    assert BillStatement.from_json(r2.data).energy_charge == st.energy_charge
    card2.close()


def test_applet_refuses_bad_input(tmp_path):
    h = make_history(n_days=2, seed=32)
    key = new_home_link_key()
    card = _card(tmp_path)
    assert _send(card, 0x10, b"\x80\x01").sw == 0x6A80
    assert _send(card, 0x10, encode_pairing("m-test", "Mars/Olympus", 15, key)).sw == 0x6A80
    assert _send(card, 0x10, encode_pairing("m-test", "Europe/Berlin", 15, key)).sw == 0x9000
    # A tariff signed by another supplier, and garbage.
    other = sign_tariff(example_tariff(2027), ecdsa.generate_signing_key())
    assert _send(card, 0x12, dump_tariff(other)).sw == 0x6A80
    assert _send(card, 0x12, b"{}").sw == 0x6A80
    sealed = [seal_openings(key, "m-test", d.batch.batch.day, d.first_index, d.openings) for d in h.days]
    # Wrong key, truncated, out of order.
    forged = seal_openings(new_home_link_key(), "m-test", h.days[0].batch.batch.day, 0, h.days[0].openings)
    assert _send(card, 0x20, encode_day(forged)).sw == 0x6982
    assert _send(card, 0x20, encode_day(sealed[0])[:20]).sw == 0x6700
    assert _send(card, 0x20, encode_day(sealed[1])).sw == 0x9000  # a first day may start anywhere
    assert _send(card, 0x20, encode_day(sealed[0])).sw == 0x6A80  # but later ones must follow on
    # Bills: no tariff yet, bad dates, missing day.
    assert _send(card, 0x30, bytes(8)).sw in (0x6A80, 0x6985)
    assert _send(card, 0x30, b"\x07\xeb\x02\x1e" * 2).sw == 0x6A80  # 2027-02-30
    assert _send(card, 0x30, b"\x00").sw == 0x6700
    assert _send(card, 0x99).sw == 0x6D00


@pytest.mark.parametrize("ins", [0x10, 0x12, 0x20, 0x30, 0x32])
def test_random_data_gets_a_status_word(tmp_path, ins):
    import random

    card = _card(tmp_path)
    rng = random.Random(ins)
    for _ in range(40):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
        r = _send(card, ins, data)
        assert r.sw != 0x6F00, (ins, data.hex())
