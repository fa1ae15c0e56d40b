"""The privacy guard (issue 11): each attack is refused with its status word and releases
nothing; the release log is a verifiable hash chain; power loss at every write."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import SettlementHub as Hub
from helpers import cycle_policy, make_history, provision_test_guard, signed_index
from meterhub.applets.readings import MeteringApplet
from meterhub.applets.settlement import SettlementApplet
from meterhub.card import Applet, Card, PowerLoss, ins, register_applet_class
from meterhub.card.gp import make_load_file
from meterhub.card.guard import GUARD_AID
from meterhub.crypto import ecdsa
from meterhub.crypto.sampling import commit_hub_nonce, commit_nonce, new_nonce
from meterhub.demo.hubs import demo_tsm, deploy_applet, open_demo_hub
from meterhub.hub.secure_element import (
    BILLING_APP_AID,
    PROFILING_APP_AID,
    RECIPIENT_SDS,
    SETTLEMENT_APP_AID,
    SUPPLIER_SD_AID,
    GuardClient,
    ReadingsClient,
    billing_load_file,
    customer_key_path,
    demo_scp03_keys,
)
from meterhub.policy import (
    DEFAULT_POLICY,
    HARD_LIMITS,
    LogError,
    PolicyError,
    default_policy,
    dump_policy,
    load_policy,
    sign_policy,
    verify_policy,
    verify_release_log,
)
from meterhub.policy.model import Cycle, ReleasePolicy
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.tariffs import Tariff, demo_supplier_key, dump_tariff, example_tariff, sign_tariff
from meterhub.tariffs.price_index import sign_series
from meterhub.tariffs.profiles import bdew_profile, demo_profile_key, reference_profiles
from meterhub.utility.forecasting import SampleRelease, verify_samples
from meterhub.utility.settlement import HubRefused, settlement_request
from meterhub.utility.tsm import TSM, TSMError


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def _log(card) -> tuple[int, list[bytes]]:
    g = GuardClient(card.transmit)
    g.select()
    count, head = g.head()
    raws = g.raw_entries()
    verify_release_log(raws, head)
    return count, raws


# ---------------------------------------------------------------- the policy


def test_default_policy_and_hard_limits():
    p = DEFAULT_POLICY
    assert p.limit("tariff", "max_prices") == 8 and p.limit("tariff", "min_band_minutes") == 30
    assert p.limit("budget", "functionals_per_period") == 16 and p.limit("sampling", "min_k") == 100
    assert p.limit("profile", "min_minutes") == 60 and p.cycle.days == 0
    for sec, name, bad in [("sampling", "min_k", 1), ("budget", "functionals_per_period", 64),
                           ("tariff", "max_prices", 96), ("profile", "min_minutes", 15),
                           ("tariff", "min_band_minutes", 15), ("sampling", "tosses_per_period", 4)]:
        with pytest.raises(PolicyError, match="hard limit"):
            default_policy(**{sec: {name: bad}})
    assert HARD_LIMITS["sampling"]["min_k"] == 50
    # Stricter than the defaults is always fine.
    assert default_policy(sampling={"min_k": 500}, budget={"functionals_per_period": 4}).limit("sampling", "min_k") == 500


def test_policy_signature_round_trip_and_refusals():
    key = ecdsa.generate_signing_key()
    signed = sign_policy(default_policy(version=3), key)
    back = load_policy(dump_policy(signed))
    assert verify_policy(back, key.public_key()) == signed.policy
    with pytest.raises(PolicyError, match="not signed"):
        verify_policy(back, ecdsa.generate_signing_key().public_key())
    raw = json.loads(dump_policy(signed))
    raw["policy"]["budget"]["functionals_per_period"] = 32  # allowed value, but not what was signed
    with pytest.raises(PolicyError, match="not signed"):
        verify_policy(load_policy(json.dumps(raw)), key.public_key())
    raw["policy"]["budget"]["functionals_per_period"] = 1000  # beyond the hard limit
    with pytest.raises(PolicyError, match="hard limit"):
        load_policy(json.dumps(raw))


@given(st.binary(max_size=600) | st.text(max_size=600))
def test_policy_parser_only_raises_policy_error(data):
    try:
        load_policy(data)
    except PolicyError:
        pass


@given(st.dates(min_value=date(2001, 1, 1), max_value=date(2099, 12, 31)), st.integers(0, 40),
       st.dates(min_value=date(2001, 1, 1), max_value=date(2099, 12, 31)))
def test_cycle_cells_tile_the_calendar(anchor, days, day):
    if days == 0:
        anchor = anchor.replace(day=min(anchor.day, 28))
    c = Cycle(anchor, days)
    a, b = c.period_of(day)
    assert a <= day <= b and c.is_period(a, b)
    assert c.period_of(b + timedelta(days=1))[0] == b + timedelta(days=1)
    assert c.period_of(a - timedelta(days=1))[1] == a - timedelta(days=1)
    if days:
        assert (b - a).days + 1 == days


def test_month_cycle_is_the_calendar_month():
    c = DEFAULT_POLICY.cycle
    assert c.period_of(date(2027, 2, 14)) == (date(2027, 2, 1), date(2027, 2, 28))
    assert not c.is_period(date(2027, 3, 15), date(2027, 4, 13))
    assert Cycle(date(2027, 1, 15)).period_of(date(2027, 3, 1)) == (date(2027, 2, 15), date(2027, 3, 14))


# ---------------------------------------------------------------- the hub


@pytest.fixture
def hub(settlement_hub):
    h = make_history(n_days=3, seed=91)
    return settlement_hub(h)


def test_customer_key_is_created_at_provisioning_with_mode_0600(hub, tmp_path):
    path = customer_key_path(tmp_path / "hub.sqlite")
    assert path.exists() and (os.stat(path).st_mode & 0o777) == 0o600
    key = ecdsa.load_signing_key(path.read_bytes())
    g = GuardClient(hub.card.transmit)
    g.select()
    assert verify_policy(g.policy(), key.public_key()).cycle == Cycle(hub.h.start, 3)
    pins = g.pinned()
    assert pins["customer"] == ecdsa.public_bytes(key).hex()
    assert pins["pinned"]["price-index"] and pins["pinned"]["load-profile"] and pins["pinned"]["tariff/supplier"]


def test_a_recipient_cannot_install_with_its_own_key(hub):
    """The grid operator installs the profiling applet with its own profile key: refused."""
    own = ecdsa.generate_signing_key()
    lfdb = make_load_file("F04D4800505299", {"F04D480050529901": type(hub.card.registry.get(PROFILING_APP_AID).instance)})
    with demo_tsm(hub.card, "grid-operator") as t, pytest.raises(TSMError) as e:
        t.deploy(lfdb, "F04D48005052990101", params=ecdsa.public_bytes(own))
    assert e.value.sw == 0x6982
    assert hub.card.registry.get("F04D48005052990101") is None
    # And the supplier cannot choose the price-index publisher either.
    with demo_tsm(hub.card, "supplier") as t, pytest.raises(TSMError) as e:
        t.deploy(make_load_file("F04D4800535499", {"F04D480053549901": SettlementApplet}),
                 "F04D48005354990101", params=ecdsa.public_bytes(own))
    assert e.value.sw == 0x6982


def test_crafted_profiles_are_refused_and_nothing_is_stored(hub):
    count0, _ = _log(hub.card)
    base = bdew_profile("h0", hub.h.start, 3)
    quarter = dataclasses.replace(base, series_id="spy-15min", interval_minutes=15,
                                  values=tuple(v for v in base.values for _ in range(4)))
    spread = dataclasses.replace(base, series_id="spy-spread",
                                 values=tuple((1, 1 << 13, 1 << 26, 1 << 39)[k % 4] for k in range(len(base.values))))
    narrow = dataclasses.replace(base, series_id="spy-8192", values=tuple((1, 8192)[k % 2] for k in range(len(base.values))))
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for s in (quarter, spread, narrow):
        with pytest.raises(HubRefused, match="release policy") as e:
            mb.push_series(sign_series(s, demo_profile_key()))
        assert e.value.sw == 0x6A80
    # A profile the grid operator signs itself: not a pinned publisher.
    with pytest.raises(HubRefused, match="pinned") as e:
        mb.push_series(sign_series(dataclasses.replace(base, series_id="own"), ecdsa.generate_signing_key()))
    assert e.value.sw == 0x6982
    hub.feed()
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for sid in ("spy-15min", "spy-spread", "spy-8192", "own"):
        with pytest.raises(HubRefused) as e:
            mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + sid.encode(), "scores")
        assert e.value.sw == 0x6A88  # never stored
    assert _log(hub.card)[0] == count0


def test_spike_profiles_are_refused_and_nothing_is_released(hub):
    """Profiles that pass the range limit but isolate single hours with the energy beside
    them: one non-zero weight (ratio 1), 1000 at one hour and 1 elsewhere (score - E =
    999 M_h), a few spikes; and a profile spread over its window but a spike over the
    one period asked for (refused when the score would be computed)."""
    count0, _ = _log(hub.card)
    base = bdew_profile("h0", hub.h.start, 3)
    n = len(base.values)
    one = dataclasses.replace(base, series_id="spike-1", values=tuple(int(k == 30) for k in range(n)))
    big = dataclasses.replace(base, series_id="spike-1000", values=tuple(1000 if k == 30 else 1 for k in range(n)))
    few = dataclasses.replace(base, series_id="spikes-7",
                              values=tuple(2 + k if k in range(10, 17) else 1 for k in range(n)))
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for s in (one, big, few):
        with pytest.raises(HubRefused, match="release policy") as e:
            mb.push_series(sign_series(s, demo_profile_key()))
        assert e.value.sw == 0x6A80
    # Eight hours apart from the energy: the default minimum support, allowed.
    mb.push_series(sign_series(dataclasses.replace(base, series_id="block-8",
                                                   values=tuple(3 if 8 <= k < 16 else 1 for k in range(n))),
                               demo_profile_key()))
    # Varied over the three days before the period, one spike within it.
    wide = bdew_profile("h0", hub.h.start - timedelta(days=3), 6)
    hidden = dataclasses.replace(wide, series_id="hidden-spike",
                                 values=wide.values[: len(wide.values) - n] + tuple(v * max(wide.values) for v in one.values))
    mb.push_series(sign_series(hidden, demo_profile_key()))
    hub.feed()
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    with pytest.raises(HubRefused, match="release policy") as e:
        mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + b"block-8,hidden-spike", "scores")
    assert e.value.sw == 0x6A80
    assert _log(hub.card)[0] == count0
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + b"block-8", "scores")
    assert _log(hub.card)[0] == count0 + 1


def test_two_profiles_that_differ_by_a_spike_are_refused_together(hub):
    """h0 and h0 with one hour raised pass alone; asked together their difference is that
    hour (x a + y b + c vanishes on every other hour): refused, nothing released."""
    count0, _ = _log(hub.card)
    base = bdew_profile("h0", hub.h.start, 3)
    twin = dataclasses.replace(base, series_id="h0-twin",
                               values=tuple(v * 2 if k == 30 else v for k, v in enumerate(base.values)))
    scaled = dataclasses.replace(base, series_id="h0-scaled",  # 3 h0 + 5, one hour off the line
                                 values=tuple(3 * v + 5 + (7 if k == 40 else 0) for k, v in enumerate(base.values)))
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for s in (base, twin, scaled):
        mb.push_series(sign_series(s, demo_profile_key()))
    hub.feed()
    for pair in (b"bdew-h0,h0-twin", b"h0-scaled,bdew-h0"):
        mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
        with pytest.raises(HubRefused, match="release policy") as e:
            mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + pair, "scores")
        assert e.value.sw == 0x6A80
    assert _log(hub.card)[0] == count0
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + b"h0-twin", "scores")
    assert _log(hub.card)[0] == count0 + 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=48, max_size=48), st.sets(st.integers(0, 47), min_size=1, max_size=7),
       st.integers(1, 50), st.integers(1, 5), st.integers(0, 9))
def test_the_guards_support_rules_refuse_every_spike_pair_and_pass_affine_twins(base, spikes, bump, x, c):
    """Two-day hourly profiles: ``x base + c`` adds nothing to ``base`` and ``E`` and is not
    refused as a pair; the same with a few hours raised isolates those hours, and the
    guard's rules (each profile alone, then the pair) refuse it."""
    from meterhub.policy import PolicyViolation, check_pair_support, check_support

    twin = [x * v + c for v in base]
    check_pair_support(base, twin, 60, DEFAULT_POLICY)
    spiked = [v + (bump if h in spikes else 0) for h, v in enumerate(twin)]
    with pytest.raises(PolicyViolation):
        check_support(base, 60, DEFAULT_POLICY)
        check_support(spiked, 60, DEFAULT_POLICY)
        check_pair_support(base, spiked, 60, DEFAULT_POLICY)


