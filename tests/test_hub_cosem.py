"""The hub answers in COSEM: a bill statement as Register (IC 3) and Data (IC 1)
objects, round-tripped, served over a public association, read by our client and by
dlms-cosem's sans-IO client; the currency unit code is checked against gurux-dlms's
unit table (GPL, test oracle only)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from dlms_cosem import cosem, utils
from dlms_cosem import enumerations as E
from dlms_cosem.connection import DlmsConnection
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.security import NoSecurityAuthentication
from gurux_dlms.enums import Unit
from hypothesis import given
from hypothesis import strategies as st

from meterhub.crypto.group import Q
from meterhub.hub.cosem import (
    BILL_BLINDING,
    BILL_TOTAL,
    STATEMENT,
    STATEMENT_ATTRIBUTES,
    UNIT_CURRENCY,
    CosemFormatError,
    decode_statement,
    encode_statement,
    read_statement,
    statement_server,
)
from meterhub.model.formats.statements import BillStatement
from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.client import DlmsLinkClient, DlmsLinkError
from meterhub.protocols.dlms.cosem import IC_DATA, IC_REGISTER

# The statement printed in docs/formats.md ("Bill statement").
DOC_STATEMENT = BillStatement(
    meter_id="m1",
    period_from=date(2027, 3, 15),
    period_to=date(2027, 4, 13),
    first_index=0,
    count=2876,
    tariff_id="de-tou-2027",
    tariff_version=1,
    tariff_digest=bytes.fromhex("4aaccf79c0faec2c13ee69ce4665d4754a93a3d791ad1c7447ec4b9ebac1de1f"),
    currency="EUR",
    subunits_per_unit=1_000_000,
    energy_charge=85705810,
    standing_charge=12000000,
    total=97705810,
    blinding=int("fa7b4e9c5ace6e23fe293b3795ba81a84964704abf847069cbee1e5b12375f2d", 16),
)


def test_unit_code_is_the_blue_book_currency():
    assert UNIT_CURRENCY == int(Unit.LOCAL_CURRENCY) == 10


def test_documented_encodings():
    enc = encode_statement(DOC_STATEMENT)
    assert set(enc) == set(STATEMENT_ATTRIBUTES)
    # Register value: long64 (tag 20); scaler_unit {integer -6, enum 10}
    assert enc[(IC_REGISTER, BILL_TOTAL, 2)] == bytes.fromhex("14") + (97705810).to_bytes(8, "big")
    assert enc[(IC_REGISTER, BILL_TOTAL, 3)] == bytes.fromhex("02020ffa160a")
    assert enc[(IC_DATA, BILL_BLINDING, 2)] == bytes.fromhex("0920") + DOC_STATEMENT.blinding.to_bytes(32, "big")
    desc = axdr.decode(enc[(IC_DATA, STATEMENT, 2)])
    assert desc[0] == "meterhub/bill-statement/v1"
    assert desc[2] == bytes.fromhex("07eb030f01")  # 2027-03-15, a Monday
    assert desc[9] == "EUR"


statements = st.builds(
    BillStatement,
    meter_id=st.text(min_size=1, max_size=40),
    period_from=st.dates(date(2000, 1, 1), date(2099, 1, 1)),
    period_to=st.just(date(2099, 12, 31)),
    first_index=st.integers(0, 2**64 - 1),
    count=st.integers(0, 2**32 - 1),
    tariff_id=st.text(max_size=40),
    tariff_version=st.integers(0, 2**32 - 1),
    tariff_digest=st.binary(min_size=32, max_size=32),
    currency=st.sampled_from(["EUR", "CHF", "GBP", "XAU"]),
    subunits_per_unit=st.sampled_from([1, 10, 100, 1000, 10**6, 10**9]),
    energy_charge=st.integers(-(2**63), 2**63 - 1),
    standing_charge=st.integers(-(2**63), 2**63 - 1),
    total=st.integers(-(2**63), 2**63 - 1),
    blinding=st.integers(0, Q - 1),
)


@given(statements, st.lists(st.binary(max_size=300), max_size=3))
def test_round_trip(s, proofs):
    assert decode_statement(encode_statement(s, tuple(proofs))) == (s, tuple(proofs))


def test_values_that_do_not_fit_are_refused():
    for change in ({"subunits_per_unit": 12}, {"currency": "€"}, {"total": 2**63}, {"count": -1}):
        with pytest.raises(CosemFormatError):
            encode_statement(dataclasses.replace(DOC_STATEMENT, **change))


def _tampered(key, raw):
    enc = encode_statement(DOC_STATEMENT)
    enc[key] = raw
    return enc


@pytest.mark.parametrize(
    "key, raw, needle",
    [
        ((IC_REGISTER, BILL_TOTAL, 3), bytes.fromhex("02020ffd160a"), "scaler_unit"),  # scaler -3
        ((IC_REGISTER, BILL_TOTAL, 3), bytes.fromhex("02020ffa161e"), "scaler_unit"),  # unit Wh
        ((IC_DATA, BILL_BLINDING, 2), axdr.octet_string(Q.to_bytes(32, "big")), "blinding"),
        ((IC_DATA, BILL_BLINDING, 2), axdr.octet_string(b"\x01" * 31), "blinding"),
        ((IC_REGISTER, BILL_TOTAL, 2), axdr.octet_string(b"1"), "integer"),
        ((IC_REGISTER, BILL_TOTAL, 2), b"\x14\x00", "A-XDR"),
    ],
)
def test_tampered_attributes_are_refused(key, raw, needle):
    with pytest.raises(CosemFormatError, match=needle):
        decode_statement(_tampered(key, raw))


def test_tampered_descriptor_is_refused():
    desc = axdr.decode(encode_statement(DOC_STATEMENT)[(IC_DATA, STATEMENT, 2)])

    def enc(items):
        out = []
        for v in items:
            out.append(axdr.visible_string(v) if isinstance(v, str) else
                       axdr.octet_string(v) if isinstance(v, bytes) else axdr.long64_unsigned(v))
        return axdr.structure(out)

    bad_weekday = list(desc)
    bad_weekday[2] = bytes.fromhex("07eb030f02")
    other_format = list(desc)
    other_format[0] = "meterhub/bill-statement/v2"
    reversed_period = list(desc)
    reversed_period[2], reversed_period[3] = desc[3], desc[2]
    for items, needle in ((bad_weekday, "day of week"), (other_format, "format"),
                          (reversed_period, "ends before"), (desc[:10], "structure of 11")):
        with pytest.raises(CosemFormatError, match=needle):
            decode_statement(_tampered((IC_DATA, STATEMENT, 2), enc(items)))
    enc_all = encode_statement(DOC_STATEMENT)
    del enc_all[(IC_DATA, BILL_BLINDING, 2)]
    with pytest.raises(CosemFormatError, match="missing"):
        decode_statement(enc_all)


def test_get_over_a_public_association():
    server = statement_server(DOC_STATEMENT, (b"a proof",), max_pdu_size=64)  # forces block transfer
    got = read_statement(server.association(16).handle)
    assert got == (DOC_STATEMENT, (b"a proof",))


def test_management_association_is_refused_by_the_statement_server():
    from meterhub.protocols.dlms.security import Suite0Keys

    server = statement_server(DOC_STATEMENT)
    client = DlmsLinkClient(server.association(1).handle, keys=Suite0Keys.generate(), system_title=b"MHHTEST1")
    with pytest.raises(DlmsLinkError, match="association refused"):
        client.associate()


def test_unknown_object_is_a_data_access_result():
    server = statement_server(DOC_STATEMENT)
    client = DlmsLinkClient(server.association(16).handle)
    client.associate()
    with pytest.raises(DlmsLinkError, match="object-undefined"):
        client.get(IC_REGISTER, bytes([0, 128, 97, 9, 0, 255]), 2)
    with pytest.raises(DlmsLinkError, match="object-class-inconsistent"):
        client.get(IC_DATA, BILL_TOTAL, 2)


def test_dlms_cosem_client_reads_the_bill_register():
    """dlms-cosem's sans-IO DlmsConnection (third party) as the recipient's client."""
    server = statement_server(DOC_STATEMENT)
    assoc = server.association(16)
    conn = DlmsConnection(
        authentication=NoSecurityAuthentication(), client_system_title=b"UTILITY1"
    )

    def exchange(event):
        conn.receive_data(assoc.handle(conn.send(event)))
        return conn.next_event()

    aare = exchange(conn.get_aarq())
    assert isinstance(aare, acse.ApplicationAssociationResponse)
    assert aare.result == E.AssociationResult.ACCEPTED
    values = {}
    for attr in (2, 3):
        target = cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(0, 128, 97, 1, 0), attr)
        resp = exchange(xdlms.GetRequestNormal(target))
        assert isinstance(resp, xdlms.GetResponseNormal)
        values[attr] = utils.parse_as_dlms_data(resp.data)
    scaler, unit = values[3]
    assert (scaler, unit) == (-6, 10)
    assert values[2] * 10**scaler == pytest.approx(97.70581)
    blinding = xdlms.GetRequestNormal(
        cosem.CosemAttribute(E.CosemInterface.DATA, cosem.Obis(0, 128, 97, 2, 0), 2)
    )
    resp = exchange(blinding)
    assert bytes(utils.parse_as_dlms_data(resp.data)) == DOC_STATEMENT.blinding.to_bytes(32, "big")


def test_period_dates_across_years():
    s = dataclasses.replace(DOC_STATEMENT, period_from=date(2027, 12, 31), period_to=date(2027, 12, 31) + timedelta(days=1))
    assert decode_statement(encode_statement(s))[0] == s


def test_statement_read_over_cosem_verifies_at_the_utility(tmp_path):
    """End to end: the demo's stored statement, published by the hub in COSEM, read by a
    recipient, is accepted by the utility's verifier; a changed total is not."""
    import sqlite3

    from meterhub.demo.system import DemoParams, run_demo
    from meterhub.utility.store import UtilityStore

    (result,) = run_demo(DemoParams(households=1, days=2, data_dir=tmp_path))
    con = sqlite3.connect(tmp_path / "hub.sqlite")
    meter_id, first, last = con.execute("SELECT meter_id, period_from, period_to FROM statements").fetchone()
    con.close()
    from datetime import date

    from meterhub.hub.secure_element import VaultClient, open_vault_card
    from meterhub.hub.store import HubStore

    card = open_vault_card(tmp_path / "hubs" / f"{meter_id}.sqlite")  # the statement is sealed by the meter's card
    hub = HubStore(tmp_path / "hub.sqlite", {meter_id: VaultClient(card.transmit)})
    text = hub.statement(meter_id, date.fromisoformat(first), date.fromisoformat(last))
    card.close()
    hub.close()
    published = BillStatement.from_json(text)
    got, proofs = read_statement(statement_server(published).association(16).handle)
    assert got == published and proofs == ()
    utility = UtilityStore(tmp_path / "utility.sqlite")
    try:
        assert utility.verify_statement(got).ok
        assert not utility.verify_statement(dataclasses.replace(got, total=got.total + 1)).ok
    finally:
        utility.close()


