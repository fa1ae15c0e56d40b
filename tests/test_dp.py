"""The DP forecast option (issue 12): mechanism, sensitivities, OpenDP's privacy maps,
the profiling applet's release through the guard with its epsilon budget, the parser."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import cycle_policy, make_history, provision_test_guard
from meterhub.card import Applet, Card, ins, register_applet_class
from meterhub.card.guard import GUARD_AID
from meterhub.hub.secure_element import PROFILING_APP_AID, RECIPIENT_SDS, GuardClient
from meterhub.model.dp import (
    DpError,
    DpParams,
    OpenDPNoise,
    SeededNoise,
    class_sensitivity,
    dp_forecast,
    utilities,
)
from meterhub.model.formats.dp_forecast import DpForecastRelease
from meterhub.policy import (
    LogEntry,
    LogError,
    PolicyError,
    chain_hash,
    default_policy,
    sign_policy,
    verify_release_log,
)
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.tariffs.profiles import reference_profiles
from meterhub.utility.forecasting import dp_forecast_next, pearson
from meterhub.utility.settlement import HubRefused
from test_settlement import Hub


def _weights(n: int, k: int = 4, seed: int = 0) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    return {f"p{i}": [int(x) for x in rng.integers(1, 1000, n)] for i in range(k)}


def test_utilities_rank_the_profiles_as_pearson() -> None:
    rng = np.random.default_rng(1)
    w = _weights(96, 6)
    m = [int(x) for x in rng.integers(0, 3000, 96)]
    u = utilities(m, w, 10**9)
    n, e, s = 96, float(sum(m)), float(sum(x * x for x in m))
    r = {k: pearson(n, e, s, float(sum(v)), float(sum(x * x for x in v)), float(sum(a * b for a, b in zip(v, m, strict=True))))
         for k, v in w.items()}
    assert max(u, key=u.get) == max(r, key=r.get)
    assert sorted(u, key=u.get) == sorted(r, key=r.get)


@pytest.mark.parametrize("unit", [1, 3, 24])
def test_class_sensitivity_bounds_every_change_of_one_unit(unit: int) -> None:
    # Brute force: move any window of `unit` hours anywhere in [0, clip]; no utility
    # moves by more than the stated sensitivity, and some change comes close to it.
    rng = np.random.default_rng(unit)
    w = _weights(48, 3, unit)
    clip = 1000
    bound = class_sensitivity(w, clip, unit)
    base = [int(x) for x in rng.integers(0, clip + 1, 48)]
    u0 = utilities(base, w, clip)
    worst = 0.0
    for start in range(48 - unit + 1):
        for _ in range(20):
            m = list(base)
            for h in range(start, start + unit):
                m[h] = int(rng.choice([0, clip]))
            u1 = utilities(m, w, clip)
            worst = max(worst, max(abs(u1[k] - u0[k]) for k in w))
    assert worst <= bound * (1 + 1e-9)
    assert worst >= 0.5 * bound


def test_opendp_refuses_a_scale_below_the_epsilon() -> None:
    noise = OpenDPNoise()
    assert isinstance(noise.laplace_int(1000, 100.0, 100, 1.0), int)
    with pytest.raises(DpError):
        noise.laplace_int(1000, 50.0, 100, 1.0)  # spends 2
    with pytest.raises(DpError):
        noise.noisy_max([1.0, 2.0], 1.0, 1.0, 1.0)  # not monotone: spends 2


def test_seeded_noise_has_the_discrete_laplace_spread() -> None:
    noise = SeededNoise(3)
    b = 20.0
    x = np.array([noise.laplace_int(0, b, 1, 1 / b) for _ in range(20000)])
    q = math.exp(-1 / b)
    assert abs(x.mean()) < 1.0
    assert abs(x.var() / (2 * q / (1 - q) ** 2) - 1) < 0.05


def test_large_epsilon_is_the_exact_answer_small_is_noisy() -> None:
    w = _weights(672, 5, 2)
    rng = np.random.default_rng(4)
    m = [int(x) for x in rng.integers(0, 2000, 672)]
    u = utilities(m, w, 5000)
    sharp = dp_forecast(m, w, DpParams(100.0), OpenDPNoise())
    assert sharp["class"] == max(u, key=u.get)
    assert abs(sharp["energy_wh"] - sum(m)) < 50 * 5000 / 50
    errs = [abs(dp_forecast(m, w, DpParams(0.1), SeededNoise(i))["energy_wh"] - sum(m)) for i in range(50)]
    assert np.median(errs) > 5000  # scale 1e5 Wh at epsilon 0.05 for the energy


def test_params_are_checked() -> None:
    for bad in [dict(epsilon=0.0), dict(epsilon=float("inf")), dict(epsilon=1.0, clip_wh=0),
                dict(epsilon=1.0, unit_hours=0)]:
        with pytest.raises(DpError):
            DpParams(**bad)  # type: ignore[arg-type]


def test_policy_dp_section_and_hard_limit() -> None:
    p = default_policy()
    assert p.limits["dp"] == {"epsilon_milli_per_period": 1000, "clip_wh": 5000, "unit_hours": 1}
    assert p.entitled("grid-operator", "dp-forecast") and not p.entitled("supplier", "dp-forecast")
    with pytest.raises(PolicyError):
        default_policy(dp={"epsilon_milli_per_period": 20000})
    with pytest.raises(PolicyError):
        default_policy(dp={"unit_hours": 0})


# --------------------------------------------------------------------------- through the card


def _day(d: dt.date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def _hub(tmp_path, **dp_limits):
    h = make_history(start=dt.date(2027, 3, 22), n_days=2, seed=7)
    pol = default_policy(anchor=h.start, days=2, dp=dp_limits) if dp_limits else None
    hub = Hub(tmp_path / "hub.sqlite", h, policy=pol)
    profiles = reference_profiles(h.start, 2)
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for p in profiles:
        mb.push_series(p)
    hub.feed()
    ids = ",".join(p.series.series_id for p in profiles).encode()
    return h, hub, ids


def test_dp_forecast_through_the_card_and_its_budget(tmp_path) -> None:
    h, hub, ids = _hub(tmp_path)
    first, last = h.start, h.start + dt.timedelta(days=1)
    period = _day(first) + _day(last)
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    # Over the period's budget (1.0 by default): refused, nothing spent.
    with pytest.raises(HubRefused) as exc:
        mb.request(b"\x22" + period + (1500).to_bytes(2, "big") + ids, "dp forecast")
    assert exc.value.sw == 0x6A84
    req = b"\x22" + period + (800).to_bytes(2, "big") + ids
    raw = mb.request(req, "dp forecast")
    rel = DpForecastRelease.from_json(raw)
    assert rel.to_json().encode() == raw  # the applet writes with the class the forecaster reads with
    assert rel.meter_id == h.registration.meter_id and rel.epsilon_milli == 800
    assert (rel.clip_wh, rel.unit_hours, rel.hours) == (5000, 1, 48)
    assert rel.klass in ids.decode().split(",")
    exact = sum(m for day in h.readings for m in day)
    assert abs(rel.energy_wh - exact) < 60 * 5000 / 0.4  # 60 noise scales
    # A re-ask answers the same bytes (no fresh noise to average away) ...
    assert hub.mailbox("grid-operator", PROFILING_APP_AID).request(req, "dp forecast") == raw
    # ... and a second release for the period is refused whatever its epsilon.
    with pytest.raises(HubRefused) as exc:
        hub.mailbox("grid-operator", PROFILING_APP_AID).request(
            b"\x22" + period + (100).to_bytes(2, "big") + ids, "dp forecast")
    assert exc.value.sw == 0x6985


def test_dp_forecast_uses_the_policy_clip_and_unit(tmp_path) -> None:
    h, hub, ids = _hub(tmp_path, epsilon_milli_per_period=4000, clip_wh=800, unit_hours=3)
    period = _day(h.start) + _day(h.start + dt.timedelta(days=1))
    rel = DpForecastRelease.from_json(hub.mailbox("grid-operator", PROFILING_APP_AID).request(
        b"\x22" + period + (4000).to_bytes(2, "big") + ids, "dp forecast"))
    assert (rel.clip_wh, rel.unit_hours, rel.epsilon_milli) == (800, 3, 4000)


def test_dp_release_parser_rejects_tampering() -> None:
    good = {"format": "meterhub-dp-forecast/1", "meter_id": "m", "period_from": "2027-03-22",
            "period_to": "2027-03-23", "hours": 48, "energy_wh": -5, "class": "a", "profiles": ["a", "b"],
            "versions": {"a": 1, "b": 1}, "epsilon_milli": 500, "clip_wh": 5000, "unit_hours": 1,
            "applet_aid": "A0", "code_hash": "00"}
    assert dp_forecast_next(DpForecastRelease.from_json(json.dumps(good)), [1.0, 2.0], 3.0) == [0.0, 0.0]
    for change in [{"class": "c"}, {"versions": {"a": 1}}, {"energy_wh": 1.5}, {"hours": -1}, {"extra": 1}]:
        with pytest.raises(ValueError):
            DpForecastRelease.from_json(json.dumps({**good, **change}))


def test_dp_release_json_is_the_applets_encoding() -> None:
    """to_json gives the bytes the applet wrote before the class had an encoder: the
    release dict, sorted keys, no spaces."""
    d = {"format": "meterhub-dp-forecast/1", "meter_id": "m-7", "period_from": "2027-03-01",
         "period_to": "2027-03-31", "hours": 743, "energy_wh": -12, "class": "h0", "profiles": ["h0", "g0"],
         "versions": {"h0": 2, "g0": 1}, "epsilon_milli": 800, "clip_wh": 5000, "unit_hours": 1,
         "applet_aid": "F04D480050520101", "code_hash": "ab" * 32}
    raw = json.dumps(d, sort_keys=True, separators=(",", ":"))
    assert DpForecastRelease.from_json(raw).to_json() == raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_dp_release_parser_total(raw) -> None:
    try:
        DpForecastRelease.from_json(raw)
    except ValueError:
        pass


def test_strict_preset_refuses_exact_scores_but_gives_the_dp_forecast(tmp_path) -> None:
    from meterhub.policy.model import STRICT_ENTITLEMENTS

    h = make_history(start=dt.date(2027, 3, 22), n_days=2, seed=7)
    hub = Hub(tmp_path / "hub.sqlite", h, policy=default_policy(anchor=h.start, days=2,
                                                                entitlements=STRICT_ENTITLEMENTS))
    profiles = reference_profiles(h.start, 2)
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for p in profiles:
        mb.push_series(p)
    hub.feed()
    ids = ",".join(p.series.series_id for p in profiles).encode()
    period = _day(h.start) + _day(h.start + dt.timedelta(days=1))
    with pytest.raises(HubRefused) as exc:
        hub.mailbox("grid-operator", PROFILING_APP_AID).request(b"\x20" + period + ids, "scores")
    assert exc.value.sw == 0x6982
    rel = DpForecastRelease.from_json(hub.mailbox("grid-operator", PROFILING_APP_AID).request(
        b"\x22" + period + (1000).to_bytes(2, "big") + ids, "dp forecast"))
    assert rel.epsilon_milli == 1000


# --------------------------------------------------------------------------- the guard's epsilon account


class EpsilonProbe(Applet):
    """Test applet: commits a release of ``kind`` for ``day`` (.. ``last``) spending ``eps`` milli-epsilon."""

    @ins(0x51, cla=0x80)
    def release(self, apdu: CommandAPDU) -> bytes:
        req = json.loads(bytes(apdu.data))
        port = self.ctx.get_shareable(GUARD_AID)
        day = dt.date.fromisoformat(req["day"])
        last = dt.date.fromisoformat(req.get("last", req["day"]))
        again = port.begin(req["kind"], day, last, bytes(apdu.data), chunked=False)
        if again is not None:
            return again
        return port.commit(req["kind"], day, last, bytes(apdu.data), b"{}", functionals=0, chunked=False,
                           epsilon_milli=req["eps"])


register_applet_class("tests.epsilon-probe/1", EpsilonProbe)


def test_guard_charges_epsilon_only_to_dp_releases_and_refuses_over_the_budget() -> None:
    d0 = dt.date(2027, 5, 1)
    card = Card(None)
    provision_test_guard(card, cycle_policy(d0, 1))
    card.registry.install_applet("tests.epsilon-probe/1", PROBE, sd_aid=RECIPIENT_SDS["grid-operator"])
    card.power_on()
    card.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(PROBE)).to_bytes())

    def ask(kind: str, day: int, eps: int) -> int:
        body = json.dumps({"kind": kind, "day": (d0 + dt.timedelta(days=day)).isoformat(), "eps": eps}).encode()
        return ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0x80, 0x51, 0, 0, body, le=256).to_bytes())).sw

    assert ask("scores", 0, 100) == 0x6A80  # an exact kind spends no epsilon
    assert ask("dp-forecast", 0, 0) == 0x6A80  # a DP release spends some
    assert ask("dp-forecast", 0, 1001) == 0x6A84  # over the default 1.0 per period
    assert ask("dp-forecast", 0, 1000) == 0x9000
    assert ask("dp-forecast", 0, 1) == 0x6985  # one per period and kind
    assert ask("dp-forecast", 1, 700) == 0x9000  # the next day is the next period (1-day cycle)
    g = GuardClient(card.transmit)
    g.select()
    _, head = g.head()
    entries = verify_release_log(g.raw_entries(), head, policies={1: cycle_policy(d0, 1)})
    assert [e.kind for e in entries[1:]] == ["dp-forecast", "dp-forecast"]
    assert all(e.functionals == 0 for e in entries[1:])
    assert [e.epsilon_milli for e in entries[1:]] == [1000, 700]  # the auditor sees the epsilon


PROBE = "F04D4800504C0199"


def _probe_card(policy):
    card = Card(None)
    customer = provision_test_guard(card, policy)
    card.registry.install_applet("tests.epsilon-probe/1", PROBE, sd_aid=RECIPIENT_SDS["grid-operator"])
    card.power_on()
    return card, customer


def _ask(card, kind: str, first: dt.date, last: dt.date, eps: int) -> int:
    card.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(PROBE)).to_bytes())
    body = json.dumps({"kind": kind, "day": first.isoformat(), "last": last.isoformat(), "eps": eps}).encode()
    return ResponseAPDU.from_bytes(card.transmit(CommandAPDU(0x80, 0x51, 0, 0, body, le=256).to_bytes())).sw


def test_a_cycle_change_gives_no_fresh_epsilon_over_charged_days() -> None:
    """Epsilon is charged per calendar time from the log (policy.log.over_budget), as the
    functionals are: after the customer shortens the cycle, the days of the spent 2-day
    period stay spent (a release over them is refused; the one-release-per-kind overlap
    rule refuses it first); the next uncharged day has its budget, and the log the
    auditor checks carries both releases' epsilon."""
    d0 = dt.date(2027, 5, 3)
    card, customer = _probe_card(cycle_policy(d0, 2))
    assert _ask(card, "dp-forecast", d0, d0 + dt.timedelta(days=1), 1000) == 0x9000
    g = GuardClient(card.transmit)
    g.select()
    g.set_policy(sign_policy(cycle_policy(d0, 1, version=2), customer))
    assert _ask(card, "dp-forecast", d0 + dt.timedelta(days=1), d0 + dt.timedelta(days=1), 1) != 0x9000
    assert _ask(card, "dp-forecast", d0 + dt.timedelta(days=2), d0 + dt.timedelta(days=2), 1001) == 0x6A84
    assert _ask(card, "dp-forecast", d0 + dt.timedelta(days=2), d0 + dt.timedelta(days=2), 1000) == 0x9000
    g.select()
    _, head = g.head()
    entries = verify_release_log(g.raw_entries(), head,
                                 policies={1: cycle_policy(d0, 2), 2: cycle_policy(d0, 1, version=2)})
    assert [(e.kind, e.epsilon_milli) for e in entries] == [("policy", 0), ("dp-forecast", 1000), ("policy", 0),
                                                           ("dp-forecast", 1000)]


