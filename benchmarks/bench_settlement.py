"""Settlement and profile matching: applet outputs for one month, utility verification per customer.

Figures, each next to a baseline timed in the same run:

* hub: the settlement statement for one month of 15-minute readings (2,880), through
  the supplier's SCP03 session (STORE DATA request and chunked answer included);
  baseline: the same two sums from raw readings in plain Python;
* hub: profile scores for 12 profiles plus the proven sum of squares over 720 hours;
  baseline: the 12 scores alone from raw readings (no openings, no proof);
* utility: verify one settlement statement (decoding, 30 batch signatures, chain, two
  multi-scalar multiplications); baseline: the same check with one scalar
  multiplication per reading;
* utility: verify one score statement (sum-of-squares proof, 12 scores + energy in one
  random linear combination); baseline: the 13 linear checks one multi-scalar
  multiplication each (the proof check is common to both and reported separately);
* utility: verify 29 samples (one in 100) in one batch; baseline: one opening at a time.

Run: .venv/bin/python benchmarks/bench_settlement.py
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from _bench import Timing, alternate, header, row
from meterhub.crypto import ecdsa, sumsquares
from meterhub.crypto.group import G, H, Point, msm_encoded
from meterhub.crypto.sampling import commit_nonce, new_nonce, verify_sample_openings
from meterhub.demo.hubs import demo_tsm, series_hub
from meterhub.hub.secure_element import (
    PROFILING_APP_AID,
    SETTLEMENT_APP_AID,
    ReadingsClient,
)
from meterhub.meter.device import Meter
from meterhub.model.timebase import day_starts, range_starts
from meterhub.tariffs.price_index import demo_index_publisher_key, example_price_index, sign_series
from meterhub.tariffs.profiles import reference_profiles
from meterhub.utility.forecasting import ProfileScores, SampleRelease, verify_samples, verify_scores
from meterhub.utility.settlement import (
    AppletMailbox,
    SettlementStatement,
    expected_code_hash,
    settlement_request,
    verify_settlement,
)
from meterhub.utility.verifier import DayCommitments, MeterRegistration

START = date(2027, 4, 1)
DAYS = 30
TZ = "Europe/Berlin"
LAST = START + timedelta(days=DAYS - 1)


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def main() -> None:
    header("settlement and profile matching, one customer, one month of 15-minute readings")
    rng = random.Random(11)
    meter = Meter("bench", ecdsa.generate_signing_key())
    recs, readings = [], []
    for d in range(DAYS):
        day = START + timedelta(days=d)
        r = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in day_starts(day, TZ, 15)]
        readings.append(r)
        recs.append(meter.record_day(day, r))
    flat = [m for r in readings for m in r]
    reg = MeterRegistration("bench", meter.signing_key.public_key(), TZ, 15)
    days = []
    for rec in recs:
        c65 = b"".join(Point.from_bytes(rec.commitments[k : k + 33]).to_bytes_uncompressed()
                       for k in range(0, len(rec.commitments), 33))
        days.append(DayCommitments(rec.batch, rec.commitments, None, c65))
    index = sign_series(example_price_index(START, DAYS), demo_index_publisher_key())
    profiles = reference_profiles(START, DAYS)
    pmap = {p.series.series_id: p.series for p in profiles}

    def build(tmp: str, n: int) -> tuple[Any, bytes, bytes]:
        """A fresh hub with both applets fed the month and the coin toss committed: the
        privacy guard releases each kind once per period (a re-ask answers the stored
        bytes), so every timed release needs a card that has not released yet."""
        card = series_hub(Path(tmp) / f"hub{n}.sqlite", index, profiles, "bench", TZ)
        nonce = new_nonce()
        c = commit_nonce("bench", START, LAST, 100, nonce)
        with demo_tsm(card, "grid-operator") as t:
            hub_commitment = AppletMailbox(t, PROFILING_APP_AID).send(
                b"\x10" + _day(START) + _day(LAST) + (100).to_bytes(2, "big") + c, "commit")
        for aid in (SETTLEMENT_APP_AID, PROFILING_APP_AID):
            rc = ReadingsClient(card.transmit, aid)
            rc.select()
            for rec in recs:
                rc.put_openings(rec.batch.batch.day, rec.first_index, rec.openings)
        return card, nonce, c + hub_commitment

    req = settlement_request(START, LAST, index.series.series_id, 1)
    sreq = b"\x20" + _day(START) + _day(LAST) + ",".join(pmap).encode()
    prices = index.series.values_for(range_starts(START, DAYS, TZ, 15), 15)
    hourly = [sum(flat[k : k + 4]) for k in range(0, len(flat), 4)]
    ws = [p.values_for(range_starts(START, DAYS, TZ, 60), 60) for p in pmap.values()]
    # The privacy guard releases one statement per period and recipient (a re-ask answers
    # the stored bytes), so every timed release runs on a freshly built hub; the hub and
    # the plain computation alternate (A, B, A, B, ...), one pair per fresh hub.
    runs = 5
    t_st: dict[str, list[float]] = {"hub": [], "plain": [], "scores": [], "scores_plain": []}
    c_st: dict[str, list[float]] = {k: [] for k in t_st}

    def timed(name: str, fn: Any) -> Any:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        t_st[name].append(time.perf_counter() - t0)
        c_st[name].append(time.process_time() - c0)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        for n in range(runs):
            card, nonce, coin_bytes = build(tmp, n)
            smb = AppletMailbox(demo_tsm(card, "supplier").open(), SETTLEMENT_APP_AID)
            raw_st = timed("hub", lambda smb=smb: smb.request(req, "settlement"))
            timed("plain", lambda: (sum(flat), sum(p * m for p, m in zip(prices, flat, strict=True))))
            gmb = AppletMailbox(demo_tsm(card, "grid-operator").open(), PROFILING_APP_AID)
            raw_sc = timed("scores", lambda gmb=gmb: gmb.request(sreq, "scores"))
            timed("scores_plain", lambda: [sum(a * b for a, b in zip(w, hourly, strict=True)) for w in ws])
            if n == runs - 1:
                raw_samples = gmb.request(b"\x11" + _day(START) + _day(LAST) + nonce, "samples")
                c, hub_nonce = coin_bytes[:32], coin_bytes[32:]
            card.close()
    tm = {k: Timing(tuple(t_st[k]), tuple(c_st[k])) for k in t_st}
    t_hub, t_plain = tm["hub"].median, tm["plain"].median
    t_scores, t_sc_plain = tm["scores"].median, tm["scores_plain"].median
    row("hub: settlement statement, 2,880 readings, via SCP03", f"{t_hub * 1e3:.2f} ms",
        f"{tm['hub'].cpu_ms()}; plain sums from raw readings {t_plain * 1e3:.2f} ms; {tm['hub'].note}, a fresh hub each")
    row("hub: 12 profile scores + sum of squares (720 h), via SCP03", f"{t_scores * 1e3:.0f} ms",
        f"{tm['scores'].cpu_ms()}; scores alone from raw readings {t_sc_plain * 1e3:.2f} ms; "
        f"{len(raw_sc):,} bytes out; {tm['scores'].note}")

    st = SettlementStatement.from_json(raw_st)
    ch = expected_code_hash("meterhub.applets.settlement/1")
    assert verify_settlement(st, reg, days, index.series, code_hash=ch).ok
    blob = b"".join(dc.c65 for dc in days)
    pts = [Point.from_bytes(blob[k : k + 65]) for k in range(0, len(blob), 65)]

    def naive_settlement() -> bool:
        acc_e, acc_v = Point.identity(), Point.identity()
        for p, c in zip(prices, pts, strict=True):
            acc_e = acc_e + c
            acc_v = acc_v + c * p
        return acc_e == G * st.energy_wh + H * st.energy_blinding and acc_v == G * st.value + H * st.value_blinding

    assert naive_settlement()
    r = alternate({
        "ours": lambda: verify_settlement(st, reg, days, index.series, code_hash=ch),
        "naive": naive_settlement,
    }, runs=7)
    t_v, t_naive = r["ours"].median, r["naive"].median
    row("utility: verify one settlement statement (65-byte stored points)", f"{t_v * 1e3:.2f} ms",
        f"{r['ours'].cpu_ms()}; per-reading scalar mults {t_naive * 1e3:.1f} ms (**{t_naive / t_v:.1f}x**, "
        f"cpu {r['naive'].cpu_median / r['ours'].cpu_median:.1f}x); {r['ours'].note}")

    sc = ProfileScores.from_json(raw_sc)
    chp = expected_code_hash("meterhub.applets.profiling/1")
    assert verify_scores(sc, reg, days, pmap, code_hash=chp).ok
    from meterhub.applets.profiling import scores_context
    from meterhub.crypto.pedersen import Commitment

    hpts = [pts[4 * h] + pts[4 * h + 1] + pts[4 * h + 2] + pts[4 * h + 3] for h in range(len(pts) // 4)]
    ctx = scores_context("bench", START.isoformat(), LAST.isoformat(), 60)
    hblob = b"".join(p.to_bytes_uncompressed() for p in hpts)

    def linear_separately() -> bool:
        ok = msm_encoded([1] * len(hpts), hblob) == G * sc.energy_wh + H * sc.energy_blinding
        for e, w in zip(sc.scores, ws, strict=True):
            ok &= msm_encoded(w, hblob) == G * e.score + H * e.blinding
        return ok

    def linear_batched() -> None:
        import secrets

        from meterhub.crypto.group import msm
        rho = [secrets.randbits(128) | 1 for _ in range(len(ws) + 1)]
        sc_ = [rho[0]] * len(hpts)
        for r_, w in zip(rho[1:], ws, strict=True):
            sc_ = [a + r_ * b for a, b in zip(sc_, w, strict=True)]
        msm(sc_, hpts)

    assert linear_separately()
    r = alternate({
        "all": lambda: verify_scores(sc, reg, days, pmap, code_hash=chp),
        "proof": lambda: sumsquares.verify(
            [Commitment(p) for p in hpts], sc.squares, sc.squares_blinding, sc.squares_proof, ctx
        ),
        "separately": linear_separately,
        "batched": linear_batched,
    }, runs=5)
    t_vs, t_proof, t_sep, t_bat = (r[k].median for k in ("all", "proof", "separately", "batched"))
    row("utility: verify one score statement, everything", f"{t_vs * 1e3:.0f} ms",
        f"{r['all'].cpu_ms()}; of which the sum-of-squares proof {t_proof * 1e3:.0f} ms; {r['all'].note}")
    row("  energy + 12 scores: one random linear combination", f"{t_bat * 1e3:.1f} ms",
        f"13 separate MSMs {t_sep * 1e3:.1f} ms (**{t_sep / t_bat:.1f}x**, "
        f"cpu {r['separately'].cpu_median / r['batched'].cpu_median:.1f}x)")

    rel = SampleRelease.from_json(raw_samples)
    coin = dict(commitment=c, utility_nonce=nonce, hub_commitment=hub_nonce, k=100)
    assert verify_samples(rel, reg, days, **coin).ok

    def one_by_one() -> bool:
        return all(pts[s.index] == G * s.m + H * s.r for s in rel.samples)

    assert one_by_one()
    picked = b"".join(blob[65 * s.index : 65 * s.index + 65] for s in rel.samples)
    r = alternate({
        "all": lambda: verify_samples(rel, reg, days, **coin),
        "one": one_by_one,
        "batched": lambda: verify_sample_openings(rel.samples, picked),
    }, runs=9)
    t_s, t_1, t_b = r["all"].median, r["one"].median, r["batched"].median
    row(f"utility: verify {len(rel.samples)} samples (batches, coin toss, openings)", f"{t_s * 1e3:.2f} ms",
        f"{r['all'].cpu_ms()}; {r['all'].note}")
    row("  the openings alone, one table-backed combine each", f"{t_b * 1e3:.2f} ms",
        f"one by one {t_1 * 1e3:.2f} ms ({t_1 / t_b:.1f}x)")


if __name__ == "__main__":
    main()