def test_min_support_is_a_policy_limit_with_a_hard_floor():
    """Policies signed before the limit existed keep their signature and get the default;
    no policy may go below the hard floor of 4 hours."""
    assert DEFAULT_POLICY.limit("profile", "min_support_hours") == 8
    assert HARD_LIMITS["profile"]["min_support_hours"] == 4
    with pytest.raises(PolicyError, match="hard limit"):
        default_policy(profile={"min_support_hours": 3})
    key = ecdsa.generate_signing_key()
    old = {s: dict(v) for s, v in DEFAULT_POLICY.limits.items()}
    del old["profile"]["min_support_hours"]
    legacy = dataclasses.replace(DEFAULT_POLICY, limits=old)
    raw = dump_policy(sign_policy(legacy, key))
    assert b"min_support_hours" not in raw
    parsed = verify_policy(load_policy(raw), key.public_key())
    assert parsed.limit("profile", "min_support_hours") == 8


def test_budget_of_linear_functionals_is_enforced(hub):
    """15 allowed hourly profiles: 15 scores + energy + squares = 17 > 16 functionals."""
    profiles = reference_profiles(hub.h.start, 3)
    extra = [sign_series(dataclasses.replace(bdew_profile(n, hub.h.start, 3), series_id=f"x-{n}"), demo_profile_key())
             for n in ("h0", "g0", "g1")]
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for p in profiles + extra:
        mb.push_series(p)
    hub.feed()
    count0, _ = _log(hub.card)
    ids = ",".join(p.series.series_id for p in profiles + extra).encode()
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    with pytest.raises(HubRefused, match="budget") as e:
        mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + ids, "scores")
    assert e.value.sw == 0x6A84
    assert _log(hub.card)[0] == count0
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    # 14 functionals fit; the same request again answers the same bytes.
    ids = ",".join(p.series.series_id for p in profiles).encode()
    a = mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + ids, "scores")
    b = mb.request(b"\x20" + _day(hub.h.start) + _day(hub.last) + ids, "scores")
    assert a == b
    count, raws = _log(hub.card)
    assert count == count0 + 1 and json.loads(raws[-1])["functionals"] == 14