def _chain(entries: list[LogEntry]) -> tuple[list[bytes], bytes]:
    raws = [e.canonical_bytes() for e in entries]
    h = bytes(32)
    for r in raws:
        h = chain_hash(h, r)
    return raws, h


def test_the_auditor_checks_the_epsilon_budget_on_a_forged_log() -> None:
    d0 = dt.date(2027, 5, 3)
    pol = {1: cycle_policy(d0, 1)}
    head = LogEntry(0, "policy", "customer", "", "", 1, GUARD_AID, "", "", 0)

    def dp(seq: int, day: int, eps: int, kind: str = "dp-forecast") -> LogEntry:
        d = (d0 + dt.timedelta(days=day)).isoformat()
        return LogEntry(seq, kind, "grid-operator", d, d, 1, "AA", "r", "o", 0, epsilon_milli=eps)

    verify_release_log(*_chain([head, dp(1, 0, 1000), dp(2, 1, 1000)]), policies=pol)
    with pytest.raises(LogError, match="epsilon budget"):  # over the policy's 1.0 per period
        verify_release_log(*_chain([head, dp(1, 0, 1000), dp(2, 1, 1001)]), policies=pol)
    for bad in (dp(1, 0, 0), dp(1, 0, 5, kind="scores")):  # a DP release spends epsilon, nothing else does
        with pytest.raises(LogError, match="positive epsilon"):
            verify_release_log(*_chain([head, bad]), policies=pol)
    # Entries without epsilon keep their bytes (the field is absent, not 0) and still parse;
    # an explicit 0 or a non-integer is refused.
    old = dp(1, 0, 0, kind="scores").canonical_bytes()
    assert b"epsilon" not in old and LogEntry.from_bytes(old).epsilon_milli == 0
    for junk in (b'"epsilon_milli":0,', b'"epsilon_milli":true,', b'"epsilon_milli":-1,', b'"epsilon_milli":"5",'):
        with pytest.raises(LogError):
            LogEntry.from_bytes(old.replace(b'"format"', junk + b'"format"'))
    assert LogEntry.from_bytes(dp(1, 0, 700).canonical_bytes()).epsilon_milli == 700


