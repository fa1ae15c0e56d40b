"""Profile matching: the profiling applet's scores, their verification, Pearson and log-likelihood."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import History
from helpers import SettlementHub as Hub
from meterhub.crypto import ecdsa
from meterhub.hub.secure_element import PROFILING_APP_AID
from meterhub.meter.device import Meter
from meterhub.meter.load import simulate_load
from meterhub.model.timebase import range_starts
from meterhub.tariffs.price_index import dump_series, sign_series
from meterhub.tariffs.profiles import bdew_profile, reference_profiles
from meterhub.utility.forecasting import (
    ProfileScores,
    SampleRelease,
    classify,
    forecast,
    loglik,
    mape,
    match_scores,
    pearson,
    period_weights,
    verify_scores,
    verify_scores_batch,
)
from meterhub.utility.settlement import HubRefused, expected_code_hash
from meterhub.utility.verifier import MeterRegistration

START = date(2027, 3, 22)
CODE_HASH = expected_code_hash("meterhub.applets.profiling/1")


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def business_history(profile: str, days: int = 3) -> History:
    """A simulated business meter recorded by a real meter device."""
    trace = simulate_load("biz-t", START, days, annual_kwh=20000, profile=profile, seed=5)
    meter = Meter("biz-t", ecdsa.generate_signing_key())
    recs, readings = [], []
    for day, first, count in trace.days():
        r = trace.readings_wh[first : first + count]
        readings.append(r)
        recs.append(meter.record_day(day, r))
    reg = MeterRegistration("biz-t", meter.signing_key.public_key(), "Europe/Berlin", 15)
    return History(meter, reg, None, START, recs, readings, None)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    h = business_history("g1")
    hub = Hub(tmp_path_factory.mktemp("hub") / "hub.sqlite", h)
    profiles = reference_profiles(START, 3)
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for p in profiles:
        mb.push_series(p)
    hub.feed()
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    ids = ",".join(p.series.series_id for p in profiles).encode()
    raw = mb.request(b"\x20" + _day(START) + _day(hub.last) + ids, "scores")
    by_id = {p.series.series_id: p.series for p in profiles}
    return h, hub, by_id, ProfileScores.from_json(raw)


def test_scores_verify_and_classify(scored):
    h, _, profiles, sc = scored
    assert verify_scores(sc, h.registration, h.day_commitments(), profiles, code_hash=CODE_HASH).ok
    hourly = [sum(r[k : k + 4]) for r in h.readings for k in range(0, len(r), 4)]
    assert sc.energy_wh == sum(hourly) and sc.squares == sum(x * x for x in hourly)
    weights = period_weights(profiles, range_starts(START, 3, "Europe/Berlin", 60))
    for e in sc.scores:
        assert e.score == sum(a * b for a, b in zip(weights[e.series_id], hourly, strict=True))
    matches = match_scores(sc, weights)
    assert classify(matches) == "bdew-g1"
    # Pearson and the log-likelihood from the aggregates equal the direct computation.
    w = np.array(weights["bdew-h0"], dtype=float)
    x = np.array(hourly, dtype=float)
    m = next(m for m in matches if m.profile == "bdew-h0")
    assert m.r == pytest.approx(np.corrcoef(x, w)[0, 1], rel=1e-9)
    a = x.sum() / w.sum()
    sigma2 = ((x - a * w) ** 2).mean()
    assert m.loglik == pytest.approx(-len(x) / 2 * (math.log(2 * math.pi * sigma2) + 1), rel=1e-9)


@pytest.mark.parametrize("what", ["score", "blinding", "energy", "squares", "squares_blinding", "proof", "profile",
                                  "code", "days"])
def test_tampered_scores_are_rejected(scored, what):
    h, _, profiles, sc = scored
    days = h.day_commitments()
    e0 = sc.scores[0]
    if what == "score":
        sc = dataclasses.replace(sc, scores=(dataclasses.replace(e0, score=e0.score + 1),) + sc.scores[1:])
    elif what == "blinding":
        sc = dataclasses.replace(sc, scores=(dataclasses.replace(e0, blinding=e0.blinding ^ 1),) + sc.scores[1:])
    elif what == "energy":
        sc = dataclasses.replace(sc, energy_wh=sc.energy_wh + 1)
    elif what == "squares":
        sc = dataclasses.replace(sc, squares=sc.squares - 1)
    elif what == "squares_blinding":
        sc = dataclasses.replace(sc, squares_blinding=sc.squares_blinding ^ 1)
    elif what == "proof":
        p = bytearray(sc.squares_proof)
        p[-5] ^= 1
        sc = dataclasses.replace(sc, squares_proof=bytes(p))
    elif what == "profile":
        s = profiles[e0.series_id]
        profiles = dict(profiles)
        profiles[e0.series_id] = dataclasses.replace(s, values=(s.values[0] + 1,) + s.values[1:])
    elif what == "code":
        sc = dataclasses.replace(sc, code_hash="00" * 32)
    else:
        days = days[:2]
    assert not verify_scores(sc, h.registration, days, profiles, code_hash=CODE_HASH).ok


def test_scores_carry_the_short_proof(scored):
    from meterhub.crypto import sumsquares

    _, _, _, sc = scored
    assert sc.squares_proof[0] == sumsquares.VERSION_IPA
    assert len(sc.squares_proof) == sumsquares.proof_size(72)


def _v1_statement(h, sc):
    """The same statement with a version-1 proof (square by square), as older hubs made it."""
    from meterhub.applets.profiling import scores_context
    from meterhub.crypto import rangeproof
    from meterhub.crypto.group import Q
    from meterhub.crypto.pedersen import Opening, commit

    flat = h.openings
    openings = [Opening(sum(o.m for o in flat[k : k + 4]), sum(o.r for o in flat[k : k + 4]) % Q)
                for k in range(0, len(flat), 4)]
    cs = [commit(o.m, o.r)[0] for o in openings]
    ctx = scores_context(sc.meter_id, sc.period_from.isoformat(), sc.period_to.isoformat(), 60)
    proof, _, sq = rangeproof.prove_sum_of_squares(cs, openings, ctx)
    return dataclasses.replace(sc, squares_proof=proof, squares_blinding=sq.r)


def test_version_1_statements_still_verify(scored):
    h, _, profiles, sc = scored
    old = _v1_statement(h, sc)
    assert old.squares_proof[0] == 0x01
    assert verify_scores(old, h.registration, h.day_commitments(), profiles, code_hash=CODE_HASH).ok
    bad = dataclasses.replace(old, squares=old.squares + 1)
    assert not verify_scores(bad, h.registration, h.day_commitments(), profiles, code_hash=CODE_HASH).ok


def test_batch_verification_names_the_bad_statement(scored):
    h, _, profiles, sc = scored
    days = h.day_commitments()
    bad = dataclasses.replace(sc, squares=sc.squares + 1)
    items = [(sc, h.registration, days), (bad, h.registration, days), (sc, h.registration, days),
             (_v1_statement(h, sc), h.registration, days)]
    verdicts = verify_scores_batch(items, profiles, code_hash=CODE_HASH)
    assert [v.ok for v in verdicts] == [True, False, True, True]
    assert all(v.ok for v in verify_scores_batch([items[0], items[2]], profiles, code_hash=CODE_HASH))
    # The same statement for another meter's commitments fails (a proof does not transfer).
    other = business_history("h0")
    assert not verify_scores_batch([(sc, other.registration, other.day_commitments())], profiles)[0].ok


def test_profile_refusals(scored):
    h, hub, profiles, _ = scored
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    s = bdew_profile("g2", START, 3, version=1)
    with pytest.raises(HubRefused) as e:
        mb.push_series(sign_series(s, ecdsa.generate_signing_key()))
    assert e.value.sw == 0x6982
    raw = dump_series(sign_series(dataclasses.replace(s, version=5), ecdsa.generate_signing_key()))
    doc = json.loads(raw)
    del doc["signature"]
    with pytest.raises(HubRefused, match="unsigned") as e:
        mb.push_raw_series(json.dumps(doc).encode(), "unsigned profile")
    assert e.value.sw == 0x6A80
    from meterhub.tariffs.profiles import demo_profile_key

    expired = dataclasses.replace(s, version=9, expires=START + timedelta(days=1))
    with pytest.raises(HubRefused, match="expired"):
        mb.push_series(sign_series(expired, demo_profile_key()))
    # Another request for a period already scored: the guard refuses it (one release
    # per period and kind), before the applet even looks for the unknown profile.
    with pytest.raises(HubRefused) as e:
        mb.request(b"\x20" + _day(START) + _day(hub.last) + b"bdew-zz", "scores")
    assert e.value.sw == 0x6985


def test_statistics_edge_cases():
    assert pearson(3, 3, 3, 6, 14, 6) == 0.0  # constant readings
    assert loglik(0, 1, 1, 1, 1, 1) == -math.inf
    assert forecast([1.0, 2.0], 30.0, 3.0) == [10.0, 20.0]
    assert mape([110.0, 0.0], [100.0, 0.0]) == pytest.approx(10.0)


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parsers_only_raise_value_error(data):
    for parser in (ProfileScores.from_json, SampleRelease.from_json):
        try:
            parser(data)
        except ValueError:
            pass


@given(st.sampled_from(["energy_wh", "squares", "scores", "squares_proof", "energy_blinding", "count"]),
       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=2)))
def test_scores_parser_on_mutated_fields(field, value):
    base = {"format": "meterhub-profile-scores/1", "meter_id": "m", "period_from": "2027-03-22",
            "period_to": "2027-03-22", "first_index": 0, "count": 96, "point_minutes": 60, "applet_aid": "A",
            "code_hash": "00", "energy_wh": 1, "energy_blinding": "0" * 64, "squares": 1,
            "squares_blinding": "0" * 64, "squares_proof": base64.b64encode(b"x").decode(),
            "scores": [{"series_id": "p", "version": 1, "digest": "00" * 32, "score": 1, "blinding": "0" * 64}]}
    ProfileScores.from_json(json.dumps(base))
    base[field] = value
    try:
        ProfileScores.from_json(json.dumps(base))
    except ValueError:
        pass


def test_tampering_is_caught_by_the_batch_equation_warm_or_cold(scored, monkeypatch):
    """A score off by one passes every check but the batch's random linear combination
    (with that equation skipped it would be accepted), and is rejected by it whether the
    customer-month's signatures and points were verified and parsed before or not."""
    from meterhub.crypto import sumsquares
    from meterhub.utility.verifier import clear_shared_caches

    h, _, profiles, sc = scored
    days = h.day_commitments()
    e0 = sc.scores[0]
    bad = dataclasses.replace(sc, scores=(dataclasses.replace(e0, score=e0.score + 1),) + sc.scores[1:])
    items = [(sc, h.registration, days), (bad, h.registration, days)]
    clear_shared_caches()
    cold = [v.ok for v in verify_scores_batch(items, profiles, code_hash=CODE_HASH)]
    warm = [v.ok for v in verify_scores_batch(items, profiles, code_hash=CODE_HASH)]
    assert cold == warm == [True, False]
    monkeypatch.setattr(sumsquares, "check_equations", lambda eqs: True)
    assert [v.ok for v in verify_scores_batch(items, profiles, code_hash=CODE_HASH)] == [True, True]


