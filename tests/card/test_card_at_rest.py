"""The card's persistent store is sealed at rest (AES-256-GCM under the storage key)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from helpers import make_history
from meterhub.card import Card, PersistentStore, StorageIntegrityError
from meterhub.hub.secure_element import SETTLEMENT_APP_AID

MARK = b"SECRET-READING-0123456789"


def _raw(path) -> bytes:
    out = b""
    for p in (Path(path), Path(str(path) + "-wal")):
        if p.exists():
            out += p.read_bytes()
    return out


def test_values_are_sealed_and_the_key_file_is_owner_only(tmp_path):
    path = tmp_path / "s.db"
    store = PersistentStore(path)
    assert store.sealed
    store.put(b"ns", b"k", MARK)
    assert MARK not in _raw(path)
    assert os.stat(str(path) + ".sk").st_mode & 0o777 == 0o600
    store.close()
    assert PersistentStore(path).get(b"ns", b"k") == MARK


def test_altered_or_moved_values_are_refused(tmp_path):
    path = tmp_path / "s.db"
    store = PersistentStore(path)
    store.put(b"ns", b"a", b"alpha")
    store.put(b"ns", b"b", b"beta")
    store.close()
    con = sqlite3.connect(path)
    va, vb = (con.execute("SELECT v FROM kv WHERE k=?", (k,)).fetchone()[0] for k in (b"a", b"b"))
    con.execute("UPDATE kv SET v=? WHERE k=?", (vb, b"a"))  # moved to another slot
    flipped = bytearray(va)
    flipped[-1] ^= 1
    con.execute("UPDATE kv SET v=? WHERE k=?", (bytes(flipped), b"b"))  # altered
    con.commit()
    con.close()
    store = PersistentStore(path)
    for k in (b"a", b"b"):
        with pytest.raises(StorageIntegrityError):
            store.get(b"ns", k)


def test_a_store_from_before_sealing_still_opens(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE kv (ns BLOB NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, PRIMARY KEY (ns, k)) WITHOUT ROWID")
    con.execute("INSERT INTO kv VALUES (?, ?, ?)", (b"ns", b"k", b"plain"))
    con.commit()
    con.close()
    store = PersistentStore(path)
    assert not store.sealed and store.get(b"ns", b"k") == b"plain"


def test_a_hub_card_holds_no_opening_in_clear(tmp_path, settlement_hub):
    h = make_history(n_days=1, seed=99)
    hub = settlement_hub(h)
    hub.feed()
    raw = _raw(tmp_path / "hub.sqlite")
    rs = [o.r.to_bytes(32, "big") for o in h.openings[:20]]
    assert not any(r in raw for r in rs)
    hub.card.close()
    # A day record altered at rest no longer opens (an applet reading it answers 6F00).
    con = sqlite3.connect(tmp_path / "hub.sqlite")
    rows = con.execute("SELECT ns, k, v FROM kv WHERE ns=?", (bytes.fromhex(SETTLEMENT_APP_AID),)).fetchall()
    ns, k, v = next(r for r in rows if bytes(r[1]).startswith(b"d"))
    con.execute("UPDATE kv SET v=? WHERE ns=? AND k=?", (bytes(v[:-1]) + bytes([v[-1] ^ 1]), ns, k))
    con.commit()
    con.close()
    card = Card(tmp_path / "hub.sqlite")
    assert card.store.sealed
    with pytest.raises(StorageIntegrityError):
        card.store.get(bytes(ns), bytes(k))
