"""The hub's records at rest under a key that never leaves the card (docs/privacy.md,
"Secrets and readings at rest"): hub.sqlite is sealed by each meter's hub card through
its storage vault; the host holds no key, a stolen hub.sqlite reveals nothing, altered
or moved records are refused, and schema-2 stores (host key file) migrate."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import types
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpers import card_vault
from meterhub.card import Card
from meterhub.card.vault import VAULT_AID, VAULT_CLASS, provision_vault
from meterhub.crypto.pedersen import Opening
from meterhub.hub.secure_element import VaultClient, open_vault_card
from meterhub.hub.store import HubError, HubStore, migrate_host_key_store
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.protocols.iso7816.sw import ISOException
from meterhub.storage.sqlite import SealedColumns, StoreError, storage_key

HLK = bytes.fromhex("00112233445566778899aabbccddeeff")
OPS = [Opening(123456 + k, 0xDEADBEEF_CAFEBABE_0000_0000 + k) for k in range(4)]
D1, D2 = date(2026, 1, 1), date(2026, 1, 2)


def _card_key(vault: VaultClient) -> bytes:
    """The record key, read from the card's own store (as only the card can)."""
    ns = vault.card.registry.get(VAULT_AID).aid.raw
    key = vault.card.store.get(ns, b"key")
    assert key is not None and len(key) == 32
    return key


def _fill(hub: HubStore) -> None:
    hub.pair_meter("M1", HLK, "Europe/Berlin", 15)
    assert hub.store_openings("M1", D1, 0, OPS)
    assert hub.store_openings("M1", D2, 4, OPS)
    hub.save_statement("M1", D1, D2, '{"total": "SECRET-BILL"}')


def _raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def _reachable(root: object, stop: set[int]) -> list[object]:
    """Every object reachable from ``root`` through references, not entering ``stop``
    (the card: the other side of the host link) nor modules and classes (code, not state)."""
    seen: set[int] = set()
    out: list[object] = []
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in stop or isinstance(obj, types.ModuleType | type):
            continue
        seen.add(id(obj))
        out.append(obj)
        todo.extend(gc.get_referents(obj))
    return out


def test_records_are_sealed_by_the_card_and_the_host_holds_no_key(tmp_path):
    vault = card_vault(tmp_path / "hubs" / "M1.sqlite")
    path = tmp_path / "hub.sqlite"
    hub = HubStore(path, {"M1": vault})
    _fill(hub)
    key = _card_key(vault)
    # Nothing the hub code can reach holds the key or a cipher keyed with it.
    objs = _reachable(hub, {id(vault.card)})
    assert vault in objs
    for o in objs:
        assert not isinstance(o, AESGCM)
        if isinstance(o, bytes | bytearray | memoryview):
            assert key not in bytes(o)
        if isinstance(o, str):
            assert key.hex() not in o
    assert hub.openings("M1", D1, D2) == (0, OPS + OPS)
    hub.close()
    vault.card.close()
    # No host key file; no file of the data directory holds the key or a reading.
    assert not Path(f"{path}.sk").exists()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert key not in data and key.hex().encode() not in data, f
    raw = _raw(path)
    assert HLK not in raw and b"SECRET-BILL" not in raw
    assert (0xDEADBEEF_CAFEBABE_0000_0000).to_bytes(32, "big")[:24] not in raw
    # Reopened with its card: everything reads back.
    vault = card_vault(tmp_path / "hubs" / "M1.sqlite")
    hub = HubStore(path, {"M1": vault})
    assert hub.meter("M1")[0] == HLK
    assert hub.openings("M1", D1, D2) == (0, OPS + OPS)
    assert hub.statement("M1", D1, D2) == '{"total": "SECRET-BILL"}'
    hub.close()
    vault.card.close()


