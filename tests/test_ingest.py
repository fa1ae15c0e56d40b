"""Ingest refuses every day the meter did not sign, or that does not follow on.

These are the checks a mutation run found unguarded (docs/verification.md,
"Mutation check"): each test fails if ingest skips the check it names.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.meter.device import SignedBatch, chain_head
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.store import UtilityStore
from meterhub.utility.verifier import Rejected, check_delivery


@pytest.fixture()
def store(tmp_path):
    h = make_history(n_days=3, seed=44)
    u = UtilityStore(tmp_path / "u.sqlite")
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    u.register_meter("m-test", ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
    yield h, u
    u.close()


def _signed(h, batch):
    return SignedBatch(batch, ecdsa.sign(h.meter.signing_key, batch.signed_message()))


def _stored_days(u) -> int:
    return u.conn.execute("SELECT count(*) FROM days").fetchone()[0]


def test_ingest_checks_the_batch_signature(store):
    h, u = store
    up = h.uploads()[0]
    other = ecdsa.sign(ecdsa.generate_signing_key(), up.batch.batch.signed_message())
    res = u.ingest_day(DayUpload(SignedBatch(up.batch.batch, other), up.records))
    assert not res.accepted and "signature does not verify" in res.reason
    assert _stored_days(u) == 0


def test_ingest_checks_the_record_indices(store):
    h, u = store
    up = h.uploads()[0]
    c = h.days[0].commitments
    recs = bytearray(up.records)
    recs[41 * 5 : 41 * 5 + 8] = (7).to_bytes(8, "big")  # index 5 relabelled 7: chain still intact
    assert encode_records(0, c) == up.records
    res = u.ingest_day(DayUpload(up.batch, bytes(recs)))
    assert not res.accepted and res.reason == "day 2027-03-27: interval 5 missing"
    assert _stored_days(u) == 0


def test_ingest_checks_the_chain_head(store):
    h, u = store
    up = h.uploads()[0]
    c = bytearray(h.days[0].commitments)
    c[33 * 2 : 33 * 3], c[33 * 3 : 33 * 4] = c[33 * 3 : 33 * 4], c[33 * 2 : 33 * 3]
    res = u.ingest_day(DayUpload(up.batch, encode_records(0, bytes(c))))
    assert not res.accepted and "chain head" in res.reason


def test_ingest_checks_the_link_to_the_previous_stored_day(store):
    h, u = store
    assert u.ingest_day(h.uploads()[0]).accepted
    b, c = h.days[1].batch.batch, h.days[1].commitments
    # Signed by the meter, complete and self-consistent, but from another branch.
    prev = hashlib.sha256(b"fork").digest()
    forked = dataclasses.replace(b, prev_head=prev, head=chain_head(prev, b.first_index, c))
    res = u.ingest_day(DayUpload(_signed(h, forked), encode_records(b.first_index, c)))
    assert not res.accepted and "does not follow on from day 2027-03-27" in res.reason
    # Or starting at another index.
    shifted = dataclasses.replace(b, first_index=b.first_index + 4, head=chain_head(b.prev_head, b.first_index + 4, c))
    res = u.ingest_day(DayUpload(_signed(h, shifted), encode_records(b.first_index + 4, c)))
    assert not res.accepted and "does not follow on" in res.reason
    assert _stored_days(u) == 1


def test_ingest_checks_the_link_to_the_next_stored_day(store):
    h, u = store
    assert u.ingest_day(h.uploads()[1]).accepted  # uploads may start at any day (V10)
    b, c = h.days[0].batch.batch, h.days[0].commitments
    prev = b.prev_head
    other = bytearray(c)
    other[0:33] = c[33:66]
    fake = dataclasses.replace(b, head=chain_head(prev, b.first_index, bytes(other)))
    res = u.ingest_day(DayUpload(_signed(h, fake), encode_records(0, bytes(other))))
    assert not res.accepted and "does not follow on from it" in res.reason
    res = u.ingest_day(h.uploads()[2])
    assert res.accepted
    assert u.ingest_day(h.uploads()[0]).accepted


def test_ingest_checks_the_day_count_and_interval(store):
    h, u = store
    b, c = h.days[0].batch.batch, h.days[0].commitments
    short = dataclasses.replace(b, count=b.count - 1, head=chain_head(b.prev_head, 0, c[:-33]))
    res = u.ingest_day(DayUpload(_signed(h, short), encode_records(0, c[:-33])))
    assert not res.accepted and "the local day has" in res.reason
    coarse = dataclasses.replace(b, interval_minutes=30)
    res = u.ingest_day(DayUpload(_signed(h, coarse), encode_records(0, c)))
    assert not res.accepted and "30-minute intervals" in res.reason


_H4 = make_history(n_days=4, seed=45)


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=7))
@settings(max_examples=150, deadline=None)
def test_delivery_accepts_exactly_contiguous_runs(order):
    """check_delivery (V08): lines are accepted iff, verbatim repeats dropped, they are
    consecutive days in file order; any deletion inside or reordering is refused."""
    ups = _H4.uploads()
    lines = [(n, ups[k]) for n, k in enumerate(order, 1)]
    distinct = list(dict.fromkeys(order))
    contiguous = distinct == list(range(distinct[0], distinct[0] + len(distinct)))
    try:
        kept = check_delivery(lines, "m-test")
    except Rejected as exc:
        assert not contiguous, exc
        assert str(exc).startswith("line ")
    else:
        assert contiguous
        assert [up for _, up in kept] == [ups[k] for k in distinct]