def _commit(mb, first, last, k, c):
    return mb.send(b"\x10" + _day(first) + _day(last) + k.to_bytes(2, "big") + c, "commit")


def test_sampling_floor_one_toss_and_commit_then_reveal(hub):
    h = hub.h
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for k in (1, 99):
        with pytest.raises(HubRefused, match="release policy") as e:
            _commit(mb, h.start, hub.last, k, commit_nonce("m-test", h.start, hub.last, k, new_nonce()))
        assert e.value.sw == 0x6A80
    with pytest.raises(HubRefused) as e:  # one toss per sub-period: not a whole period
        _commit(mb, h.start, h.start, 100, commit_nonce("m-test", h.start, h.start, 100, new_nonce()))
    assert e.value.sw == 0x6A80
    nonce = new_nonce()
    c = commit_nonce("m-test", h.start, hub.last, 100, nonce)
    answer = _commit(mb, h.start, hub.last, 100, c)
    with pytest.raises(HubRefused) as e:  # a second toss for the period
        _commit(mb, h.start, hub.last, 100, commit_nonce("m-test", h.start, hub.last, 100, new_nonce()))
    assert e.value.sw == 0x6985
    hub.feed()
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    rel = SampleRelease.from_json(mb.request(b"\x11" + _day(h.start) + _day(hub.last) + nonce, "reveal"))
    # At commit time the utility got only the hub's commitment, not its nonce.
    assert answer != rel.hub_nonce and answer == commit_hub_nonce(rel.hub_nonce)
    assert verify_samples(rel, h.registration, h.day_commitments(), commitment=c, utility_nonce=nonce,
                          hub_commitment=answer, k=100).ok
    assert len(rel.samples) == 3  # 288 readings, k = 100