# --------------------------------------------------------------------------- the grid operator's call and CLI


def test_grid_operator_requests_and_checks_a_dp_forecast_and_the_cli_verifies_it(tmp_path, capsys) -> None:
    from meterhub.applets.profiling import CLASS_NAME
    from meterhub.cli import main
    from meterhub.utility.forecasting import request_dp_forecast, verify_dp_release
    from meterhub.utility.settlement import expected_code_hash

    h, hub, ids = _hub(tmp_path)
    first, last = h.start, h.start + dt.timedelta(days=1)
    pol = default_policy(anchor=h.start, days=2)
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    rel = request_dp_forecast(mb, first, last, 600, ids.decode().split(","), pol,
                              code_hash=expected_code_hash(CLASS_NAME))
    assert rel.epsilon_milli == 600 and rel.meter_id == h.registration.meter_id
    raw = hub.mailbox("grid-operator", PROFILING_APP_AID).request(
        b"\x22" + _day(first) + _day(last) + (600).to_bytes(2, "big") + ids, "dp forecast")  # the same bytes again
    (tmp_path / "rel.json").write_bytes(raw)
    (tmp_path / "pol.json").write_text(json.dumps(pol.to_dict()))
    argv = ["utility", "forecast", "--dp-release", str(tmp_path / "rel.json"), "--policy", str(tmp_path / "pol.json"),
            "--profiles", ids.decode()]
    assert main(argv) == 0
    assert "epsilon 0.6" in capsys.readouterr().out
    # The default policy's monthly cycle: two days are not one of its periods.
    assert main(argv[:4]) == 1
    assert "not one period" in capsys.readouterr().out
    # A release the policy would not allow is rejected (exit 1), each field named.
    doc = json.loads(raw)
    for change, why in [({"epsilon_milli": 1001}, "epsilon"), ({"clip_wh": 4000}, "clip"), ({"unit_hours": 2}, "clip"),
                        ({"hours": 30}, "hours"), ({"code_hash": "00" * 32}, "code hash"),
                        ({"applet_aid": "A000"}, "applet")]:
        (tmp_path / "bad.json").write_text(json.dumps({**doc, **change}))
        assert main([*argv[:2], "--dp-release", str(tmp_path / "bad.json"), *argv[4:]]) == 1
        assert why in capsys.readouterr().out
    with pytest.raises(ValueError, match="profiles"):
        verify_dp_release(rel, pol, applet_aid=PROFILING_APP_AID, code_hash=expected_code_hash(CLASS_NAME),
                          asked=["p0"])
    # Unreadable input is a usage error (exit 2), not a traceback.
    assert main([*argv[:2], "--dp-release", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "junk.json").write_text("{")
    assert main([*argv[:4], "--policy", str(tmp_path / "junk.json")]) == 2


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**40), st.sampled_from(["", "2027-05-01"]),
       st.one_of(st.none(), st.integers(-5, 5), st.booleans(), st.text(max_size=3), st.floats(allow_nan=False)))
def test_log_entry_epsilon_round_trips_and_junk_is_a_log_error(eps, support, junk) -> None:
    e = LogEntry(3, "dp-forecast", "grid-operator", "2027-05-02", "2027-05-02", 1, "AA", "r", "o", 0,
                 support_from=support, epsilon_milli=eps)
    raw = e.canonical_bytes()
    assert LogEntry.from_bytes(raw) == e and (b"epsilon_milli" in raw) == (eps > 0)
    d = json.loads(raw)
    d["epsilon_milli"] = junk
    forged = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    try:
        parsed = LogEntry.from_bytes(forged)
    except LogError:
        return
    assert isinstance(junk, int) and not isinstance(junk, bool) and junk > 0 and parsed.epsilon_milli == junk