def test_a_stolen_hub_store_without_its_card_reveals_nothing(tmp_path):
    vault = card_vault(tmp_path / "card.sqlite")
    path = tmp_path / "hub.sqlite"
    hub = HubStore(path, {"M1": vault})
    _fill(hub)
    hub.close()
    vault.card.close()
    stolen = tmp_path / "thief" / "hub.sqlite"
    stolen.parent.mkdir()
    shutil.copy(path, stolen)
    hub = HubStore(stolen)
    with pytest.raises(HubError, match="no card is attached"):
        hub.openings("M1", D1, D1)
    # Another card (the thief's own): refused by key id, before anything is opened.
    hub.attach("M1", card_vault())
    with pytest.raises(HubError, match="sealed by the card with key id"):
        hub.openings("M1", D1, D1)

    class Liar:  # a card that claims the right key id: its key still opens nothing
        def __init__(self, real_id: bytes) -> None:
            self.inner, self.real_id = card_vault(), real_id

        def key_id(self) -> bytes:
            return self.real_id

        def seal(self, identity: bytes, plaintext: bytes) -> bytes:
            return self.inner.seal(identity, plaintext)

        def open(self, identity: bytes, sealed: bytes) -> bytes:
            return self.inner.open(identity, sealed)

    real_id = sqlite3.connect(stolen).execute("SELECT vault_key_id FROM meters").fetchone()[0]
    hub.attach("M1", Liar(real_id))
    for read in (lambda: hub.openings("M1", D1, D1), lambda: hub.meter("M1"), lambda: hub.statement("M1", D1, D2)):
        with pytest.raises(StoreError, match="fails authentication"):
            read()
    hub.close()


def test_altered_or_moved_records_are_refused(tmp_path):
    vault = card_vault(tmp_path / "card.sqlite")
    path = tmp_path / "hub.sqlite"
    hub = HubStore(path, {"M1": vault})
    _fill(hub)
    hub.close()
    conn = sqlite3.connect(path)
    blob = conn.execute("SELECT blob FROM openings WHERE day='2026-01-01'").fetchone()[0]
    conn.execute("UPDATE openings SET blob=? WHERE day='2026-01-02'", (blob,))  # day 1 over day 2
    conn.commit()
    conn.close()
    hub = HubStore(path, {"M1": vault})
    assert hub.openings("M1", D1, D1) == (0, OPS)
    with pytest.raises(StoreError, match="fails authentication"):
        hub.openings("M1", D1, D2)
    hub.close()
    conn = sqlite3.connect(path)
    key = bytearray(conn.execute("SELECT home_link_key FROM meters").fetchone()[0])
    key[-1] ^= 1
    conn.execute("UPDATE meters SET home_link_key=?", (bytes(key),))
    conn.execute("UPDATE openings SET count=5 WHERE day='2026-01-01'")  # the visible range is bound too
    conn.commit()
    conn.close()
    hub = HubStore(path, {"M1": vault})
    with pytest.raises(StoreError, match="fails authentication"):
        hub.meter("M1")
    with pytest.raises(StoreError, match="fails authentication"):
        hub.openings("M1", D1, D1)
    hub.close()
    vault.card.close()


def test_the_vault_never_answers_its_key_and_lives_only_at_its_aid():
    card = Card(None)
    provision_vault(card)
    card.power_on()
    key = card.store.get(card.registry.get(VAULT_AID).aid.raw, b"key")
    answers = []
    card.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(VAULT_AID), le=256).to_bytes())
    for ins_ in range(0x100):
        if ins_ & 0xF0 in (0x60, 0x90):
            continue  # invalid INS (ISO/IEC 7816-3 procedure bytes)
        for data in (b"", b"\x00\x01a", b"\x00\x01a" + bytes(40)):
            r = ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0x80, ins_, 0, 0, data, le=256).to_bytes()))
            answers.append(r.data)
    assert all(key not in a for a in answers)
    with pytest.raises(ISOException):  # no second vault elsewhere (a recipient's SD cannot add one)
        card.registry.install_applet(VAULT_CLASS, "F04D480056540002")
    bare = Card(None)  # a card without the vault: one line, no traceback
    bare.power_on()
    with pytest.raises(HubError, match="has no storage vault"):
        VaultClient(bare.transmit).key_id()


def test_the_applet_on_the_basic_channel_stays_selected_while_the_host_uses_the_vault(tmp_path):
    """The vault works on its own logical channel: the applet the host feeds on the basic
    channel (here the guard) stays selected while records are sealed and opened."""
    from meterhub.card.guard import GUARD_AID
    from meterhub.hub.secure_element import (
        GuardClient,
        demo_dap_key,
        demo_scp03_keys,
        open_hub_card,
    )

    card = open_hub_card(tmp_path / "hub-card.sqlite", issuer_keys=demo_scp03_keys("issuer"),
                         supplier_keys=demo_scp03_keys("supplier"), supplier_dap=demo_dap_key("supplier").public_key())
    assert card.registry.get(VAULT_AID) is not None
    g = GuardClient(card.transmit)
    g.select()
    head = g.head()
    hub = HubStore(tmp_path / "hub.sqlite", {"M1": VaultClient(card.transmit)})
    _fill(hub)
    assert hub.openings("M1", D1, D2) == (0, OPS + OPS)
    assert card.selected(0).raw.hex().upper() == GUARD_AID
    assert g.head() == head  # answered by the guard, no SELECT in between
    hub.close()
    card.close()