def test_settlement_only_whole_periods_and_the_pinned_index(hub):
    h = hub.h
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    with pytest.raises(HubRefused, match="pinned") as e:  # the supplier's own "index"
        mb.push_series(signed_index(h, key=ecdsa.generate_signing_key()))
    assert e.value.sw == 0x6982
    idx = signed_index(h)
    mb.push_series(idx)
    hub.feed()
    count0, _ = _log(hub.card)
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    for d in range(3):  # single days, again and again
        day = h.start + timedelta(days=d)
        with pytest.raises(HubRefused) as e:
            mb.request(settlement_request(day, day, idx.series.series_id, 1), "settlement")
        assert e.value.sw == 0x6A80
    assert _log(hub.card)[0] == count0
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    whole = settlement_request(h.start, hub.last, idx.series.series_id, 1)
    a = mb.request(whole, "settlement")
    assert mb.request(whole, "settlement") == a  # re-asking: the same statement, byte for byte
    mb.push_series(signed_index(h, version=2))
    with pytest.raises(HubRefused) as e:  # another request for the released period
        mb.request(settlement_request(h.start, hub.last, idx.series.series_id, 2), "settlement")
    assert e.value.sw == 0x6985
    count, raws = _log(hub.card)
    assert count == count0 + 1
    entry = json.loads(raws[-1])
    assert entry["kind"] == "settlement" and entry["recipient"] == "supplier" and entry["functionals"] == 2
    g = GuardClient(hub.card.transmit)
    g.select()
    assert hashlib.sha256(g.release(count - 1)).hexdigest() == entry["output_digest"] == hashlib.sha256(a).hexdigest()


def test_overlapping_periods_after_a_cycle_change_are_refused(tmp_path, settlement_hub):
    h = make_history(n_days=4, seed=92)
    hub = settlement_hub(h, policy=cycle_policy(h.start, 2))
    idx = signed_index(h)
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    mb.push_series(idx)
    hub.feed()
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    mb.request(settlement_request(h.start, h.start + timedelta(days=1), idx.series.series_id, 1), "settlement")
    # The customer moves the cycle by one day (a new, signed policy version)...
    key = ecdsa.load_signing_key(customer_key_path(tmp_path / "hub.sqlite").read_bytes())
    g = GuardClient(hub.card.transmit)
    g.select()
    g.set_policy(sign_policy(cycle_policy(h.start + timedelta(days=1), 2, version=2), key))
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    with pytest.raises(HubRefused, match="overlapping") as e:  # ... a cell overlapping the release
        mb.request(settlement_request(h.start + timedelta(days=1), h.start + timedelta(days=2),
                                      idx.series.series_id, 1), "settlement")
    assert e.value.sw == 0x6985
    count, raws = _log(hub.card)
    assert [json.loads(r)["kind"] for r in raws] == ["policy", "settlement", "policy"]


