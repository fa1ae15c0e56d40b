"""Batched ingest (issue 15): one set of neighbour queries per meter and one INSERT per
delivery, the signed 33-byte form stored, the 65-byte form made on a day's first read
(docs/service.md, "Storage"); on SQLite and PostgreSQL (fixture ``utility_db``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.crypto.group import uncompress_many
from meterhub.meter.device import SignedBatch, chain_head
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.store import UtilityStore


def _registered(db: str, h) -> UtilityStore:
    u = UtilityStore(db if db.startswith("postgresql://") else Path(db))
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    u.register_meter(h.meter.meter_id, ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
    return u


def _c65_lengths(u: UtilityStore) -> list[int]:
    return [r[0] for r in u.conn.execute("SELECT length(c65) FROM days ORDER BY day")]


def test_first_read_expands_each_day_once(utility_db, history):
    u = _registered(utility_db, history)
    try:
        assert all(r.accepted for r in u.ingest_days(history.uploads()))
        assert _c65_lengths(u) == [0, 0, 0]  # ingest stores the signed 33-byte form only
        dcs = u.day_commitments(history.meter.meter_id, history.start, history.statement.period_to)
        assert [dc.c65 for dc in dcs] == [uncompress_many(dc.c33) for dc in dcs]
        assert _c65_lengths(u) == [65 * len(d.commitments) // 33 for d in history.days]  # written back
        again = u.day_commitments(history.meter.meter_id, history.start, history.statement.period_to)
        assert again == dcs
        assert u.verify_statement(history.statement).ok
    finally:
        u.close()


def _not_a_point() -> bytes:
    """A 33-byte encoding with a valid prefix whose x is not on secp256k1 (x^3 + 7 is
    not a square mod p): libsecp256k1 refuses to parse it."""
    from coincurve import PublicKey

    for x in range(1, 100):
        enc = b"\x02" + x.to_bytes(32, "big")
        try:
            PublicKey(enc)
        except ValueError:
            return enc
    raise AssertionError("no x below 100 off the curve")


def test_a_commitment_that_does_not_decode_fails_verification(utility_db, history):
    """V09 step 9 moved to the first read: the meter signed a day whose 6th commitment is
    not a point. Ingest stores it (it is what the meter signed, and it chains); the first
    read leaves it unexpanded and the bill over it is rejected, naming the point."""
    last = history.days[-1]
    c = bytearray(last.commitments)
    c[33 * 5 : 33 * 6] = _not_a_point()
    b = history.uploads()[-1].batch.batch
    bad = dataclasses.replace(b, head=chain_head(b.prev_head, b.first_index, bytes(c)))
    sig = ecdsa.sign(history.meter.signing_key, bad.signed_message())
    ups = [*history.uploads()[:-1], DayUpload(SignedBatch(bad, sig), encode_records(b.first_index, bytes(c)))]
    u = _registered(utility_db, history)
    try:
        assert all(r.accepted for r in u.ingest_days(ups))
        dcs = u.day_commitments(history.meter.meter_id, history.start, history.statement.period_to)
        assert dcs[-1].c65 is None and all(dc.c65 for dc in dcs[:-1])
        assert _c65_lengths(u)[-1] == 0  # nothing written back for it
        v = u.verify_statement(history.statement)
        assert not v.ok and "point 193: not on secp256k1" in v.reason, v.reason  # 92 + 96 + 5
    finally:
        u.close()


def test_repeats_and_conflicts_within_one_delivery(utility_db, history):
    u = _registered(utility_db, history)
    try:
        ups = history.uploads()
        flipped = bytearray(ups[1].records)
        flipped[-1] ^= 1
        res = u.ingest_days([ups[0], ups[0], ups[1], DayUpload(ups[1].batch, bytes(flipped)), ups[2]])
        assert [(r.accepted, r.duplicate, r.conflict) for r in res] == [
            (True, False, False), (True, True, False), (True, False, False), (False, False, True),
            (True, False, False),
        ]
        assert "records differ" in res[3].reason
        assert u.conn.execute("SELECT count(*) FROM days").fetchone()[0] == 3
        assert u.conn.execute("SELECT count(*) FROM rejected_uploads").fetchone()[0] == 1
    finally:
        u.close()


def test_days_of_several_meters_in_one_delivery(utility_db):
    a, b = make_history(seed=3, meter_id="m-a"), make_history(seed=4, meter_id="m-b")
    u = _registered(utility_db, a)
    try:
        u.register_meter("m-b", ecdsa.public_bytes(b.meter.signing_key), "Europe/Berlin", 15)
        ua, ub = a.uploads(), b.uploads()
        # interleaved and out of order; b's day 2 alone first, then the rest of each meter
        res = u.ingest_days([ub[2], ua[1], ub[0], ua[0], ub[1], ua[2]])
        assert all(r.accepted and not r.duplicate for r in res)
        # a day of meter a signed by meter b's key never enters
        foreign = DayUpload(SignedBatch(ua[0].batch.batch, ub[0].batch.signature), ua[0].records)
        assert u.ingest_days([foreign])[0].conflict
    finally:
        u.close()


class _DiskFailsAfterTheDays:
    """A connection whose second write of a delivery fails (the rejections' INSERT),
    after the days' INSERT went through: the fault lands mid-write, before the commit."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def executemany(self, sql, rows):
        self._conn.executemany(sql, rows)
        if "rejected_uploads" in sql:
            raise OSError("disk I/O error (injected)")


def test_a_fault_while_writing_a_delivery_leaves_nothing(utility_db, history):
    u = _registered(utility_db, history)
    try:
        ups = history.uploads()
        forged = DayUpload(SignedBatch(ups[2].batch.batch, ups[0].batch.signature), ups[2].records)
        real = u.conn
        u.conn = _DiskFailsAfterTheDays(real)
        with pytest.raises(OSError, match="injected"):
            u.ingest_days([ups[0], ups[1], forged])
        u.conn = real
        assert u.conn.execute("SELECT count(*) FROM days").fetchone()[0] == 0
        assert u.conn.execute("SELECT count(*) FROM rejected_uploads").fetchone()[0] == 0
        res = u.ingest_days([ups[0], ups[1], forged])  # re-delivered whole: stored once
        assert [r.accepted for r in res] == [True, True, False]
        assert u.conn.execute("SELECT count(*) FROM days").fetchone()[0] == 2
    finally:
        u.close()