@given(
    key=st.sampled_from(STATEMENT_ATTRIBUTES),
    pos=st.integers(0, 500),
    how=st.sampled_from(["flip", "truncate", "extend", "random"]),
    junk=st.binary(min_size=1, max_size=40),
)
def test_mutated_attributes_give_a_format_error_or_a_statement(key, pos, how, junk):
    enc = encode_statement(DOC_STATEMENT)
    raw = enc[key]
    i = pos % len(raw)
    enc[key] = {
        "flip": raw[:i] + bytes([raw[i] ^ 0xA5]) + raw[i + 1 :],
        "truncate": raw[:i],
        "extend": raw + junk,
        "random": junk,
    }[how]
    try:
        st_, _ = decode_statement(enc)
    except CosemFormatError:
        return
    assert isinstance(st_, BillStatement)


@given(step=st.integers(0, 12), junk=st.binary(max_size=40))
def test_garbled_hub_answers_raise_only_link_or_format_errors(step, junk):
    assoc = statement_server(DOC_STATEMENT, max_pdu_size=64).association(16)
    calls = [0]

    def transport(apdu: bytes) -> bytes:
        answer = assoc.handle(apdu)
        calls[0] += 1
        return junk if calls[0] - 1 == step else answer

    try:
        got = read_statement(transport)
    except (DlmsLinkError, CosemFormatError):
        return
    assert isinstance(got[0], BillStatement)