def test_policy_set_refusals(hub, tmp_path):
    key = ecdsa.load_signing_key(customer_key_path(tmp_path / "hub.sqlite").read_bytes())
    g = GuardClient(hub.card.transmit)
    g.select()
    before = g.head()
    with pytest.raises(Exception, match="6982"):  # another key
        g.set_policy(sign_policy(cycle_policy(hub.h.start, 3, version=2), ecdsa.generate_signing_key()))
    with pytest.raises(Exception, match="6985"):  # version does not increase
        g.set_policy(sign_policy(cycle_policy(hub.h.start, 3, version=1), key))
    # Floors cannot be lowered past the hard limits, even signed by the customer: the
    # card parses the policy itself.
    bad = ReleasePolicy.__new__(ReleasePolicy)
    object.__setattr__(bad, "version", 5)
    object.__setattr__(bad, "cycle", Cycle(hub.h.start, 3))
    object.__setattr__(bad, "entitlements", dict(DEFAULT_POLICY.entitlements))
    limits = {s: dict(v) for s, v in DEFAULT_POLICY.limits.items()}
    limits["sampling"]["min_k"] = 1
    object.__setattr__(bad, "limits", limits)
    raw = dump_policy(sign_policy(bad, key))
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x80, 0x42, 0, 0, raw, extended=True).to_bytes()))
    assert r.sw == 0x6A80
    assert g.head() == before


def _billing_hub(tmp_path, days=1):
    h = make_history(n_days=days, seed=93)
    card = open_demo_hub(tmp_path / "b.sqlite", policy=cycle_policy(h.start, days))
    with demo_tsm(card, "supplier") as t:
        deploy_applet(t, "billing")
    return h, card


def _tariff_with(change) -> bytes:
    d = example_tariff(2027).to_dict()
    change(d)
    return dump_tariff(sign_tariff(Tariff.from_dict(d), demo_supplier_key()))


def _price(name, p):
    def change(d):
        for b in d["bands"]:
            if b["name"] == name:
                b["price"] = p
    return change


def _split_peak(d):
    peak = next(b for b in d["bands"] if b["name"] == "winter-peak")
    peak["start"] = "17:15"
    d["bands"].append({**peak, "name": "winter-spy", "start": "17:00", "end": "17:15", "price": 400})


@pytest.mark.parametrize("change, why", [
    (_price("winter-peak", 240 * 8192), "prices as powers of a large base"),
    (_price("winter-evening", 330), "nine distinct prices"),
    (_split_peak, "a 15-minute band"),
    (lambda d: [b.update(price=b["price"] * 10) for b in d["bands"]], "above the plausible maximum"),
])
def test_encoding_tariffs_are_refused(tmp_path, change, why):
    _, card = _billing_hub(tmp_path)
    with demo_tsm(card, "supplier") as t, pytest.raises(TSMError) as e:
        t.push_tariff(BILLING_APP_AID, _tariff_with(change))
    assert e.value.sw == 0x6A80, why
    assert "release policy" in str(e.value)  # the one-line reason on the sending side


def test_one_tariff_change_per_billing_period_and_one_bill(tmp_path):
    h, card = _billing_hub(tmp_path)
    v1 = dump_tariff(sign_tariff(example_tariff(2027), demo_supplier_key()))
    v2 = dump_tariff(sign_tariff(dataclasses.replace(example_tariff(2027), version=2), demo_supplier_key()))
    with demo_tsm(card, "supplier") as t:
        t.push_tariff(BILLING_APP_AID, v1)
        t.push_tariff(BILLING_APP_AID, v1)  # the same tariff again is no change
        with pytest.raises(TSMError) as e:
            t.push_tariff(BILLING_APP_AID, v2)
        assert e.value.sw == 0x6985
    from meterhub.hub.secure_element import BillingClient

    client = BillingClient(card.transmit)
    client.select()
    client.pair("m-test", "Europe/Berlin", 15, bytes(16))
    for d in h.days:
        client.put_openings(d.batch.batch.day, d.first_index, d.openings)
    st = client.bill(h.start, h.start)
    assert client.bill(h.start, h.start) == st
    from meterhub.utility.verifier import verify_bill

    assert verify_bill(st, h.registration, h.day_commitments(), h.tariff).ok
    count, raws = _log(card)
    assert [json.loads(r)["kind"] for r in raws] == ["policy", "bill"]


