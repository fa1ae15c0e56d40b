"""The home link over DLMS/COSEM: the hub, a management client with HLS-GMAC and
security suite 0 under keys derived from the meter-hub key, reads each day's openings
object (0.128.96.4.0.255) from the meter's DLMS server core and stores them.

Tampering: wrong key, replayed or reset invocation counters, altered answers, and
answers for the wrong day are all refused, and nothing is stored."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import card_vault
from meterhub.demo.homelink import InProcessHomeLink
from meterhub.hub.homelink import HomeLinkError, HubHomeLink
from meterhub.hub.store import HubStore
from meterhub.links.dlms import (
    HOME_LINK_KDF_INFO,
    home_link_suite0_keys,
    hub_system_title,
    meter_system_title,
)
from meterhub.meter.store import MeterStore
from meterhub.model.formats.sealed import new_home_link_key, open_sealed_openings
from meterhub.model.timebase import intervals_per_day
from meterhub.protocols.dlms.client import DlmsLinkClient, DlmsLinkError
from meterhub.protocols.dlms.cosem import IC_PROFILE_GENERIC, OPENINGS
from meterhub.protocols.dlms.security import decode_general_glo_cipher

TZ = "Europe/Berlin"


class Parties:
    """A provisioned meter (meter.sqlite) and its paired hub (hub.sqlite)."""

    def __init__(self, path, meter_id: str = "m1", hub_key: bytes | None = None) -> None:
        self.path = path
        self.meter_id = meter_id
        self.meters = MeterStore(path / "meter.sqlite")
        self.vault = card_vault(path / "card.sqlite")
        self.hub = HubStore(path / "hub.sqlite", {meter_id: self.vault})
        self.meters.provision(meter_id, TZ, 15, new_home_link_key())
        info = self.meters.info(meter_id)
        self.key = info.home_link_key
        self.hub.pair_meter(meter_id, hub_key or info.home_link_key, TZ, 15)
        self.meter = self.meters.load(meter_id)
        self.days: list = []

    def record(self, day: date, base: int = 1):
        n = intervals_per_day(day, TZ, 15)
        up, se = self.meters.record_day(self.meter, day, [(base + k * 7) % 500 for k in range(n)])
        self.days.append((up, se))
        return up, se

    def reopen(self) -> None:
        """Simulate a restart: close and reopen both databases."""
        self.close()
        self.meters = MeterStore(self.path / "meter.sqlite")
        self.vault = card_vault(self.path / "card.sqlite")
        self.hub = HubStore(self.path / "hub.sqlite", {self.meter_id: self.vault})

    def close(self) -> None:
        self.meters.close()
        self.hub.close()
        self.vault.card.close()


@pytest.fixture
def parties(tmp_path):
    p = Parties(tmp_path)
    yield p
    p.close()


def _hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, to check the documented key schedule."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, t = b"", b""
    for i in range(1, -(-length // 32) + 1):
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
    return okm[:length]


def test_key_schedule_is_the_documented_hkdf():
    key = bytes(range(16))
    keys = home_link_suite0_keys(key)
    okm = _hkdf_sha256(key, b"meterhub/v1/home-link/dlms-suite0", 32)
    assert HOME_LINK_KDF_INFO == b"meterhub/v1/home-link/dlms-suite0"
    assert (keys.encryption_key, keys.authentication_key) == (okm[:16], okm[16:])
    assert key not in (keys.encryption_key, keys.authentication_key)
    with pytest.raises(ValueError):
        home_link_suite0_keys(b"short")
    assert meter_system_title("m1")[:3] == b"MHB" and hub_system_title("m1")[:3] == b"MHH"
    assert len(meter_system_title("m1")) == len(hub_system_title("m1")) == 8
    assert meter_system_title("m1") != meter_system_title("m2")


def test_days_reach_the_hub_through_dlms(parties):
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    start = date(2027, 3, 27)  # 2027-03-28 is the spring DST day: 92 intervals
    for k in range(3):
        up, se = parties.record(start + timedelta(days=k), base=k)
        assert link.deliver(up, se) is True
        assert link.deliver(up, se) is False  # idempotent
    link.close()
    first, got = parties.hub.openings("m1", start, start + timedelta(days=2))
    expected = [o for _, se in parties.days for o in open_sealed_openings(parties.key, se)]
    assert first == 0 and len(got) == 96 + 92 + 96
    assert got == expected
    # Both ends persisted their counters: reserved sending marks and the peer's last IC.
    rows = dict(
        ((owner, role), v)
        for owner, _, role, v in parties.hub.conn.execute("SELECT * FROM dlms_counters")
    )
    assert rows[("hub:m1", "send")] > rows.get(("hub:m1", "recv"), 0) > 0


def test_resume_after_restart_never_reuses_an_invocation_counter(parties):
    seen: list[tuple[bytes, int]] = []

    def recording(link: InProcessHomeLink) -> None:
        server = link.server

        def connect():
            assoc = server.association(1)

            def transport(apdu: bytes) -> bytes:
                answer = assoc.handle(apdu)
                for raw in (apdu, answer):
                    if raw[:1] == b"\xdb":
                        title, _, ic, _ = decode_general_glo_cipher(raw)
                        seen.append((title, ic))
                return answer

            return transport

        link.hub_link._connect = connect

    day = date(2027, 4, 1)
    for run in range(3):
        link = InProcessHomeLink(parties.meters, parties.hub, "m1")
        recording(link)
        up, se = parties.record(day + timedelta(days=run))
        assert link.deliver(up, se)
        if run < 2:
            link.close()
        # run 2 is "killed": no release, no close; run 0 and 1 end normally
        parties.reopen()
    assert len(seen) > 20
    assert len(seen) == len(set(seen)), "an IV (system title, invocation counter) was used twice"
    assert {t for t, _ in seen} == {meter_system_title("m1"), hub_system_title("m1")}


def test_wrong_key_is_refused_and_nothing_is_stored(tmp_path):
    p = Parties(tmp_path, hub_key=new_home_link_key())
    try:
        link = InProcessHomeLink(p.meters, p.hub, "m1")
        up, se = p.record(date(2027, 4, 1))
        with pytest.raises(HomeLinkError, match="association refused"):
            link.deliver(up, se)
        assert p.hub.conn.execute("SELECT COUNT(*) FROM openings").fetchone()[0] == 0
    finally:
        p.close()


def test_replayed_request_is_refused(parties):
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    assoc = link.server.association(1)
    sent: list[bytes] = []

    def transport(apdu: bytes) -> bytes:
        sent.append(apdu)
        return assoc.handle(apdu)

    link.hub_link._connect = lambda: transport
    up, se = parties.record(date(2027, 4, 1))
    assert link.deliver(up, se)
    get = next(a for a in sent if a[0] == 0xDB and len(a) > 60)  # the ciphered GET
    answer = assoc.handle(get)
    # ExceptionResponse: service-not-allowed (1), invocation-counter-error (6), expected IC
    assert answer[:3] == bytes([0xD8, 1, 6])
    assert int.from_bytes(answer[3:7], "big") > decode_general_glo_cipher(get)[2]


def test_hub_with_a_reset_counter_is_refused_even_after_a_meter_restart(parties):
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    up, se = parties.record(date(2027, 4, 1))
    assert link.deliver(up, se)
    link.close()
    # Someone restores an old hub database: its sending counter starts again at 1.
    with parties.hub.conn:
        parties.hub.conn.execute("DELETE FROM dlms_counters WHERE role='send'")
    parties.reopen()  # the meter restarts too: its replay floor comes from meter.sqlite
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    up, se = parties.record(date(2027, 4, 2))
    # AARE rejected-permanent with confirmedServiceError initiateError/deciphering-error.
    with pytest.raises(HomeLinkError, match="association refused .no_reason_given; deciphering-error"):
        link.deliver(up, se)
    client = DlmsLinkClient(
        link.server.association(1).handle,
        keys=home_link_suite0_keys(parties.key),
        system_title=hub_system_title("m1"),
    )
    with pytest.raises(DlmsLinkError, match="refused"):
        client.associate()


def test_altered_or_replayed_answers_are_refused(parties):
    up, se = parties.record(date(2027, 4, 1))
    for mode in ("flip", "replay"):
        link = InProcessHomeLink(parties.meters, parties.hub, "m1")
        assoc = link.server.association(1)
        answers: list[bytes] = []

        def transport(apdu: bytes, mode=mode, assoc=assoc, answers=answers) -> bytes:
            answer = assoc.handle(apdu)
            answers.append(answer)
            if apdu[0] == 0xDB and len(answers) >= 3 and len(answer) > 100:
                if mode == "flip":
                    return answer[:-20] + bytes([answer[-20] ^ 1]) + answer[-19:]
                return answers[1]  # an earlier, authentic answer of this association
            return answer

        link.hub_link._connect = lambda transport=transport: transport
        with pytest.raises(HomeLinkError, match="answer refused"):
            link.deliver(up, se)
        assert not link.hub_link.has_day(date(2027, 4, 1))


def test_answer_for_another_day_is_refused(parties):
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    up, se = parties.record(date(2027, 4, 1))
    link._meter.feed.add_day(up, open_sealed_openings(parties.key, se))
    # The meter has 2027-04-01 only; asking for 04-02 yields no rows.
    with pytest.raises(HomeLinkError, match="0 openings for 96 intervals"):
        link.hub_link.fetch_day(date(2027, 4, 2))
    assert link.hub_link.fetch_day(date(2027, 4, 1))


def test_public_client_cannot_read_openings(parties):
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    up, se = parties.record(date(2027, 4, 1))
    link._meter.feed.add_day(up, open_sealed_openings(parties.key, se))
    client = DlmsLinkClient(link.server.association(16).handle)
    client.associate()
    # Not in the public client's object list (docs/dlms.md): undefined to it.
    with pytest.raises(DlmsLinkError, match="object-undefined"):
        client.get(IC_PROFILE_GENERIC, OPENINGS, 2)
    client.release()


def test_days_must_follow_on(parties, tmp_path):
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    up1, se1 = parties.record(date(2027, 4, 1))
    up2, se2 = parties.record(date(2027, 4, 2))
    assert link.deliver(up1, se1)
    # Corrupt the hub's record of day 1 so that day 2 no longer follows on.
    with parties.hub.conn:
        parties.hub.conn.execute("UPDATE openings SET first_index = 5 WHERE day='2027-04-01'")
    with pytest.raises(HomeLinkError, match="does not follow on"):
        link.deliver(up2, se2)


def test_hub_link_needs_a_paired_meter(parties):
    with pytest.raises(ValueError, match="not paired"):
        HubHomeLink(parties.hub, "nobody", lambda: (lambda apdu: apdu))


def test_counters_table_lives_in_each_party_database(parties):
    link = InProcessHomeLink(parties.meters, parties.hub, "m1")
    up, se = parties.record(date(2027, 4, 1))
    link.deliver(up, se)
    link.close()
    for name, owner in (("meter.sqlite", "meter:m1"), ("hub.sqlite", "hub:m1")):
        con = sqlite3.connect(parties.path / name)
        owners = {r[0] for r in con.execute("SELECT owner FROM dlms_counters")}
        con.close()
        assert owners == {owner}


@pytest.fixture(scope="module")
def fuzz_parties(tmp_path_factory):
    p = Parties(tmp_path_factory.mktemp("fuzz"))
    up, se = p.record(date(2027, 4, 1))
    yield p, up, se
    p.close()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    step=st.integers(0, 12),
    how=st.sampled_from(["flip", "truncate", "extend", "random", "empty"]),
    pos=st.integers(0, 10_000),
    junk=st.binary(min_size=1, max_size=64),
)
def test_garbled_meter_answers_never_crash_the_hub(fuzz_parties, step, how, pos, junk):
    """Any single corrupted answer from the meter ends in HomeLinkError, or (if the
    corruption hit nothing that matters) in exactly the true openings; never anything else."""
    p, up, se = fuzz_parties
    with p.hub.conn:
        p.hub.conn.execute("DELETE FROM openings")
    link = InProcessHomeLink(p.meters, p.hub, "m1")
    assoc = link.server.association(1)
    calls = [0]

    def transport(apdu: bytes) -> bytes:
        answer = assoc.handle(apdu)
        calls[0] += 1
        if calls[0] - 1 != step:
            return answer
        i = pos % len(answer)
        if how == "flip":
            return answer[:i] + bytes([answer[i] ^ 0x5A]) + answer[i + 1 :]
        if how == "truncate":
            return answer[:i]
        if how == "extend":
            return answer + junk
        if how == "random":
            return junk
        return b""

    link.hub_link._connect = lambda: transport
    try:
        link.deliver(up, se)
    except HomeLinkError:
        assert not link.hub_link.has_day(date(2027, 4, 1))
    else:
        _, got = p.hub.openings("m1", date(2027, 4, 1), date(2027, 4, 1))
        assert got == open_sealed_openings(p.key, se)
    finally:
        link.close()
