"""Non-linear tariffs end to end: the billing applet proves v2 statements, the hub
CLI writes them, and the utility (store and CLI) verifies them (docs/nonlinear.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from helpers import cycle_policy, make_history
from meterhub.cli import main
from meterhub.crypto import ecdsa
from meterhub.hub.billing import bill_statement
from meterhub.hub.proving import ProvenBillStatement, prove_bill, statement_from_json
from meterhub.hub.secure_element import (
    BILLING_APP_AID,
    SUPPLIER_SD_AID,
    BillingClient,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)
from meterhub.hub.store import HubError
from meterhub.model.formats.sealed import new_home_link_key
from meterhub.model.formats.statements import BillStatement
from meterhub.tariffs import (
    KIND_INCLINING_BLOCK,
    KIND_POLYNOMIAL,
    KIND_TIERED,
    demo_supplier_key,
    dump_tariff,
    example_signed_tariff,
    sign_tariff,
)
from meterhub.tariffs.nonlinear import example_nonlinear_tariff
from meterhub.utility.proof_verifier import verify_proven_bill
from meterhub.utility.store import UtilityStore
from meterhub.utility.tsm import TSM, dap_signer
from meterhub.utility.verifier import verify_bill

KINDS = [KIND_TIERED, KIND_INCLINING_BLOCK, KIND_POLYNOMIAL]
SUPPLIER = demo_scp03_keys("supplier")
DAP = demo_dap_key("supplier")


def _signed(kind: str):
    return sign_tariff(example_nonlinear_tariff(kind), demo_supplier_key())


def _flip_proof_byte(st: dict, pos: int) -> dict:
    raw = bytearray(base64.b64decode(st["proof"]))
    raw[pos % len(raw)] ^= 0x01
    return {**st, "proof": base64.b64encode(bytes(raw)).decode()}


# -- the billing applet ---------------------------------------------------------------------
def _hub_card(tmp_path: Path, signed) -> tuple[Any, BillingClient]:
    """A hub card whose supplier TSM installed the billing applet and pushed ``signed``
    by STORE DATA (the applet's ``process_data``), as in the demo."""
    card = open_hub_card(
        tmp_path / "hub.sqlite", issuer_keys=demo_scp03_keys("issuer"), supplier_keys=SUPPLIER,
        supplier_dap=DAP.public_key(), policy=cycle_policy(days=1),  # one-day test bills
    )
    with TSM(card.transmit, SUPPLIER, sd_aid=SUPPLIER_SD_AID, dap=dap_signer(SUPPLIER_SD_AID, DAP)) as tsm:
        tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
        tsm.push_tariff(BILLING_APP_AID, dump_tariff(signed))
    client = BillingClient(card.transmit)
    client.select()
    assert client.pair("m-test", "Europe/Berlin", 15, new_home_link_key())
    return card, client


@pytest.mark.parametrize("kind", KINDS)
def test_applet_bills_non_linear_tariffs_with_proofs(tmp_path, kind):
    """The applet proves a v2 statement from its stored openings; BillingClient
    collects it (in 61xx chunks for a tiered day: 96 tier proofs exceed 64 KiB) and
    the utility verifies it; tampered copies are rejected."""
    h = make_history(n_days=1, seed=51)
    signed = _signed(kind)
    card, client = _hub_card(tmp_path, signed)
    for d in h.days:
        client.put_openings(d.batch.batch.day, d.first_index, d.openings)
    st = client.bill(h.start, h.start)
    assert isinstance(st, ProvenBillStatement) and st.tariff_kind == kind
    if kind == KIND_TIERED:
        assert len(st.to_json()) > 65536
    tariff = signed.tariff
    honest = prove_bill(
        meter_id="m-test", tariff=tariff, period_from=h.start, period_to=h.start, first_index=0,
        openings=h.openings,
    )
    assert (st.energy_charge, st.total) == (honest.energy_charge, honest.total)
    assert verify_proven_bill(st, h.registration, h.day_commitments(), tariff).ok
    bad = ProvenBillStatement.from_dict(_flip_proof_byte(st.to_dict(), 200))
    assert not verify_proven_bill(bad, h.registration, h.day_commitments(), tariff).ok
    more = {**st.to_dict(), "energy_charge": st.energy_charge + 1, "total": st.total + 1}
    assert not verify_proven_bill(ProvenBillStatement.from_dict(more), h.registration, h.day_commitments(), tariff).ok
    card.close()


def test_applet_still_bills_time_of_use_as_v1(tmp_path):
    h = make_history(n_days=1, seed=52)
    card, client = _hub_card(tmp_path, example_signed_tariff())
    for d in h.days:
        client.put_openings(d.batch.batch.day, d.first_index, d.openings)
    st = client.bill(h.start, h.start)
    assert isinstance(st, BillStatement)
    assert verify_bill(st, h.registration, h.day_commitments(), h.tariff).ok
    card.close()


def test_applet_refuses_readings_outside_the_tariff(tmp_path):
    """A reading at or above m_max cannot be proved: GET BILL answers 6985, never a bill."""
    h = make_history(n_days=1, seed=53)
    card, client = _hub_card(tmp_path, sign_tariff(example_nonlinear_tariff(KIND_TIERED, m_max=512), demo_supplier_key()))
    assert max(o.m for o in h.openings) >= 512
    for d in h.days:
        client.put_openings(d.batch.batch.day, d.first_index, d.openings)
    with pytest.raises(HubError, match="6985"):
        client.bill(h.start, h.start)
    card.close()


# -- the utility store ------------------------------------------------------------------------
def test_store_verifies_v2_and_refuses_the_wrong_format(tmp_path):
    h = make_history(n_days=1, seed=54)
    signed = _signed(KIND_INCLINING_BLOCK)
    store = UtilityStore(tmp_path / "u.sqlite")
    store.add_tariff(signed, dump_tariff(signed))
    store.register_meter("m-test", ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
    for up in h.uploads():
        assert store.ingest_day(up).accepted
    st = prove_bill(
        meter_id="m-test", tariff=signed.tariff, period_from=h.start, period_to=h.start, first_index=0,
        openings=h.openings,
    )
    assert store.verify_statement(st).ok
    bad = ProvenBillStatement.from_dict({**st.to_dict(), "blinding": (st.blinding ^ 1).to_bytes(32, "big").hex()})
    v = store.verify_statement(bad)
    assert not v.ok
    # A v1 statement for a non-linear tariff is refused, not billed at 0.
    v1 = bill_statement(
        meter_id="m-test", tariff=h.tariff, period_from=h.start, period_to=h.start, first_index=0,
        prices=h.prices(), openings=h.openings,
    )
    v = store.verify_statement(v1)
    assert not v.ok and "v2" in v.reason
    # Pending statements of both formats go through verify_pending.
    store.submit_statement(st)
    assert store.verify_pending() == (1, 0)
    store.submit_statement(bad)
    assert store.verify_pending() == (0, 1)
    # The verdict history keeps every statement, in the order received (V21).
    assert [type(x) for x in store.iter_statements()] == [
        ProvenBillStatement, ProvenBillStatement, BillStatement, ProvenBillStatement, ProvenBillStatement
    ]
    store.close()


# -- the CLI ----------------------------------------------------------------------------------
@pytest.fixture(params=KINDS)
def nonlinear_party_files(request, tmp_path):
    kind = request.param
    d = tmp_path
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "1", "--start", "2027-06-01", "--out", str(d / "meter")]) == 0
    (d / "t.json").write_bytes(dump_tariff(_signed(kind)))
    (d / "sup.pub").write_text(ecdsa.public_bytes(demo_supplier_key()).hex() + "\n")
    m = d / "meter"
    args = ["--meter", str(m / "m1.meter.json"), "--tariff", str(d / "t.json"), "--supplier-key", str(d / "sup.pub")]
    assert main(["hub", "bill", *args, "--key", str(m / "m1.homelink.key"), "--homelink", str(m / "m1.homelink.jsonl"),
                 "--from", "2027-06-01", "--to", "2027-06-01", "--out", str(d / "st.json"), "--data-dir", str(d / "hub")]) == 0
    verify = ["utility", "verify", *args, "--uploads", str(m / "m1.uploads.jsonl"), "--data-dir", str(d / "util")]
    return kind, d, verify


def test_cli_writes_and_verifies_v2(nonlinear_party_files, capsys):
    kind, d, verify = nonlinear_party_files
    st = statement_from_json((d / "st.json").read_text())
    assert isinstance(st, ProvenBillStatement) and st.tariff_kind == kind
    capsys.readouterr()
    assert main([*verify, "--statement", str(d / "st.json")]) == 0
    assert "VERIFIED m1" in capsys.readouterr().out


@pytest.mark.parametrize("tamper", ["bill", "proof", "blinding"])
def test_cli_rejects_tampered_v2_with_exit_1(nonlinear_party_files, capsys, tamper):
    _, d, verify = nonlinear_party_files
    st = json.loads((d / "st.json").read_text())
    if tamper == "bill":
        st["energy_charge"] += 1
        st["total"] += 1
    elif tamper == "proof":
        st = _flip_proof_byte(st, 150)
    else:
        st["blinding"] = (int(st["blinding"], 16) ^ 1).to_bytes(32, "big").hex()
    (d / "bad.json").write_text(json.dumps(st))
    capsys.readouterr()
    assert main([*verify, "--statement", str(d / "bad.json")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("REJECTED") and len(out.strip().splitlines()) == 1