def test_other_recipients_cannot_use_or_replay(hub):
    h = hub.h
    idx = signed_index(h)
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    mb.push_series(idx)
    hub.feed()
    req = settlement_request(h.start, hub.last, idx.series.series_id, 1)
    hub.mailbox("supplier", SETTLEMENT_APP_AID).request(req, "settlement")
    count0, _ = _log(hub.card)
    # The grid operator's SD cannot reach the supplier's applet.
    with pytest.raises(HubRefused) as e:
        hub.mailbox("grid-operator", SETTLEMENT_APP_AID).request(req, "replay")
    assert e.value.sw == 0x6A88
    # A third party installs its own copy of the settlement applet (pinned key) and replays
    # the supplier's request: it is not entitled to settlement statements.
    third = RECIPIENT_SDS["third-party"]
    with demo_tsm(hub.card, "third-party") as t:
        t.deploy(make_load_file("F04D4800535498", {"F04D480053549801": SettlementApplet}), "F04D48005354980101")
    rc = ReadingsClient(hub.card.transmit, "F04D48005354980101")
    rc.select()
    rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
    for d in h.days:
        rc.put_openings(d.batch.batch.day, d.first_index, d.openings)
    t = demo_tsm(hub.card, "third-party", sd_aid=third)
    t.open()
    from meterhub.utility.settlement import AppletMailbox

    tmb = AppletMailbox(t, "F04D48005354980101")
    tmb.push_series(idx)
    with pytest.raises(HubRefused, match="not entitled") as e:
        tmb.request(req, "replay")
    assert e.value.sw == 0x6982
    assert _log(hub.card)[0] == count0


class Leaky(MeteringApplet):
    """A reviewed-looking applet that forgets the guard: returns the openings it holds."""

    KEY_ROLE = "price-index"

    @ins(0x58, cla=0x80)
    def leak(self, apdu: CommandAPDU) -> bytes:
        return self.rs.period(self.rs.last_day(), self.rs.last_day())[1][:200]

    def process_data(self, apdu: CommandAPDU) -> bytes:
        return self.rs.period(self.rs.last_day(), self.rs.last_day())[1][:200]


register_applet_class("tests.leaky/1", Leaky)


def test_output_gate_withholds_what_the_guard_did_not_issue(hub):
    h = hub.h
    hub.card.registry.install_applet("tests.leaky/1", "F04D48004C4B0101", sd_aid=SUPPLIER_SD_AID)
    rc = ReadingsClient(hub.card.transmit, "F04D48004C4B0101")
    rc.select()
    rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
    d = h.days[0]
    rc.put_openings(d.batch.batch.day, d.first_index, d.openings)
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x80, 0x58, 0, 0, b"", le=256).to_bytes()))
    assert (r.sw, r.data) == (0x6F00, b"")
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x80, 0x32, 0, 0, b"", le=256).to_bytes()))
    assert r.sw == 0x9000 and len(r.data) == 12  # GET STATE is issued by the guard
    from meterhub.utility.settlement import AppletMailbox

    with pytest.raises(HubRefused) as e:
        AppletMailbox(hub.mailbox("supplier", SETTLEMENT_APP_AID).tsm, "F04D48004C4B0101").send(b"\x02", "leak")
    assert e.value.sw == 0x6F00


# ---------------------------------------------------------------- the release log


def test_release_log_chain_is_checkable_and_tamper_evident(hub):
    idx = signed_index(hub.h)
    hub.mailbox("supplier", SETTLEMENT_APP_AID).push_series(idx)
    hub.feed()
    hub.mailbox("supplier", SETTLEMENT_APP_AID).request(
        settlement_request(hub.h.start, hub.last, idx.series.series_id, 1), "settlement")
    g = GuardClient(hub.card.transmit)
    g.select()
    count, head = g.head()
    raws = g.raw_entries()
    policy = g.policy().policy
    entries = verify_release_log(raws, head, policies={1: policy})
    assert [e.kind for e in entries] == ["policy", "settlement"]
    bad = raws[1].replace(b'"functionals":2', b'"functionals":1')
    with pytest.raises(LogError):
        verify_release_log([raws[0], bad], head)
    with pytest.raises(LogError):
        verify_release_log(raws[:1], head)
    with pytest.raises(LogError, match="budget"):
        verify_release_log(raws, head, policies={1: default_policy(budget={"functionals_per_period": 1})})


# ---------------------------------------------------------------- the budget, as a property


class LinearProbe(Applet):
    """Test applet: releases the linear functionals it is asked for (weight vectors over
    one day's 8 readings) through the guard, as kind ``kind``."""

    @ins(0x50, cla=0x80)
    def release(self, apdu: CommandAPDU) -> bytes:
        req = json.loads(bytes(apdu.data))
        port = self.ctx.get_shareable(GUARD_AID)
        day = date.fromisoformat(req["day"])
        again = port.begin(req["kind"], day, day, bytes(apdu.data), chunked=False)
        if again is not None:
            return again
        out = json.dumps(req["weights"]).encode()
        return port.commit(req["kind"], day, day, bytes(apdu.data), out, functionals=len(req["weights"]), chunked=False)