def test_packed_data_scalars_equal_the_per_hour_sums(scored):
    """The score check's data scalars computed on packed integers (``_data_limbs``) are
    exactly ``c_h + rho_0 + sum_w rho_w w_h`` hour by hour, and a weight that cannot be
    packed (negative) falls back to the per-hour path."""
    from meterhub.crypto.group import Q
    from meterhub.utility import forecasting as fc

    h, _, profiles, sc = scored
    work = fc._prepare_scores(sc, h.registration, h.day_commitments(), profiles, CODE_HASH, None, {})
    n = len(work.hourly)
    link = [(7 * k + 3) ** 5 % (1 << 128) for k in range(n)]
    link_bytes = b"".join(c.to_bytes(16, "big") for c in link)
    rho0, rho = (1 << 127) + 5, [(1 << 128) - 1 - k for k in range(len(work.weights))]
    limbs = fc._data_limbs(work, link_bytes, rho0, rho)
    assert limbs is not None
    got = [int.from_bytes(row.astype("<u8").tobytes(), "little") for row in limbs]
    want = [link[k] + rho0 + sum(r * w[k] for r, w in zip(rho, work.weights, strict=True)) for k in range(n)]
    assert got == want and max(want) < Q
    assert fc._data_limbs(work, link_bytes[:-16], rho0, rho) is None
    neg = dataclasses.replace(work, packed=[*work.packed[:-1], fc._packed([-1] * n)])
    assert neg.packed[-1] is None and fc._data_limbs(neg, link_bytes, rho0, rho) is None


