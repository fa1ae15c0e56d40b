"""The DR applet and the utility's verification (issue 14)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import History, make_history
from meterhub.crypto import ecdsa
from meterhub.demo.hubs import demo_tsm, open_demo_hub, provision_demo_hub
from meterhub.dr.event import (
    SIGNAL_PRICE,
    DREvent,
    EventError,
    event_windows,
    sign_event,
    similar_days,
)
from meterhub.dr.release import DRRelease
from meterhub.hub.dr_host import DR_APP_AID, DRClient, EventRefused, dr_load_file
from meterhub.hub.secure_element import (
    RECIPIENT_SDS,
    demo_vtn_key,
)
from meterhub.model.timebase import local_midnight_utc
from meterhub.utility.demand_response import verify_release
from meterhub.utility.settlement import AppletMailbox, HubRefused, expected_code_hash
from meterhub.utility.verifier import Rejected

GRID = RECIPIENT_SDS["grid-operator"]
CODE_HASH = bytes.fromhex(expected_code_hash("meterhub.applets.demand_response/1"))
VTN_KEY = demo_vtn_key()  # pinned by the customer at provisioning (demo_pinned)
START = date(2027, 4, 5)  # a Monday, after the spring clock change
N_DAYS = 16


def make_event(h: History, *, key=VTN_KEY, event_id: str = "ev-1", modification: int = 0, **kw) -> DREvent:
    day = START + timedelta(days=N_DAYS - 1)
    start = local_midnight_utc(day, "Europe/Berlin") + timedelta(hours=17)
    days = similar_days(day, set(), set(), "Europe/Berlin", have_from=START)
    ev = DREvent(event_id, modification, "demo-program", datetime(2027, 4, 19, 8, tzinfo=UTC), start, 120,
                 SIGNAL_PRICE, 50000, 50000, ("*",), tuple(days))
    return sign_event(dataclasses.replace(ev, **kw), key)


class Hub:
    def __init__(self, path, h: History, policy=None) -> None:
        self.h = h
        self.card = provision_demo_hub(path, ("dr",), policy=policy)  # the VTN key: VTN_KEY
        self.client = DRClient(self.card.transmit)
        self.client.select()
        self.client.pair(h.registration.meter_id, "Europe/Berlin", 15)

    def feed(self, days=None) -> None:
        self.client.select()
        for d in self.h.days if days is None else days:
            self.client.put_openings(d.batch.batch.day, d.first_index, d.openings)

    def release(self, event_id: str) -> DRRelease:
        t = demo_tsm(self.card, "grid-operator")
        t.open()
        try:
            return DRRelease.from_bytes(AppletMailbox(t, DR_APP_AID).request(b"\x02" + event_id.encode(), "release"))
        finally:
            t.close()


def commitments(h: History):
    return {dc.batch.batch.day: dc for dc in h.day_commitments()}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    h = make_history(start=START, n_days=N_DAYS, seed=14)
    hub = Hub(tmp_path_factory.mktemp("dr") / "hub.sqlite", h)
    ev = make_event(h)
    hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    return h, hub, ev, hub.release(ev.event_id)


def true_reduction(h: History, ev: DREvent) -> Fraction:
    day, e, w = event_windows(ev, "Europe/Berlin", 15)
    idx = {d.batch.batch.day: k for k, d in enumerate(h.days)}
    n = len(ev.baseline_days)
    x = sum(h.readings[idx[d]][j] for d in ev.baseline_days for j in w)
    a_ = sum(h.readings[idx[day]][j] for j in w)
    ratio = Fraction(1200, 1000) if 1000 * n * a_ >= 1200 * x else max(
        Fraction(800, 1000), min(Fraction(1200, 1000), Fraction((1000 * n * a_) // x, 1000)))
    base = ratio * Fraction(sum(h.readings[idx[d]][j] for d in ev.baseline_days for j in e), n)
    return base - sum(h.readings[idx[day]][j] for j in e)


def test_release_verifies_and_equals_the_baseline_from_raw_readings(released):
    h, hub, ev, rel = released
    v = verify_release(rel, ev, h.registration, commitments(h), code_hash=CODE_HASH, app_aid=DR_APP_AID)
    assert v.reduction == true_reduction(h, ev)
    assert len(ev.baseline_days) == 10 and all(d.weekday() < 5 for d in ev.baseline_days)
    assert v.payment == int(max(v.reduction, 0) * ev.price)


def test_second_request_returns_the_identical_release(released):
    h, hub, ev, rel = released
    assert hub.release(ev.event_id) == rel


@pytest.mark.parametrize("change", [
    {"scaled_reduction": 1}, {"blinding": 5}, {"adjustment": 1000}, {"event_id": "ev-2"}, {"meter_id": "other"},
])
def test_tampered_release_is_rejected(released, change):
    h, hub, ev, rel = released
    bad = dataclasses.replace(rel, **change)
    if "scaled_reduction" in change:
        bad = dataclasses.replace(rel, scaled_reduction=rel.scaled_reduction + 1)
    with pytest.raises(Rejected):
        verify_release(bad, ev, h.registration, commitments(h), code_hash=CODE_HASH, app_aid=DR_APP_AID)


def test_release_against_altered_commitments_is_rejected(released):
    h, hub, ev, rel = released
    cs = commitments(h)
    day = ev.baseline_days[0]
    dc = cs[day]
    cs[day] = dataclasses.replace(dc, c33=dc.c33[33:66] + dc.c33[:33] + dc.c33[66:])
    with pytest.raises(Rejected, match="chain head"):
        verify_release(rel, ev, h.registration, cs, code_hash=CODE_HASH, app_aid=DR_APP_AID)


def test_forged_expired_replayed_events_are_refused(tmp_path):
    h = make_history(start=START, n_days=N_DAYS, seed=15)
    hub = Hub(tmp_path / "hub.sqlite", h)
    forged = make_event(h, key=ecdsa.generate_signing_key())
    with pytest.raises(EventRefused, match="6982"):
        hub.client.put_event("ev-1", forged.to_bytes(), True)
    ev = make_event(h, modification=3)
    altered = dataclasses.replace(ev, price=ev.price * 10)  # signature no longer covers it
    with pytest.raises(EventRefused, match="6982"):
        hub.client.put_event("ev-1", altered.to_bytes(), True)
    hub.client.put_event("ev-1", ev.to_bytes(), True)
    hub.client.put_event("ev-1", ev.to_bytes(), False)  # the customer changes their mind
    older = make_event(h, modification=2, price=1)
    with pytest.raises(EventRefused, match="6985"):
        hub.client.put_event("ev-1", older.to_bytes(), True)
    hub.feed()
    late = make_event(h, event_id="ev-late")
    with pytest.raises(EventRefused, match="6984"):
        hub.client.put_event("ev-late", late.to_bytes(), True)
    # opted out: nothing is released
    t = demo_tsm(hub.card, "grid-operator")
    t.open()
    with pytest.raises(HubRefused, match="6985"):
        AppletMailbox(t, DR_APP_AID).request(b"\x02ev-1", "release")
    t.close()


def test_release_only_through_the_operators_domain(released):
    h, hub, ev, rel = released
    hub.client.select()
    from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x80, 0xE2, 0x80, 0, b"\x02ev-1").to_bytes()))
    assert r.sw != 0x9000


@given(st.binary(max_size=300))
def test_event_parser_only_raises_event_error(data):
    try:
        DREvent.from_bytes(data)
    except EventError:
        pass


@given(st.binary(max_size=400))
def test_release_parser_only_raises_event_error(data):
    try:
        DRRelease.from_bytes(data)
    except EventError:
        pass


def test_event_and_release_round_trip(released):
    h, hub, ev, rel = released
    assert DREvent.from_bytes(ev.to_bytes()) == ev
    assert DRRelease.from_bytes(rel.to_bytes()) == rel
    with pytest.raises(EventError):
        DREvent.from_bytes(ev.to_bytes()[:-80])


def test_power_loss_during_the_release_never_yields_two_releases(tmp_path):
    from meterhub.card import PowerLoss

    h = make_history(start=START, n_days=N_DAYS, seed=16)
    path = tmp_path / "hub.sqlite"
    hub = Hub(path, h)
    ev = make_event(h)
    hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed(h.days[:-1])
    hub.card.close()

    def reopen() -> Hub:
        r = Hub.__new__(Hub)
        r.h = h
        r.card = open_demo_hub(path)
        r.client = DRClient(r.card.transmit)
        return r

    class Tear:
        def __init__(self, at: int) -> None:
            self.at, self.calls = at, 0

        def __call__(self, what: str, n: int) -> None:
            self.calls += 1
            if self.calls == self.at:
                raise PowerLoss(what)

    # the event day's readings arrive with a tear at each write point
    at = 1
    while True:
        hub = reopen()
        hub.client.select()
        hub.card.store.fault_hook = Tear(at)
        try:
            hub.feed(h.days[-1:])
        except PowerLoss:
            at += 1
            continue
        hub.card.store.fault_hook = None
        hub.card.close()
        break
    assert at > 1
    seen = set()
    at = 1
    while True:
        hub = reopen()
        hub.card.store.fault_hook = Tear(at)
        try:
            seen.add(hub.release(ev.event_id).to_bytes())
            hub.card.close()
            break
        except PowerLoss:
            hub = reopen()
            seen.add(hub.release(ev.event_id).to_bytes())  # after the restart
            hub.card.close()
            at += 1
    assert at > 3
    # Before the release is stored a retry computes a fresh one (new proof randomness over
    # the same sums); once stored, every retry returns those bytes: all verify, same figure.
    rels = [DRRelease.from_bytes(r) for r in seen]
    figures = {(r.scaled_reduction, r.blinding, r.adjustment) for r in rels}
    assert len(figures) == 1
    for r in rels:
        verify_release(r, ev, h.registration, commitments(h), code_hash=CODE_HASH, app_aid=DR_APP_AID)


def test_same_event_signed_again_is_accepted_unchanged_after_the_release(released):
    h, hub, ev, rel = released
    again = sign_event(dataclasses.replace(ev, signature=b""), VTN_KEY)
    assert again.signature != ev.signature  # ECDSA signatures are randomised
    hub.client.select()
    hub.client.put_event(ev.event_id, again.to_bytes(), True)  # a host restart re-delivers it
    with pytest.raises(EventRefused, match="6985"):
        hub.client.put_event(ev.event_id, again.to_bytes(), False)  # no opt-out after the release
    assert hub.release(ev.event_id) == rel


def test_event_batch_verification_names_the_bad_release(released, tmp_path):
    from meterhub.utility.demand_response import verify_event

    h, hub, ev, rel = released
    cs = commitments(h)
    bad_proof = dataclasses.replace(rel, proof=rel.proof[:-1] + bytes([rel.proof[-1] ^ 1]))
    bad_sum = dataclasses.replace(rel, scaled_reduction=rel.scaled_reduction - 1)
    out = verify_event([(rel, h.registration, cs), (bad_proof, h.registration, cs), (bad_sum, h.registration, cs),
                        (rel, h.registration, cs)], ev, code_hash=CODE_HASH, app_aid=DR_APP_AID)
    assert [type(x).__name__ for x in out] == ["VerifiedReduction", "Rejected", "Rejected", "VerifiedReduction"]
    assert "range proof" in str(out[1]) and "does not open" in str(out[2])


def test_opt_change_with_a_re_signed_record_and_a_newer_modification(tmp_path):
    h = make_history(start=START, n_days=N_DAYS, seed=17)
    hub = Hub(tmp_path / "hub.sqlite", h)
    ev = make_event(h, modification=1)
    hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    again = sign_event(dataclasses.replace(ev, signature=b""), VTN_KEY)
    hub.client.put_event(ev.event_id, again.to_bytes(), False)  # same event, the customer opts out
    newer = make_event(h, modification=2, duration_minutes=60)
    hub.client.put_event(ev.event_id, newer.to_bytes(), True)  # the VTN modified the event
    with pytest.raises(EventRefused, match="6985"):
        hub.client.put_event(ev.event_id, ev.to_bytes(), True)  # the older modification replayed
    hub.feed()
    assert hub.release(ev.event_id).event_digest == newer.digest()


# -- the privacy guard (docs/privacy.md, "Demand response") --------------------------


def test_install_parameters_may_only_repeat_the_pinned_vtn_key(tmp_path):
    from meterhub.utility.tsm import TSMError

    card = open_demo_hub(tmp_path / "hub.sqlite")
    with demo_tsm(card, "grid-operator") as t, pytest.raises(TSMError, match="6982"):
        t.deploy(dr_load_file(), DR_APP_AID, params=ecdsa.public_bytes(ecdsa.generate_signing_key()))
    assert card.registry.get(DR_APP_AID) is None


def _guard_entries(hub: Hub):
    from meterhub.hub.secure_element import GuardClient
    from meterhub.policy import DEFAULT_POLICY, verify_release_log

    g = GuardClient(hub.card.transmit)
    g.select()
    count, head = g.head()
    entries = verify_release_log(g.raw_entries(), head, policies={1: DEFAULT_POLICY})
    hub.client.select()
    return entries


def test_release_is_logged_by_the_guard_once_with_one_functional(released):
    h, hub, ev, rel = released
    before = _guard_entries(hub)
    assert hub.release(ev.event_id) == rel  # a re-ask: same bytes, no new entry
    entries = _guard_entries(hub)
    assert entries == before
    dr = [e for e in entries if e.kind == "dr"]
    assert len(dr) == 1 and dr[0].recipient == "grid-operator" and dr[0].functionals == 1
    assert dr[0].period_from == dr[0].period_to == ev.start.date().isoformat()
    import hashlib

    assert dr[0].output_digest == hashlib.sha256(rel.to_bytes()).hexdigest()


def _event_on(h: History, day: date, event_id: str, hour: int = 17) -> DREvent:
    start = local_midnight_utc(day, "Europe/Berlin") + timedelta(hours=hour)
    days = tuple(similar_days(day, set(), set(), "Europe/Berlin", have_from=START))
    return make_event(h, event_id=event_id, start=start, baseline_days=days)


def test_a_second_event_of_the_same_day_is_refused(tmp_path):
    h = make_history(start=START, n_days=N_DAYS, seed=16)
    hub = Hub(tmp_path / "hub.sqlite", h)
    day = START + timedelta(days=N_DAYS - 1)
    first, second = _event_on(h, day, "ev-a"), _event_on(h, day, "ev-b", hour=15)
    hub.client.put_event(first.event_id, first.to_bytes(), True)
    hub.client.put_event(second.event_id, second.to_bytes(), True)
    hub.feed()
    hub.release("ev-a")
    with pytest.raises(HubRefused) as exc:  # two windows of one day would difference out
        hub.release("ev-b")
    assert exc.value.sw == 0x6985
    assert [e.kind for e in _guard_entries(hub)].count("dr") == 1


def test_the_policy_caps_events_per_period(tmp_path):
    from meterhub.policy import default_policy

    h = make_history(start=START, n_days=N_DAYS, seed=17)
    hub = Hub(tmp_path / "hub.sqlite", h, policy=default_policy(dr={"events_per_period": 1}))
    a, b = _event_on(h, START + timedelta(days=N_DAYS - 2), "ev-a"), _event_on(h, START + timedelta(days=N_DAYS - 1), "ev-b")
    for ev in (a, b):
        hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    hub.release("ev-a")
    with pytest.raises(HubRefused) as exc:
        hub.release("ev-b")
    assert exc.value.sw == 0x6985


def test_policy_events_cap_has_a_hard_limit():
    from meterhub.policy import PolicyError, default_policy

    assert default_policy().limit("dr", "events_per_period") == 6
    with pytest.raises(PolicyError, match="hard limit"):
        default_policy(dr={"events_per_period": 13})


def test_auditor_refuses_a_log_beyond_the_events_cap(released):
    from meterhub.hub.secure_element import GuardClient
    from meterhub.policy import LogError, default_policy, verify_release_log

    h, hub, ev, rel = released
    g = GuardClient(hub.card.transmit)
    g.select()
    count, head = g.head()
    raws = g.raw_entries()
    hub.client.select()
    with pytest.raises(LogError, match="demand-response events"):
        verify_release_log(raws, head, policies={1: default_policy(dr={"events_per_period": 0})})


def _with_c65(dc):
    from meterhub.crypto.group import Point

    c65 = b"".join(Point.from_bytes(dc.c33[k : k + 33]).to_bytes_uncompressed() for k in range(0, len(dc.c33), 33))
    return dataclasses.replace(dc, c65=c65)


def test_uncompressed_and_mixed_store_copies_give_the_same_verdict(released):
    """The verifier cuts the window encodings out of either copy (utility.demand_response
    ._window_sum); a store holding uncompressed points for some days only verifies alike."""
    h, hub, ev, rel = released
    ref = verify_release(rel, ev, h.registration, commitments(h), code_hash=CODE_HASH, app_aid=DR_APP_AID)
    every = {d: _with_c65(dc) for d, dc in commitments(h).items()}
    some = {d: (_with_c65(dc) if k % 2 else dc) for k, (d, dc) in enumerate(commitments(h).items())}
    for cs in (every, some):
        assert verify_release(rel, ev, h.registration, cs, code_hash=CODE_HASH, app_aid=DR_APP_AID) == ref


def test_an_undecodable_window_commitment_names_its_day(released):
    h, hub, ev, rel = released
    cs = {d: _with_c65(dc) for d, dc in commitments(h).items()}
    day = ev.baseline_days[3]
    _, e_pos, _ = event_windows(ev, "Europe/Berlin", 15)
    j = e_pos[0]
    bad = cs[day].c65[: 65 * j] + b"\x04" + b"\xff" * 64 + cs[day].c65[65 * j + 65 :]
    cs[day] = dataclasses.replace(cs[day], c65=bad)
    with pytest.raises(Rejected, match=f"day {day}: a commitment does not decode"):
        verify_release(rel, ev, h.registration, cs, code_hash=CODE_HASH, app_aid=DR_APP_AID)


def test_range_bits_picks_the_shortest_width_and_a_household_needs_16(released):
    from meterhub.dr.event import EventError
    from meterhub.dr.release import range_bits

    assert range_bits([0, (1 << 16) - 1]) == 16
    assert range_bits([5, 1 << 16]) == 32
    assert range_bits([1 << 32]) == 64
    with pytest.raises(EventError):
        range_bits([1 << 64])
    h, hub, ev, rel = released
    assert rel.bits == 16  # two 16-bit bounds: 32 generators, all with fixed-base tables
    with pytest.raises(Rejected, match="range proof"):
        verify_release(dataclasses.replace(rel, bits=32), ev, h.registration, commitments(h),
                       code_hash=CODE_HASH, app_aid=DR_APP_AID)


# -- PJM High 4 of 5 with the symmetric additive adjustment ----------------------------

def pjm_event(h: History, **kw) -> DREvent:
    from meterhub.dr.event import METHOD_PJM

    day = START + timedelta(days=N_DAYS - 1)
    cands = tuple(similar_days(day, set(), set(), "Europe/Berlin", have_from=START, method=METHOD_PJM))
    return make_event(h, event_id="ev-pjm", method=METHOD_PJM, baseline_days=cands, **kw)


def pjm_true_reduction(h: History, ev: DREvent) -> tuple[Fraction, int]:
    """PJM Manual 11 CBL from the raw readings: drop the candidate with the lowest usage
    over the event hours (the most recent of equal ones), average the others per
    interval, add the mean difference of the 3 hours that end 1 hour before the event."""
    day, e, w = event_windows(ev, "Europe/Berlin", 15)
    idx = {d.batch.batch.day: k for k, d in enumerate(h.days)}
    r = {d: h.readings[idx[d]] for d in (day, *ev.baseline_days)}
    usage = [sum(r[d][j] for j in e) for d in ev.baseline_days]
    low = min(usage)
    drop = max((k for k, u in enumerate(usage) if u == low), key=lambda k: ev.baseline_days[k])
    sel = [d for k, d in enumerate(ev.baseline_days) if k != drop]
    cbl = {j: Fraction(sum(r[d][j] for d in sel), len(sel)) for j in (*e, *w)}
    saa = Fraction(sum(r[day][j] - cbl[j] for j in w), len(w))
    return sum(cbl[j] + saa - r[day][j] for j in e), drop


@pytest.fixture(scope="module")
def pjm_released(tmp_path_factory):
    h = make_history(start=START, n_days=N_DAYS, seed=15)
    hub = Hub(tmp_path_factory.mktemp("pjm") / "hub.sqlite", h)
    ev = pjm_event(h)
    hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    return h, hub, ev, hub.release(ev.event_id)


def test_pjm_release_verifies_and_equals_the_cbl_from_raw_readings(pjm_released):
    h, hub, ev, rel = pjm_released
    assert len(ev.baseline_days) == 5 and rel.method == ev.method == 1
    v = verify_release(rel, ev, h.registration, commitments(h), code_hash=CODE_HASH, app_aid=DR_APP_AID)
    want, drop = pjm_true_reduction(h, ev)
    assert (v.reduction, v.adjustment) == (want, drop)
    assert DRRelease.from_bytes(rel.to_bytes()) == rel


def test_pjm_release_claiming_another_dropped_day_is_rejected(pjm_released):
    """A hub that drops a day that was not the lowest cannot prove the selection: with
    the reduction recomputed for that day from the openings, the range proof fails."""
    from meterhub.crypto.group import Q
    from meterhub.dr.event import pjm_coefficients

    h, hub, ev, rel = pjm_released
    day, e, w = event_windows(ev, "Europe/Berlin", 15)
    idx = {d.batch.batch.day: k for k, d in enumerate(h.days)}
    op = {d: h.days[idx[d]].openings for d in (day, *ev.baseline_days)}

    def tot(days, pos):
        return sum(op[d][j].m for d in days for j in pos), sum(op[d][j].r for d in days for j in pos) % Q

    for other in range(5):
        if other == rel.adjustment:
            continue
        sel = [d for k, d in enumerate(ev.baseline_days) if k != other]
        parts = zip(pjm_coefficients(4, len(e), len(w))[:4],
                    (tot(sel, e), tot([day], w), tot(sel, w), tot([day], e)), strict=True)
        s_, r_ = 0, 0
        for k, (m, r) in parts:
            s_, r_ = s_ + k * m, (r_ + k * r) % Q
        forged = dataclasses.replace(rel, adjustment=other, scaled_reduction=s_, blinding=r_)
        with pytest.raises(Rejected, match="range proof"):
            verify_release(forged, ev, h.registration, commitments(h), code_hash=CODE_HASH, app_aid=DR_APP_AID)
    with pytest.raises(Rejected, match="method"):
        verify_release(dataclasses.replace(rel, method=0, adjustment=1000), ev, h.registration, commitments(h),
                       code_hash=CODE_HASH, app_aid=DR_APP_AID)


def test_pjm_candidates_and_ties():
    from meterhub.dr.event import METHOD_PJM, EventError, check_baseline_days, pjm_excluded

    sat = date(2027, 4, 17)
    assert similar_days(sat, set(), set(), "Europe/Berlin", method=METHOD_PJM) == [
        date(2027, 4, 10), date(2027, 4, 3), date(2027, 3, 27)]  # Saturdays only
    assert similar_days(sat + timedelta(days=1), set(), set(), "Europe/Berlin", method=METHOD_PJM) == [
        date(2027, 4, 11), date(2027, 4, 4), date(2027, 3, 21)]  # Sundays, not the 23-hour 28 March
    days = (date(2027, 4, 5), date(2027, 4, 6), date(2027, 4, 7))
    assert pjm_excluded([7, 3, 3], days) == 2  # the most recent of the equal lowest
    ev = DREvent("e", 0, "p", datetime(2027, 4, 1, tzinfo=UTC), datetime(2027, 4, 17, 15, tzinfo=UTC), 60,
                 SIGNAL_PRICE, 1, 1, ("*",), (date(2027, 4, 10), date(2027, 4, 11), date(2027, 4, 3)), method=METHOD_PJM)
    with pytest.raises(EventError, match="weekday"):
        check_baseline_days(ev, sat)


def test_caiso_weekend_events_use_4_in_4():
    from meterhub.dr.event import EventError, check_baseline_days

    sat = date(2027, 4, 17)
    days = similar_days(sat, set(), set(), "Europe/Berlin")
    assert days == [date(2027, 4, 11), date(2027, 4, 10), date(2027, 4, 4), date(2027, 4, 3)]
    ev = DREvent("e", 0, "p", datetime(2027, 4, 1, tzinfo=UTC), datetime(2027, 4, 17, 15, tzinfo=UTC), 60,
                 SIGNAL_PRICE, 1, 1, ("*",), tuple(days))
    check_baseline_days(ev, sat)
    more = tuple(similar_days(sat, set(), set(), "Europe/Berlin")) + (date(2027, 3, 27),)
    with pytest.raises(EventError, match="4 baseline days"):
        check_baseline_days(dataclasses.replace(ev, baseline_days=more), sat)


def test_power_loss_while_the_event_is_delivered_leaves_it_whole_or_absent(tmp_path):
    """A tear at each write point of PUT EVENT (the VEN handing the signed event to the
    card during the event announcement): after the restart the host delivers it again and
    the card holds exactly that event, once, and releases it after the event day."""
    from meterhub.card import PowerLoss

    h = make_history(start=START, n_days=N_DAYS, seed=18)
    path = tmp_path / "hub.sqlite"
    Hub(path, h).card.close()
    ev = make_event(h)

    def reopen():
        card = open_demo_hub(path)
        client = DRClient(card.transmit)
        client.select()
        return card, client

    at, torn = 1, 0
    while True:
        card, client = reopen()
        calls = {"n": 0}

        def tear(what: str, n: int, calls=calls, at=at) -> None:
            calls["n"] += 1
            if calls["n"] == at:
                raise PowerLoss(what)

        card.store.fault_hook = tear
        try:
            client.put_event(ev.event_id, ev.to_bytes(), True)
        except PowerLoss:
            torn += 1
            card, client = reopen()  # restart: the host delivers the event again
            client.put_event(ev.event_id, ev.to_bytes(), True)
            card.close()
            at += 1
            continue
        card.store.fault_hook = None
        card.close()
        break
    assert torn >= 1
    hub = Hub.__new__(Hub)
    hub.h = h
    hub.card, hub.client = reopen()
    hub.feed()
    v = verify_release(hub.release(ev.event_id), ev, h.registration, commitments(h), code_hash=CODE_HASH,
                       app_aid=DR_APP_AID)
    assert v.reduction == true_reduction(h, ev)


def test_settle_event_pays_per_customer_and_sums_per_feeder():
    from meterhub.utility.demand_response import VerifiedReduction, settle_event

    vs = [VerifiedReduction("m1", "e", Fraction(1500), 1000, 75), VerifiedReduction("m2", "e", Fraction(-200), 950, 0),
          VerifiedReduction("m3", "e", Fraction(700), 1100, 35)]
    st = settle_event("e", vs, {"m1": "f1", "m2": "f1", "m3": "f2"})
    assert st.per_feeder_wh == {"f1": 1300.0, "f2": 700.0} and st.total_wh == 2000.0 and st.payments == 110
    with pytest.raises(ValueError, match="in the settlement of 'other'"):
        settle_event("other", vs, {})
