"""The hub as the demo runs it: a GlobalPlatform card whose supplier security domain gets
the billing applet from the supplier's TSM (SCP03 level 33, DAP-signed package) and the
signed tariff by STORE DATA; the host feeds openings and reads bills."""

from __future__ import annotations

from datetime import timedelta

import pytest

from helpers import cycle_policy, make_history
from meterhub.crypto import ecdsa
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
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.tariffs import (
    demo_supplier_key,
    dump_tariff,
    example_signed_tariff,
    example_tariff,
    sign_tariff,
)
from meterhub.utility.tsm import TSM, TSMError, dap_signer
from meterhub.utility.verifier import verify_bill

SUPPLIER = demo_scp03_keys("supplier")
DAP = demo_dap_key("supplier")


def _card(tmp_path):
    return open_hub_card(
        tmp_path / "hub.sqlite",
        issuer_keys=demo_scp03_keys("issuer"),
        supplier_keys=SUPPLIER,
        supplier_dap=DAP.public_key(),
        policy=cycle_policy(days=2),  # the customer's cycle: the 2-day test history
    )


def _tsm(card, keys=SUPPLIER, dap=DAP):
    return TSM(card.transmit, keys, sd_aid=SUPPLIER_SD_AID, dap=dap_signer(SUPPLIER_SD_AID, dap))


def test_tsm_deploys_billing_and_the_bill_verifies(tmp_path):
    h = make_history(n_days=2, seed=41)
    card = _card(tmp_path)
    with _tsm(card) as tsm:
        tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
        tsm.push_tariff(BILLING_APP_AID, dump_tariff(example_signed_tariff()))
        apps = [e.aid.raw.hex().upper() for e in tsm.registry().applications]
        assert BILLING_APP_AID in apps
    applet = BillingClient(card.transmit)
    applet.select()
    assert applet.pair("m-test", "Europe/Berlin", 15, new_home_link_key())
    assert not applet.pair("m-test", "Europe/Berlin", 15, new_home_link_key())
    for d in h.days:
        applet.put_openings(d.batch.batch.day, d.first_index, d.openings)
    assert applet.state() == (h.days[-1].first_index + h.days[-1].batch.batch.count, h.days[-1].batch.batch.day)
    st = applet.bill(h.start, h.start + timedelta(days=1))
    assert st == h.statement
    assert verify_bill(st, h.registration, h.day_commitments(), h.tariff).ok
    card.close()
    # After a restart the applet and its data are still there.
    card = _card(tmp_path)
    applet = BillingClient(card.transmit)
    applet.select()
    assert applet.bill(h.start, h.start + timedelta(days=1)) == h.statement
    card.close()


def test_store_data_refuses_a_tariff_from_another_supplier(tmp_path):
    card = _card(tmp_path)
    with _tsm(card) as tsm:
        tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
        forged = sign_tariff(example_tariff(2027), ecdsa.generate_signing_key())
        with pytest.raises(TSMError) as exc:
            tsm.push_tariff(BILLING_APP_AID, dump_tariff(forged))
        assert exc.value.sw == 0x6A80
    applet = BillingClient(card.transmit)
    applet.select()
    applet.pair("m1", "Europe/Berlin", 15, new_home_link_key())
    with pytest.raises(HubError, match="6985"):  # no tariff was installed
        applet.bill(example_tariff(2027).valid_from, example_tariff(2027).valid_from)
    card.close()


def test_package_signed_by_another_key_and_foreign_keys_are_refused(tmp_path):
    card = _card(tmp_path)
    with _tsm(card, dap=ecdsa.generate_signing_key()) as tsm, pytest.raises(TSMError) as exc:
        tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
    assert exc.value.sw == 0x6A80
    assert card.registry.get(BILLING_APP_AID) is None  # nothing half-installed
    with pytest.raises(TSMError) as exc:
        _tsm(card, keys=demo_scp03_keys("issuer")).open()
    assert exc.value.sw == 0x6982
    card.close()


def test_plain_openings_are_checked(tmp_path):
    h = make_history(n_days=1, seed=42)
    card = _card(tmp_path)
    with _tsm(card) as tsm:
        tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
    applet = BillingClient(card.transmit)
    applet.select()
    applet.pair("m-test", "Europe/Berlin", 15, new_home_link_key())
    from meterhub.applets.billing import encode_openings_day

    data = encode_openings_day(h.start, 0, h.days[0].openings)
    for bad, sw in [(data[:-1], 0x6700), (data[:5], 0x6700), (data[:16] + b"\xff" * (len(data) - 16), 0x6A80)]:
        r = ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0x80, 0x20, 1, 0, bad, extended=True).to_bytes()))
        assert r.sw == sw
    r = ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0x80, 0x20, 7, 0, data, extended=True).to_bytes()))
    assert r.sw == 0x6A86
    card.close()


def test_each_recipient_has_its_own_security_domain(tmp_path):
    from meterhub.hub.secure_element import GRID_OPERATOR_SD_AID, RECIPIENT_SDS, THIRD_PARTY_SD_AID

    card = _card(tmp_path)
    for name, aid in RECIPIENT_SDS.items():
        assert card.registry.get(aid) is not None
        # Its own keys open its channel ...
        TSM(card.transmit, demo_scp03_keys(name), sd_aid=aid).open().close()
    # ... and nobody else's.
    for name, aid in [("supplier", GRID_OPERATOR_SD_AID), ("grid-operator", THIRD_PARTY_SD_AID), ("third-party", SUPPLIER_SD_AID)]:
        with pytest.raises(TSMError) as exc:
            TSM(card.transmit, demo_scp03_keys(name), sd_aid=aid).open()
        assert exc.value.sw == 0x6982
    # A package signed with the grid operator's DAP key is refused by the supplier's domain.
    with _tsm(card, dap=demo_dap_key("grid-operator")) as tsm, pytest.raises(TSMError):
        tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
    card.close()
