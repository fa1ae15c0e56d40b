"""Secrets and readings at rest on the hub host and the meter (docs/privacy.md), the key
files' permissions, and `hub serve` refusing publicly known keys outside --dev."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from meterhub.crypto import ecdsa
from meterhub.hub.store import HubStore
from meterhub.meter.store import MeterStore
from meterhub.storage.sqlite import StoreError

HLK = bytes.fromhex("00112233445566778899aabbccddeeff")


def _raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def _mode(path: Path | str) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_store_without_its_storage_key_is_refused_not_rekeyed(tmp_path):
    path = tmp_path / "meter.sqlite"
    MeterStore(path).close()
    os.unlink(f"{path}.sk")
    with pytest.raises(StoreError, match="storage key missing"):
        MeterStore(path)
    assert not Path(f"{path}.sk").exists()
    Path(f"{path}.sk").write_bytes(b"short")
    with pytest.raises(StoreError, match="32-byte"):
        MeterStore(path)
    # A listed store that is gone, with its key: refused, and no new key is made up.
    os.unlink(f"{path}.sk")
    for x in ("", "-wal", "-shm"):
        Path(f"{path}{x}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="storage key missing|store missing"):
        MeterStore(path)
    assert not Path(f"{path}.sk").exists()


def test_meter_store_seals_the_signing_and_home_link_keys(tmp_path):
    path = tmp_path / "meter.sqlite"
    store = MeterStore(path)
    store.provision("M1", "Europe/Berlin", 15, HLK)
    meter = store.load("M1")
    info = store.info("M1")
    store.close()
    raw = _raw(path)
    pem = ecdsa.signing_key_pem(meter.key) if hasattr(meter, "key") else None
    assert b"PRIVATE KEY" not in raw
    assert HLK not in raw
    if pem is not None:
        assert pem not in raw
    assert _mode(f"{path}.sk") == 0o600
    again = MeterStore(path)
    assert again.info("M1") == info
    again.close()
    conn = sqlite3.connect(path)  # the signing key moved into the home-link key's column
    sk = conn.execute("SELECT signing_key FROM meters").fetchone()[0]
    conn.execute("UPDATE meters SET home_link_key=?", (sk,))
    conn.commit()
    conn.close()
    again = MeterStore(path)
    with pytest.raises(StoreError, match="fails authentication"):
        again.info("M1")
    again.close()


def test_every_key_file_the_cli_writes_is_owner_only(tmp_path):
    """meter simulate (home-link key, meter store key), hub serve (DAP key, SCP03 keys,
    customer key, card and storage keys): all 0600; the hub store has no key file."""
    from meterhub.cli import main
    from meterhub.hub.serve import build_hub_card

    out = tmp_path / "m"
    os.umask(0o022)
    assert main(["meter", "simulate", "--meter-id", "M1", "--days", "1", "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    keys = [out / "M1.homelink.key", out / "meter.sqlite.sk"]
    assert all(p.exists() for p in keys), written
    d = tmp_path / "hub"
    build_hub_card(d).close()
    keys += [d / "dap-key.pem", d / "scp03-keys.json", d / "card.sqlite.customer.pem", d / "card.sqlite.sk"]
    HubStore(tmp_path / "h" / "hub.sqlite").close()
    assert not (tmp_path / "h" / "hub.sqlite.sk").exists()  # its records are sealed by the hub cards
    for p in keys:
        assert _mode(p) == 0o600, p


# -- hub serve: fresh keys, the guard, and no publicly known keys outside --dev --------------------
def test_hub_serve_card_gets_fresh_keys_and_the_guard(tmp_path, capsys):
    from meterhub.card.gp import ISD_AID, StaticKeys
    from meterhub.card.guard import GUARD_AID
    from meterhub.hub.secure_element import RECIPIENT_SDS
    from meterhub.hub.serve import KEYS_FILE, TEST_KEYS, build_hub_card, publicly_known_keys
    from meterhub.utility.tsm import TSM, TSMError

    card = build_hub_card(tmp_path)
    assert f"written to {tmp_path / KEYS_FILE} (0600)" in capsys.readouterr().err
    assert card.registry.get(GUARD_AID) is not None
    assert all(card.registry.get(aid) is not None for aid in RECIPIENT_SDS.values())
    assert publicly_known_keys(card) == []
    doc = json.loads((tmp_path / KEYS_FILE).read_text())
    sds = {e["party"]: e for e in doc["security_domains"]}
    assert set(sds) == {"issuer", *RECIPIENT_SDS}
    isd = sds["issuer"]
    assert isd["aid"] == "A000000151000000"
    keys = StaticKeys(isd["kvn"], *(bytes.fromhex(isd[k]) for k in ("enc", "mac", "dek")))
    card.power_on()
    with pytest.raises(TSMError):
        TSM(card, TEST_KEYS).open()
    assert [e.aid for e in TSM(card, keys).open().registry().issuer_sd] == [ISD_AID]
    card.close()


def test_hub_serve_refuses_a_card_on_public_keys_outside_dev(tmp_path, capsys):
    from meterhub.card.gp import StaticKeys
    from meterhub.cli import main
    from meterhub.hub.serve import TEST_KEYS, ServeError, build_hub_card, publicly_known_keys
    from meterhub.utility.tsm import TSM

    card = build_hub_card(tmp_path, dev=True)  # a development card: GP test keys, demo keys
    assert len(publicly_known_keys(card)) == 4
    card.close()
    with pytest.raises(ServeError, match="publicly known keys"):
        build_hub_card(tmp_path)
    assert main(["hub", "serve", "--vpcd", "127.0.0.1:9", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "404142" not in err and "--dev" in err, err
    # The issuer rotates the ISD's test keys with PUT KEY; the recipients' demo keys remain.
    card = build_hub_card(tmp_path, dev=True)
    card.power_on()
    new = StaticKeys(0x31, os.urandom(16), os.urandom(16), os.urandom(16))
    with TSM(card, TEST_KEYS) as tsm:
        tsm.rotate_keys(new)
    assert [aid for aid, _ in publicly_known_keys(card)] != []
    assert "A000000151000000" not in {aid for aid, _ in publicly_known_keys(card)}
    card.close()
    with pytest.raises(ServeError, match="F04D480053440001 KVN 30"):
        build_hub_card(tmp_path)


def test_hub_serve_card_releases_through_the_guard(tmp_path):
    """An applet the supplier installs on a served card is bound by the customer's policy:
    the supplier cannot install the billing applet with its own tariff-signing key."""
    from meterhub.card.gp import StaticKeys
    from meterhub.hub.secure_element import (
        BILLING_APP_AID,
        SUPPLIER_SD_AID,
        billing_load_file,
    )
    from meterhub.hub.serve import DAP_KEY_FILE, KEYS_FILE, build_hub_card
    from meterhub.utility.tsm import TSM, TSMError, dap_signer

    card = build_hub_card(tmp_path)
    card.power_on()
    doc = json.loads((tmp_path / KEYS_FILE).read_text())
    e = next(x for x in doc["security_domains"] if x["party"] == "supplier")
    keys = StaticKeys(e["kvn"], *(bytes.fromhex(e[k]) for k in ("enc", "mac", "dek")))
    dap = ecdsa.load_signing_key((tmp_path / DAP_KEY_FILE).read_bytes())
    own = ecdsa.generate_signing_key()
    tsm = TSM(card.transmit, keys, sd_aid=SUPPLIER_SD_AID, dap=dap_signer(SUPPLIER_SD_AID, dap))
    with tsm, pytest.raises(TSMError, match="SW 6982") as exc:
        tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(own))
    # The sender gets the status word and a one-line reason.
    assert "refused: not signed by the pinned publisher" in str(exc.value)
    assert "\n" not in str(exc.value)
    card.close()


def test_every_status_word_the_card_refuses_with_has_a_reason():
    """Each status word the guard and the applets raise (read from their source) has a
    one-line reason for the sender, not the generic "refused"."""
    import re

    import meterhub.applets
    import meterhub.card.guard
    from meterhub.policy import refusal_reason
    from meterhub.protocols.iso7816.sw import SW

    names: set[str] = set()
    sources = [*Path(meterhub.card.guard.__file__).parent.glob("*.py"), *Path(meterhub.applets.__file__).parent.glob("*.py")]
    for path in sources:
        names |= set(re.findall(r"ISOException\(SW\.([A-Z_0-9]+)", path.read_text()))
    assert names
    for name in sorted(names):
        reason = refusal_reason(getattr(SW, name))
        assert reason != "refused" and "\n" not in reason, name