register_applet_class("tests.linear-probe/1", LinearProbe)
PROBES = {"F04D4800504C0101": "supplier", "F04D4800504C0102": "supplier", "F04D4800504C0103": "grid-operator"}
D0 = date(2027, 5, 1)


def _rank(vectors: list[list[int]]) -> int:
    rows = [[Fraction(x) for x in v] for v in vectors]
    rank, col = 0, 0
    while rows and col < len(rows[0]):
        piv = next((i for i in range(rank, len(rows)) if rows[i][col] != 0), None)
        if piv is not None:
            rows[rank], rows[piv] = rows[piv], rows[rank]
            for i in range(len(rows)):
                if i != rank and rows[i][col] != 0:
                    f = rows[i][col] / rows[rank][col]
                    rows[i] = [a - f * b for a, b in zip(rows[i], rows[rank], strict=True)]
            rank += 1
        col += 1
    return rank


requests = st.lists(
    st.tuples(st.sampled_from(sorted(PROBES)), st.sampled_from(["bill", "settlement", "scores", "export", "x"]),
              st.integers(0, 2),
              st.lists(st.lists(st.integers(0, 9), min_size=8, max_size=8), min_size=1, max_size=9)),
    min_size=1, max_size=14,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_released_functionals_never_exceed_the_budget(reqs):
    card = Card(None)
    provision_test_guard(card, cycle_policy(D0, 1))
    for aid, who in PROBES.items():
        card.registry.install_applet("tests.linear-probe/1", aid, sd_aid=RECIPIENT_SDS[who])
    card.power_on()
    released: dict[tuple[str, str], list[list[int]]] = {}
    for aid, kind, d, weights in reqs:
        card.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(aid)).to_bytes())
        body = json.dumps({"kind": kind, "day": (D0 + timedelta(days=d)).isoformat(), "weights": weights}).encode()
        r = ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0x80, 0x50, 0, 0, body, le=65536, extended=True).to_bytes()))
        assert r.sw in (0x9000, 0x6982, 0x6985, 0x6A84, 0x6A80)
        if kind in ("export", "x"):  # no consent path, no such kind: never released
            assert r.sw in (0x6982, 0x6A80)
        if r.sw == 0x9000:
            released.setdefault((PROBES[aid], (D0 + timedelta(days=d)).isoformat()), []).extend(json.loads(r.data))
        else:
            assert r.data == b""
    budget = DEFAULT_POLICY.limit("budget", "functionals_per_period")
    g = GuardClient(card.transmit)
    g.select()
    count, head = g.head()
    entries = verify_release_log(g.raw_entries(), head, policies={1: cycle_policy(D0, 1)})
    logged: dict[tuple[str, str], list[list[int]]] = {}
    for e in entries[1:]:
        logged.setdefault((e.recipient, e.period_from), []).extend(json.loads(g.release(e.seq)))
    for key, vectors in released.items():
        assert _rank(vectors) <= budget
        # what the recipient holds is exactly what the log says it was given (re-asks add nothing new)
        assert _rank(vectors + logged[key]) == _rank(logged[key]) <= budget
    for e in entries[1:]:  # the grid operator is not entitled to bills or settlement
        assert (e.recipient, e.kind) not in {("grid-operator", "bill"), ("grid-operator", "settlement"),
                                             ("supplier", "scores")}


# ---------------------------------------------------------------- power loss


def _settle_hub(path, h):
    hub = Hub(path, h, policy=cycle_policy(h.start, 1))
    idx = signed_index(h)
    hub.mailbox("supplier", SETTLEMENT_APP_AID).push_series(idx)
    hub.feed()
    return hub, settlement_request(h.start, h.start, idx.series.series_id, 1)


def _reopen(path):
    return open_demo_hub(path)