@pytest.mark.parametrize("packed", [True, False])
def test_fast_and_fallback_score_paths_give_the_same_verdicts(scored, monkeypatch, packed):
    """Each tampering (a score, an energy or score blinding, the sum of squares' blinding,
    one byte of the proof) is rejected on the packed-scalar path and on the per-hour
    fallback, alone and in a batch with the honest statement, which passes."""
    from meterhub.utility import forecasting as fc

    h, _, profiles, sc = scored
    days = h.day_commitments()
    if not packed:
        monkeypatch.setattr(fc, "_data_limbs", lambda *a: None)
    e0 = sc.scores[0]
    proof = bytearray(sc.squares_proof)
    proof[200] ^= 1
    bad = [
        dataclasses.replace(sc, scores=(dataclasses.replace(e0, score=e0.score + 1),) + sc.scores[1:]),
        dataclasses.replace(sc, scores=(dataclasses.replace(e0, blinding=e0.blinding + 1),) + sc.scores[1:]),
        dataclasses.replace(sc, energy_blinding=sc.energy_blinding + 1),
        dataclasses.replace(sc, squares_blinding=sc.squares_blinding + 1),
        dataclasses.replace(sc, squares_proof=bytes(proof)),
    ]
    assert verify_scores(sc, h.registration, days, profiles, code_hash=CODE_HASH).ok
    for b in bad:
        assert not verify_scores(b, h.registration, days, profiles, code_hash=CODE_HASH).ok
        vs = verify_scores_batch([(sc, h.registration, days), (b, h.registration, days)], profiles, code_hash=CODE_HASH)
        assert [v.ok for v in vs] == [True, False]