# -- schema 2 (host key file) ---------------------------------------------------------------
_V2 = """
CREATE TABLE meters (meter_id TEXT PRIMARY KEY, home_link_key BLOB NOT NULL, tz TEXT NOT NULL,
                     interval_minutes INTEGER NOT NULL);
CREATE TABLE openings (meter_id TEXT NOT NULL, day TEXT NOT NULL, first_index INTEGER NOT NULL,
                       count INTEGER NOT NULL, blob BLOB NOT NULL, PRIMARY KEY (meter_id, day));
CREATE TABLE statements (meter_id TEXT NOT NULL, period_from TEXT NOT NULL, period_to TEXT NOT NULL,
                         statement BLOB NOT NULL, PRIMARY KEY (meter_id, period_from, period_to));
CREATE TABLE dlms_counters (owner TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _v2_store(d: Path) -> Path:
    """A hub.sqlite as schema 2 wrote it: records sealed under the key file hub.sqlite.sk."""
    path = d / "hub.sqlite"
    seal = SealedColumns(storage_key(path), "hub")
    conn = sqlite3.connect(path)
    conn.executescript(_V2)
    for mid in ("M1", "M2"):
        conn.execute("INSERT INTO meters VALUES (?,?,?,?)",
                     (mid, seal.seal("meters", "home_link_key", mid, HLK), "Europe/Berlin", 15))
        blob = b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in OPS)
        conn.execute("INSERT INTO openings VALUES (?,?,?,?,?)",
                     (mid, "2026-01-01", 0, 4, seal.seal("openings", "blob", f"{mid}/2026-01-01/0/4", blob)))
        conn.execute("INSERT INTO statements VALUES (?,?,?,?)",
                     (mid, "2026-01-01", "2026-01-01",
                      seal.seal("statements", "statement", f"{mid}/2026-01-01/2026-01-01", b'{"t": 1}')))
    conn.execute("INSERT INTO dlms_counters VALUES ('hub:M1', 7)")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    return path


def test_a_schema_2_store_is_refused_with_the_migration_command_then_migrates(tmp_path, capsys):
    from meterhub.cli import main

    path = _v2_store(tmp_path)
    with pytest.raises(StoreError, match="meterhub hub migrate-store --data-dir") as e:
        HubStore(path)
    assert "\n" not in str(e.value)
    assert main(["hub", "migrate-store", "--data-dir", str(tmp_path)]) == 0
    assert "records of 2 meters sealed by their hub cards" in capsys.readouterr().out
    assert not Path(f"{path}.sk").exists()
    for mid in ("M1", "M2"):
        card = open_vault_card(tmp_path / "hubs" / f"{mid}.sqlite")
        hub = HubStore(path, {mid: VaultClient(card.transmit)})
        assert hub.meter(mid)[0] == HLK
        assert hub.openings(mid, D1, D1) == (0, OPS)
        assert hub.statement(mid, D1, D1) == '{"t": 1}'
        assert hub.conn.execute("SELECT value FROM dlms_counters").fetchone()[0] == 7
        hub.close()
        card.close()
    assert HLK not in _raw(path)
    assert main(["hub", "migrate-store", "--data-dir", str(tmp_path)]) == 0  # again: nothing to do
    assert "already sealed" in capsys.readouterr().out


@pytest.mark.parametrize("crash_at", ["vault", "replace", "unlink-key"])
def test_a_migration_killed_anywhere_leaves_a_store_that_opens_or_migrates_again(tmp_path, monkeypatch, crash_at):
    path = _v2_store(tmp_path)
    cards = {m: open_vault_card(tmp_path / "hubs" / f"{m}.sqlite") for m in ("M1", "M2")}
    vaults = {m: VaultClient(c.transmit) for m, c in cards.items()}

    class Killed(BaseException):
        pass

    def boom(*a, **k):
        raise Killed

    if crash_at == "vault":
        monkeypatch.setattr(vaults["M2"], "seal", boom)
    elif crash_at == "replace":
        monkeypatch.setattr(os, "replace", boom)
    else:
        real_unlink = Path.unlink

        def unlink(self, *a, **k):
            if self.name.endswith(".sk"):
                raise Killed
            return real_unlink(self, *a, **k)

        monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(Killed):
        migrate_host_key_store(path, vaults.__getitem__)
    monkeypatch.undo()
    if crash_at == "unlink-key":  # renamed already: schema 3, the key file is the leftover
        assert HubStore(path, vaults).openings("M1", D1, D1) == (0, OPS)
        assert not Path(f"{path}.sk").exists()
    else:  # before the rename: the old store as it was, migrated by the next run
        with pytest.raises(StoreError, match="migrate-store"):
            HubStore(path)
        vaults = {m: VaultClient(c.transmit) for m, c in cards.items()}
        assert migrate_host_key_store(path, vaults.__getitem__) == 2
        assert HubStore(path, vaults).openings("M2", D1, D1) == (0, OPS)
    for c in cards.values():
        c.close()


def test_hub_bill_seals_through_the_meters_card_and_refuses_another(tmp_path, capsys):
    """`hub bill` opens the meter's hub card (created with its vault at DATA_DIR/hubs/
    METER.sqlite), leaves no host key, re-bills with it, and refuses another card with one
    line (exit 2)."""
    from meterhub.cli import main

    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "1", "--start", "2027-06-01",
                 "--out", str(tmp_path / "m")]) == 0
    assert main(["tariff", "example", "--out", str(tmp_path / "t.json"), "--key-out", str(tmp_path / "sup.pub")]) == 0
    m, d = tmp_path / "m", tmp_path / "hub"
    bill = ["hub", "bill", "--meter", str(m / "m1.meter.json"), "--tariff", str(tmp_path / "t.json"),
            "--supplier-key", str(tmp_path / "sup.pub"), "--key", str(m / "m1.homelink.key"),
            "--homelink", str(m / "m1.homelink.jsonl"), "--from", "2027-06-01", "--to", "2027-06-01",
            "--data-dir", str(d)]
    assert main([*bill, "--out", str(tmp_path / "a.json")]) == 0
    assert (d / "hubs" / "m1.sqlite").exists() and not (d / "hub.sqlite.sk").exists()
    assert main([*bill, "--out", str(tmp_path / "b.json")]) == 0  # the same card again
    capsys.readouterr()
    assert main([*bill, "--card", str(tmp_path / "other.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sealed by the card with key id" in err, err


def test_records_larger_than_one_apdu_are_sealed_in_bound_parts(tmp_path):
    """A proven (v2) statement is over 150 kB, more than one extended APDU carries: it is
    sealed in parts bound to the record and their position; dropped, reordered or
    spliced parts are refused."""
    vault = card_vault()
    big = bytes(range(256)) * 700  # 179,200 bytes: three parts
    sealed = vault.seal(b"hub\x00statements\x00statement\x00M1/a/b", big)
    assert sealed[:1] == b"\x02" and int.from_bytes(sealed[1:3], "big") == 3
    assert vault.open(b"hub\x00statements\x00statement\x00M1/a/b", sealed) == big
    with pytest.raises(HubError, match="fails authentication"):
        vault.open(b"hub\x00statements\x00statement\x00M2/a/b", sealed)
    parts, pos = [], 3
    while pos < len(sealed):
        size = int.from_bytes(sealed[pos : pos + 4], "big")
        parts.append(sealed[pos : pos + 4 + size])
        pos += 4 + size
    for forged in (b"\x02\x00\x02" + parts[0] + parts[1],  # the last part dropped
                   b"\x02\x00\x03" + parts[1] + parts[0] + parts[2],  # reordered
                   sealed[:-1]):  # truncated
        with pytest.raises(HubError, match="fails authentication"):
            vault.open(b"hub\x00statements\x00statement\x00M1/a/b", forged)
    path = tmp_path / "hub.sqlite"
    hub = HubStore(path, {"M1": vault})
    hub.pair_meter("M1", HLK, "Europe/Berlin", 15)
    hub.save_statement("M1", D1, D2, big.hex())
    assert hub.statement("M1", D1, D2) == big.hex()
    hub.close()
