"""The sampling coin toss: index derivation, the applet's commit/reveal, the utility's checks."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from helpers import SettlementHub as Hub
from helpers import make_history
from meterhub.crypto.sampling import (
    Sample,
    SamplingError,
    check_samples,
    commit_hub_nonce,
    commit_nonce,
    derive_indices,
    derive_seed,
    new_nonce,
)
from meterhub.hub.secure_element import PROFILING_APP_AID
from meterhub.utility.forecasting import SampleRelease, verify_samples
from meterhub.utility.settlement import HubRefused


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def test_one_index_per_block_and_deterministic():
    seed = bytes(range(32))
    idx = derive_indices(seed, 1000, 950, 100)
    assert len(idx) == 10
    for b, i in enumerate(idx):
        assert 1000 + 100 * b <= i < min(1000 + 100 * (b + 1), 1950)
    assert idx == derive_indices(seed, 1000, 950, 100)
    assert idx != derive_indices(bytes(32), 1000, 950, 100)


def test_indices_reach_every_offset():
    # Over many seeds each offset of a block of 10 is drawn: nobody fixed the choice.
    seen = {derive_indices(bytes([s]) * 32, 0, 10, 10)[0] for s in range(200)}
    assert seen == set(range(10))


def test_seed_depends_on_both_nonces_and_commitment():
    c, u, h = bytes(32), b"\x01" * 32, b"\x02" * 32
    s = derive_seed(c, u, h)
    assert s != derive_seed(c, u, b"\x03" * 32) and s != derive_seed(c, b"\x03" * 32, h)
    assert s != derive_seed(b"\x04" * 32, u, h)
    d = date(2027, 3, 27)
    assert commit_nonce("m", d, d, 100, u) != commit_nonce("m2", d, d, 100, u)
    assert commit_nonce("m", d, d, 100, u) != commit_nonce("m", d, d, 99, u)
    with pytest.raises(SamplingError):
        commit_nonce("m", d, d, 100, b"short")


def test_check_samples_rejects_wrong_index_missing_and_extra():
    seed = b"\x07" * 32
    idx = derive_indices(seed, 0, 300, 100)
    good = [Sample(i, 5, 9) for i in idx]
    check_samples(good, seed, 0, 300, 100)
    with pytest.raises(SamplingError, match="coin toss selects"):
        check_samples([Sample(idx[0] + 1 if idx[0] < 99 else idx[0] - 1, 5, 9)] + good[1:], seed, 0, 300, 100)
    with pytest.raises(SamplingError, match="2 samples, the coin toss selects 3"):
        check_samples(good[:2], seed, 0, 300, 100)
    with pytest.raises(SamplingError):
        check_samples(good + [Sample(idx[-1], 5, 9)], seed, 0, 300, 100)


@pytest.fixture(scope="module")
def tossed(tmp_path_factory):
    h = make_history(n_days=3, seed=71)
    hub = Hub(tmp_path_factory.mktemp("hub") / "hub.sqlite", h)
    first, last = h.start, hub.last
    nonce = new_nonce()
    c = commit_nonce("m-test", first, last, 100, nonce)
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    hub_nonce = mb.send(b"\x10" + _day(first) + _day(last) + (100).to_bytes(2, "big") + c, "commit")
    # The same commitment again (a lost answer, a resumed run) gets the same nonce...
    assert mb.send(b"\x10" + _day(first) + _day(last) + (100).to_bytes(2, "big") + c, "commit") == hub_nonce
    # ...but only one commitment per period: another one is refused.
    c2 = commit_nonce("m-test", first, last, 100, new_nonce())
    with pytest.raises(HubRefused, match="not allowed now"):
        mb.send(b"\x10" + _day(first) + _day(last) + (100).to_bytes(2, "big") + c2, "commit")
    with pytest.raises(HubRefused, match="not allowed now"):  # nor the same one with another k
        mb.send(b"\x10" + _day(first) + _day(last) + (101).to_bytes(2, "big") + c, "commit")
    with pytest.raises(HubRefused, match="SW 6A80"):  # and k below the customer's floor, never
        mb.send(b"\x10" + _day(first) + _day(last) + (99).to_bytes(2, "big") + c, "commit")
    hub.feed()
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    with pytest.raises(HubRefused, match="signature") as e:  # a nonce that does not open c
        mb.request(b"\x11" + _day(first) + _day(last) + new_nonce(), "reveal")
    assert e.value.sw == 0x6982
    raw = mb.request(b"\x11" + _day(first) + _day(last) + nonce, "reveal")
    return h, hub, dict(commitment=c, utility_nonce=nonce, hub_commitment=hub_nonce, k=100), SampleRelease.from_json(raw)


def test_release_verifies_and_matches_readings(tossed):
    h, _, coin, rel = tossed
    assert verify_samples(rel, h.registration, h.day_commitments(), **coin).ok
    flat = [m for d in h.readings for m in d]
    assert len(rel.samples) == 3
    assert all(flat[s.index] == s.m for s in rel.samples)


def test_commit_after_the_period_began_is_refused(tossed):
    h, hub, _, _ = tossed
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    c = commit_nonce("m-test", h.start, hub.last, 100, new_nonce())
    with pytest.raises(HubRefused) as e:
        mb.send(b"\x10" + _day(h.start) + _day(hub.last) + (100).to_bytes(2, "big") + c, "commit")
    assert e.value.sw == 0x6985
    # The next period of the customer's 3-day cycle has not begun: fine.
    later, end = h.start + timedelta(days=3), h.start + timedelta(days=5)
    mb.send(b"\x10" + _day(later) + _day(end) + (100).to_bytes(2, "big") + c, "commit")


@pytest.mark.parametrize("what", ["index", "value", "blinding", "drop", "hub_nonce", "k", "commitment"])
def test_tampered_samples_are_rejected(tossed, what):
    h, _, coin, rel = tossed
    s0 = rel.samples[0]
    coin = dict(coin)
    if what == "index":
        other = s0.index + 1 if s0.index + 1 < rel.first_index + 100 else s0.index - 1
        rel = dataclasses.replace(rel, samples=(dataclasses.replace(s0, index=other),) + rel.samples[1:])
    elif what == "value":
        rel = dataclasses.replace(rel, samples=(dataclasses.replace(s0, m=s0.m + 1),) + rel.samples[1:])
    elif what == "blinding":
        rel = dataclasses.replace(rel, samples=(dataclasses.replace(s0, r=s0.r ^ 1),) + rel.samples[1:])
    elif what == "drop":
        rel = dataclasses.replace(rel, samples=rel.samples[1:])
    elif what == "hub_nonce":
        rel = dataclasses.replace(rel, hub_nonce=bytes(32))
        coin["hub_commitment"] = commit_hub_nonce(bytes(32))  # even when the utility holds its commitment
    elif what == "k":
        coin["k"] = 50
    else:
        coin["commitment"] = bytes(32)
    assert not verify_samples(rel, h.registration, h.day_commitments(), **coin).ok