@given(st.lists(st.integers(0, (1 << 128) - 1), min_size=1, max_size=16), st.integers(0, (1 << 128) - 1),
       st.sampled_from([0, 1, (1 << 26) - 1]), st.binary(min_size=16, max_size=16))
def test_data_limbs_carry_at_the_range_limits(scored, rho, rho0, wmax, link):
    """Up to 16 profiles with weights up to the numpy path's limit and 128-bit weights
    and link coefficients: the limbs are the exact integers (every carry propagated)."""
    from meterhub.utility import forecasting as fc

    h, _, profiles, sc = scored
    work = fc._prepare_scores(sc, h.registration, h.day_commitments(), profiles, CODE_HASH, None, {})
    n = len(work.hourly)
    ws = [[(wmax - (k * 7 + j) % 3) if wmax > 2 else wmax for k in range(n)] for j in range(len(rho))]
    fake = dataclasses.replace(work, packed=[fc._packed(w) for w in ws])
    limbs = fc._data_limbs(fake, link * n, rho0, rho)
    assert limbs is not None
    c = int.from_bytes(link, "big")
    want = [c + rho0 + sum(r * w[k] for r, w in zip(rho, ws, strict=True)) for k in range(n)]
    assert [int.from_bytes(row.astype("<u8").tobytes(), "little") for row in limbs] == want
    assert fc._packed([1 << 26]) is None and fc._packed([-1]) is None