def test_power_loss_at_every_write_of_a_release(tmp_path):
    """Nothing released without being logged, nothing logged without its statement: at
    every write point of a settlement release (SCP03 counters, STORE DATA, the guard's
    transaction, the outbox pointer) a tear leaves either no trace or a complete one,
    and a re-ask after the restart answers exactly the logged bytes."""
    h = make_history(n_days=1, seed=94)
    hub, req = _settle_hub(tmp_path / "count.sqlite", h)
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    store = hub.card.store
    start = store.write_points
    mb.request(req, "settlement")
    points = store.write_points - start
    assert points >= 8
    hub.card.close()
    outcomes = set()
    for n in range(1, points + 1):
        path = tmp_path / f"tear{n}.sqlite"
        hub, req = _settle_hub(path, h)
        mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
        count0, _ = _log(hub.card)
        mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
        base = hub.card.store.write_points

        def tear(what, k, base=base, n=n):
            if k - base == n:
                raise PowerLoss(what)

        hub.card.store.fault_hook = tear
        with pytest.raises(PowerLoss):
            mb.request(req, "settlement")
        card = _reopen(path)
        count, raws = _log(card)
        assert count in (count0, count0 + 1), n
        outcomes.add(count - count0)
        t = TSM(card.transmit, demo_scp03_keys("supplier"), sd_aid=SUPPLIER_SD_AID)
        t.open()
        from meterhub.utility.settlement import AppletMailbox

        got = AppletMailbox(t, SETTLEMENT_APP_AID).request(req, "settlement")
        count2, raws2 = _log(card)
        assert count2 == count0 + 1, n  # exactly one release for the period, logged
        assert json.loads(raws2[-1])["output_digest"] == hashlib.sha256(got).hexdigest()
        if count == count0 + 1:
            assert raws2 == raws  # the torn release was complete: the re-ask answered it
        card.close()
    assert outcomes == {0, 1}  # tears both before and after the guard's commit were hit


@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_log_entry_parser_only_raises_log_error(data):
    from meterhub.policy import LogEntry

    try:
        LogEntry.from_bytes(data)
    except LogError:
        pass


def test_power_loss_at_every_write_of_a_policy_change(tmp_path):
    """Tear SET POLICY at each write point: after the restart the card holds either the
    old policy and log, or the new policy with its log entry, and the chain verifies."""
    from meterhub.card.gp import open_card

    def fresh(path):
        card = Card(path)
        key = provision_test_guard(card, cycle_policy(D0, 1))
        card.power_on()
        return card, key

    card, key = fresh(tmp_path / "count.sqlite")
    g = GuardClient(card.transmit)
    g.select()
    start = card.store.write_points
    g.set_policy(sign_policy(cycle_policy(D0, 2, version=2), key))
    points = card.store.write_points - start
    card.close()
    seen = set()
    for n in range(1, points + 1):
        path = tmp_path / f"p{n}.sqlite"
        card, key = fresh(path)
        g = GuardClient(card.transmit)
        g.select()
        base = card.store.write_points

        def tear(what, k, base=base, n=n):
            if k - base == n:
                raise PowerLoss(what)

        card.store.fault_hook = tear
        with pytest.raises(PowerLoss):
            g.set_policy(sign_policy(cycle_policy(D0, 2, version=2), key))
        card = open_card(str(path))
        card.power_on()
        g = GuardClient(card.transmit)
        g.select()
        count, head = g.head()
        entries = verify_release_log(g.raw_entries(), head)
        version = g.policy().policy.version
        assert (count, version) in ((1, 1), (2, 2)), n
        assert entries[-1].policy_version == version
        seen.add(version)
        card.close()
    assert seen == {1, 2}


def test_budget_is_shared_by_the_applets_of_one_recipient(tmp_path):
    """The supplier's billing and settlement applets draw on one budget: with 2 functionals
    per period, the bill (1) fits and the settlement statement (2 more) is refused."""
    from meterhub.hub.secure_element import BillingClient, settlement_load_file

    h = make_history(n_days=1, seed=96)
    card = open_demo_hub(tmp_path / "b.sqlite", policy=cycle_policy(h.start, 1, budget={"functionals_per_period": 2}))
    idx = signed_index(h)
    with demo_tsm(card, "supplier") as t:
        t.deploy(billing_load_file(), BILLING_APP_AID)
        t.push_tariff(BILLING_APP_AID, dump_tariff(sign_tariff(example_tariff(2027), demo_supplier_key())))
        t.deploy(settlement_load_file(), SETTLEMENT_APP_AID)
        from meterhub.utility.settlement import AppletMailbox

        AppletMailbox(t, SETTLEMENT_APP_AID).push_series(idx)
    client = BillingClient(card.transmit)
    client.select()
    client.pair("m-test", "Europe/Berlin", 15, bytes(16))
    client.put_openings(h.days[0].batch.batch.day, h.days[0].first_index, h.days[0].openings)
    rc = ReadingsClient(card.transmit, SETTLEMENT_APP_AID)
    rc.select()
    rc.pair("m-test", "Europe/Berlin", 15)
    rc.put_openings(h.days[0].batch.batch.day, h.days[0].first_index, h.days[0].openings)
    client.select()
    client.bill(h.start, h.start)
    t = demo_tsm(card, "supplier")
    t.open()
    from meterhub.utility.settlement import AppletMailbox

    with pytest.raises(HubRefused, match="budget") as e:
        AppletMailbox(t, SETTLEMENT_APP_AID).request(settlement_request(h.start, h.start, idx.series.series_id, 1), "s")
    assert e.value.sw == 0x6A84
    count, raws = _log(card)
    assert [json.loads(r)["kind"] for r in raws] == ["policy", "bill"]
