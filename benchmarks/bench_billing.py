"""Billing end to end: meter commit/chain/sign, hub bill, utility verification.

Prints each figure next to baselines timed in the same run, alternately (A, B,
A, B, ...), as medians with their run count (benchmarks/_bench.py). Targets
(issue 2, one core): meter >= 10,000 readings/s; hub monthly bill over 2,880
readings <= 5 ms; utility verification of one monthly bill (2,880 commitments,
30 batch signatures) <= 15 ms median.

Utility verification is timed from the 33-byte commitments as uploaded (and
stored in the ``c33`` column), decoding included. Ingest also stores each day
uncompressed (65 bytes) once, which later verifications decode about 5x faster:
that conversion is timed on its own line and the verification from the 65-byte
form on another. The headline ratio is against the competent baseline on
coincurve (group the readings by price band, one ``combine_keys`` per band, one
multiplication per band); the per-reading scalar multiplication and a 2048-bit
Schnorr group follow as further lines. The physical-limit line times only the
unavoidable native work: decoding the points, one native sum and one
multiplication per band, and the 30 signature checks.

Run (one core): taskset -c 0 .venv/bin/python benchmarks/bench_billing.py
"""

from __future__ import annotations

import hashlib
import random
import secrets
import sys
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import gmpy2
from coincurve import PublicKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT
from cryptography.hazmat.primitives.asymmetric import dsa
from cryptography.utils import CryptographyDeprecationWarning

from _bench import Timing, alternate, header, row
from meterhub.crypto import ecdsa
from meterhub.crypto.group import G, H, Point, base_mul, msm_encoded
from meterhub.hub.billing import bill_statement, linear_bill
from meterhub.meter.device import Meter, chain_head
from meterhub.model.formats.statements import BillStatement
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts, range_starts
from meterhub.tariffs import Tariff, example_signed_tariff
from meterhub.utility.store import UtilityStore
from meterhub.utility.verifier import DayCommitments, MeterRegistration, verify_bill

START = date(2027, 4, 1)
DAYS = 30
TZ = "Europe/Berlin"


def month_readings(seed: int = 7) -> list[list[int]]:
    rng = random.Random(seed)
    return [
        [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in day_starts(START + timedelta(days=d), TZ, 15)]
        for d in range(DAYS)
    ]


def bench_meter(readings: list[list[int]]) -> None:
    n = sum(len(d) for d in readings)

    def ours() -> None:
        m = Meter("bench", ecdsa.generate_signing_key())
        for d, day in enumerate(readings):
            m.record_day(START + timedelta(days=d), day)

    key = ecdsa.generate_signing_key()
    g_pk, h_pk = base_mul(1).public_key, H.public_key

    def baseline() -> None:
        # Generic scalar multiplications for both terms and one signature per reading.
        for day in readings:
            for m in day:
                r = secrets.randbelow(2**255) + 1
                terms = [h_pk.multiply(r.to_bytes(32, "big"))]
                if m:
                    terms.append(g_pk.multiply(m.to_bytes(32, "big")))
                c = PublicKey.combine_keys(terms).format()
                ecdsa.sign(key, c)

    r = alternate({"ours": ours, "baseline": baseline}, runs=5)
    t, tb = r["ours"], r["baseline"]
    row("meter: commit + chain + daily batch signature", f"{n / t.median:,.0f} rd/s",
        f"target >= 10,000/s (cpu {n / t.cpu_median:,.0f} rd/s); {t.note}")
    row("  baseline: generic mults + one ECDSA signature per reading", f"{n / tb.median:,.0f} rd/s",
        f"ratio {tb.median / t.median:.2f}x (cpu {n / tb.cpu_median:,.0f} rd/s, "
        f"{tb.cpu_median / t.cpu_median:.2f}x); {tb.note}")


def make_month(readings):
    tariff = example_signed_tariff().tariff
    meter = Meter("bench", ecdsa.generate_signing_key())
    records = [meter.record_day(START + timedelta(days=d), day) for d, day in enumerate(readings)]
    starts = range_starts(START, DAYS, TZ, 15)
    prices = tariff.prices_for(starts)
    openings = [o for r in records for o in r.openings]
    st = bill_statement(
        meter_id="bench", tariff=tariff, period_from=START, period_to=START + timedelta(days=DAYS - 1),
        first_index=0, prices=prices, openings=openings,
    )
    reg = MeterRegistration("bench", meter.signing_key.public_key(), TZ, 15)
    # As uploaded and stored (c33): the signed batch and the 33-byte commitments.
    wire = [DayCommitments(r.batch, r.commitments) for r in records]
    return tariff, starts, prices, openings, st, reg, wire


def ingest_decompress(day: DayCommitments) -> DayCommitments:
    """What ingest does once per day (utility/store.py ``ingest_day``): keep the
    commitments also uncompressed, so that every later verification decodes faster."""
    c33 = day.c33
    c65 = b"".join(Point.from_bytes(c33[k : k + 33]).to_bytes_uncompressed() for k in range(0, len(c33), 33))
    return DayCommitments(day.batch, c33, day.indices, c65)


class MonthIngest:
    """The utility's whole ingest of the month's 30 uploads (utility/store.py
    ``ingest_day``: batch signature, index checks, the 33 -> 65 byte conversion, one
    SQLite transaction per day) into a fresh store each call, its creation included."""

    def __init__(self, reg: MeterRegistration, wire: list[DayCommitments], tmp: Path) -> None:
        self.uploads = [DayUpload(dc.batch, encode_records(dc.batch.batch.first_index, dc.c33)) for dc in wire]
        self.key = ecdsa.public_bytes(reg.public_key)
        self.reg, self.tmp, self.calls = reg, tmp, 0

    def __call__(self) -> None:
        self.calls += 1
        store = UtilityStore(self.tmp / f"ingest{self.calls}.sqlite")
        try:
            store.register_meter(self.reg.meter_id, self.key, self.reg.tz, self.reg.interval_minutes)
            for up in self.uploads:
                res = store.ingest_day(up)
                assert res.accepted, res.reason
        finally:
            store.close()


def bench_hub(tariff: Tariff, starts, openings, readings) -> None:
    flat = [m for d in readings for m in d]

    def ours() -> None:
        fresh = Tariff.from_dict(tariff.to_dict())  # cold price-table cache, as for a new tariff
        linear_bill(fresh.period_prices(START, DAYS, TZ, 15), openings)

    prices = tariff.prices_for(starts)

    def baseline() -> None:
        sum(t * m for t, m in zip(prices, flat, strict=True))

    r = alternate(
        {"ours": ours, "sums": lambda: linear_bill(prices, openings), "plain": baseline}, runs=31
    )
    t, t_only, tb = r["ours"], r["sums"], r["plain"]
    row(f"hub: monthly bill over {len(openings)} readings (price lookup incl.)", t.ms(),
        f"target <= 5 ms ({t.cpu_ms()}); {t.note}")
    row("  of which bill and blinding sums alone", t_only.ms(), f"({t_only.cpu_ms()}); {t_only.note}")
    row("  baseline: plain bill from raw readings (no blinding)", tb.ms(),
        f"privacy overhead {t_only.median / tb.median:.1f}x ({tb.cpu_ms()}, "
        f"{t_only.cpu_median / tb.cpu_median:.1f}x); {tb.note}")


def _shared_checks(st: BillStatement, reg: MeterRegistration, days, tariff: Tariff) -> list[int]:
    """What every verifier does besides the commitment check, as :func:`verify_bill` does
    it: batch signatures, chain heads, and the prices from the same (cold) price tables."""
    for dc in days:
        b = dc.batch.batch
        assert dc.batch.verify(reg.public_key)
        assert chain_head(b.prev_head, b.first_index, dc.c33) == b.head
    return tariff.period_prices(st.period_from, len(days), reg.tz, reg.interval_minutes)


def _rhs(st: BillStatement) -> bytes:
    return PublicKey.combine_keys([base_mul(st.energy_charge).public_key, (H * st.blinding).public_key]).format()


def banded_core(prices: list[int], blob: bytes, width: int = 33) -> PublicKey:
    """The competent coincurve version: readings grouped by price band, each band's
    commitments summed by one ``combine_keys`` (native), one multiplication per band."""
    bands: dict[int, list[PublicKey]] = {}
    for k, t in enumerate(prices):
        if t:
            pk = PublicKey(blob[width * k : width * (k + 1)])
            band = bands.get(t)
            if band is None:
                bands[t] = [pk]
            else:
                band.append(pk)
    return PublicKey.combine_keys(
        [PublicKey.combine_keys(pks).multiply(t.to_bytes(32, "big")) for t, pks in bands.items()]
    )


def banded_verify(st, reg, days, tariff, width: int = 33) -> bool:
    prices = _shared_checks(st, reg, days, tariff)
    blob = b"".join((dc.c33 if width == 33 else dc.c65) or b"" for dc in days)
    return banded_core(prices, blob, width).format() == _rhs(st)


def naive_core(prices: list[int], blob33: bytes) -> PublicKey:
    """One scalar multiplication per reading."""
    return PublicKey.combine_keys(
        [PublicKey(blob33[33 * k : 33 * k + 33]).multiply(t.to_bytes(32, "big")) for k, t in enumerate(prices) if t]
    )


def naive_verify(st, reg, days, tariff) -> bool:
    prices = _shared_checks(st, reg, days, tariff)
    return naive_core(prices, b"".join(dc.c33 for dc in days)).format() == _rhs(st)


class PhysicalLimit:
    """Only the native work no verifier can avoid, with the Python around it cut to
    the bone: each point parsed by ``secp256k1_ec_pubkey_parse`` (width 33: with the
    square root that decompression costs), one ``secp256k1_ec_pubkey_combine`` and one
    ``secp256k1_ec_pubkey_tweak_mul`` per price band over pointer arrays prepared in
    advance, and the 30 batch signature checks. No price lookup, chain hashing or
    grouping (prepared outside the timed call)."""

    def __init__(self, prices: list[int], blob: bytes, width: int, days, reg) -> None:
        n = len(prices)
        self.ctx = GLOBAL_CONTEXT.ctx
        self.blob = blob  # keep the buffer alive
        self.arr = ffi.new("secp256k1_pubkey[]", n)
        buf = ffi.from_buffer(blob)
        self.parse_args = [(self.arr + k, buf + width * k) for k in range(n)]
        self.width = width
        by_band: dict[int, list[int]] = {}
        for k, t in enumerate(prices):
            if t:
                by_band.setdefault(t, []).append(k)
        self.bands = [
            (ffi.new("secp256k1_pubkey *[]", [self.arr + k for k in ks]), len(ks), ffi.new("secp256k1_pubkey *"), t.to_bytes(32, "big"))
            for t, ks in by_band.items()
        ]
        self.batches = [dc.batch for dc in days]
        self.key = reg.public_key

    def __call__(self) -> None:
        parse, ctx, w = lib.secp256k1_ec_pubkey_parse, self.ctx, self.width
        for a, b in self.parse_args:
            if not parse(ctx, a, b, w):
                raise ValueError("point does not decode")
        combine, tweak_mul = lib.secp256k1_ec_pubkey_combine, lib.secp256k1_ec_pubkey_tweak_mul
        for ptrs, cnt, out, t in self.bands:
            if not combine(ctx, out, ptrs, cnt) or not tweak_mul(ctx, out, t):
                raise ValueError("band sums to the identity")
        for b in self.batches:
            if not b.verify(self.key):
                raise ValueError("signature does not verify")

    def result(self) -> bytes:
        """The sum over bands, to check the limit computes what the verifier does."""
        return PublicKey.combine_keys([PublicKey(out) for _, _, out, _ in self.bands]).format()


class SchnorrPedersen:
    """Pedersen commitments in a 2048-bit prime-order subgroup (Jawurek et al., PETS 2011 setting)."""

    def __init__(self) -> None:
        with warnings.catch_warnings():  # DSA parameters only: a classic Schnorr group
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            nums = dsa.generate_parameters(key_size=2048).parameter_numbers()
        self.p, self.q, self.g = gmpy2.mpz(nums.p), gmpy2.mpz(nums.q), gmpy2.mpz(nums.g)
        seed = int.from_bytes(hashlib.sha512(b"meterhub/bench/schnorr-h").digest() * 4, "big") % self.p
        self.h = gmpy2.powmod(seed, (self.p - 1) // self.q, self.p)

    def commit(self, m: int, r: int) -> bytes:
        c = gmpy2.powmod(self.g, m, self.p) * gmpy2.powmod(self.h, r, self.p) % self.p
        return int(c).to_bytes(256, "big")


def schnorr_core(grp: SchnorrPedersen, prices: list[int], blobs: bytes):
    p = grp.p
    acc = gmpy2.mpz(1)
    for k, t in enumerate(prices):
        acc = acc * gmpy2.powmod(gmpy2.mpz(int.from_bytes(blobs[256 * k : 256 * k + 256], "big")), t, p) % p
    return acc


def schnorr_verify(grp: SchnorrPedersen, st, reg, days, tariff, blobs, bill_r) -> bool:
    prices = _shared_checks(st, reg, days, tariff)
    bill, r = bill_r
    return schnorr_core(grp, prices, blobs) == gmpy2.powmod(grp.g, bill, grp.p) * gmpy2.powmod(grp.h, r, grp.p) % grp.p


def _fresh(tariff: Tariff) -> Tariff:
    return Tariff.from_dict(tariff.to_dict())  # cold price tables, as for the first bill on a tariff


def bench_utility(tariff, prices, openings, st, reg, wire, tmp: Path) -> None:
    n = len(prices)
    bands = len(set(prices) - {0})
    blob33 = b"".join(dc.c33 for dc in wire)

    t0 = time.perf_counter()
    grp = SchnorrPedersen()
    q = int(grp.q)
    rs = [secrets.randbelow(q) for _ in openings]
    sblobs = b"".join(grp.commit(o.m, r) for o, r in zip(openings, rs, strict=True))
    bill = sum(t_ * o.m for t_, o in zip(prices, openings, strict=True))
    big_r = sum(t_ * r for t_, r in zip(prices, rs, strict=True)) % q
    setup = time.perf_counter() - t0

    stored = [ingest_decompress(dc) for dc in wire]
    limit33 = PhysicalLimit(prices, blob33, 33, wire, reg)
    limit65 = PhysicalLimit(prices, b"".join(dc.c65 or b"" for dc in stored), 65, stored, reg)
    limit33()
    limit65()
    expect = (G * st.energy_charge + H * st.blinding).to_bytes()
    assert limit33.result() == limit65.result() == expect
    assert verify_bill(st, reg, wire, _fresh(tariff)).ok and verify_bill(st, reg, stored, _fresh(tariff)).ok
    assert banded_verify(st, reg, wire, tariff) and banded_verify(st, reg, stored, tariff, 65)
    assert naive_verify(st, reg, wire, tariff)
    assert schnorr_verify(grp, st, reg, wire, tariff, sblobs, (bill, big_r))

    def ours_wire() -> None:
        v = verify_bill(st, reg, wire, _fresh(tariff))
        assert v.ok, v.reason

    def ours_stored() -> None:
        v = verify_bill(st, reg, stored, _fresh(tariff))
        assert v.ok, v.reason

    r = alternate(
        {
            "ours": ours_wire,
            "banded": lambda: banded_verify(st, reg, wire, _fresh(tariff)),
            "limit": limit33,
            "naive": lambda: naive_verify(st, reg, wire, _fresh(tariff)),
            "schnorr": lambda: schnorr_verify(grp, st, reg, wire, _fresh(tariff), sblobs, (bill, big_r)),
            "stored": ours_stored,
            "banded65": lambda: banded_verify(st, reg, stored, _fresh(tariff), 65),
            "limit65": limit65,
            "ingest": lambda: [ingest_decompress(dc) for dc in wire],
            "ingest_all": MonthIngest(reg, wire, tmp),
        },
        runs=21,
    )
    ours, stored = r["ours"], r["stored"]

    def vs(label: str, base: Timing, against: Timing, what: str = "ratio") -> None:
        """A baseline's figure and its ratio to ``against`` (wall; CPU time in brackets)."""
        row(label, base.ms(), f"{what} {base.median / against.median:.2f}x "
            f"({base.cpu_ms()}, {base.cpu_median / against.cpu_median:.2f}x)")

    print(f"   utility medians of {ours.runs} runs, all variants alternating; ratio = baseline / ours")
    row("utility: verify a monthly bill from the uploaded 33-byte points", ours.ms(),
        f"target <= 15 ms ({ours.cpu_ms()})")
    row(f"  ({n} commitments decoded, 30 batch signatures, chain, fresh tariff)", "")
    vs(f"  baseline: coincurve, {bands} bands, combine_keys + one mult per band", r["banded"], ours)
    vs("  baseline: coincurve, one scalar multiplication per reading", r["naive"], ours)
    vs("  baseline: 2048-bit Schnorr-group Pedersen, gmpy2 powmod", r["schnorr"], ours)
    vs("  physical limit: decode, native sum + mult per band, 30 sigs", r["limit"], ours, "limit / ours")
    row("utility ingest of the month's 30 uploads into a fresh store", r["ingest_all"].ms(),
        f"sigs, indices, conversion, SQLite ({r['ingest_all'].cpu_ms()})")
    row("  of which: keep the points uncompressed too (33 -> 65 bytes)", r["ingest"].ms(),
        f"once per upload, for faster later decoding ({r['ingest'].cpu_ms()})")
    row("  then verify a monthly bill from the 65-byte stored points", stored.ms(), f"({stored.cpu_ms()})")
    vs("  baseline: coincurve banded, from the same 65-byte points", r["banded65"], stored)
    vs("  physical limit from the 65-byte form", r["limit65"], stored, "limit / stored-form verify")
    row("  ingest conversion + one verification", f"{(r['ingest'].median + stored.median) * 1e3:.2f} ms",
        f"vs {ours.ms()} from the 33-byte form")

    # The commitment check alone (what differs between the variants), from the 33-byte form.
    c = alternate(
        {
            "ours": lambda: msm_encoded(prices, blob33, 33),
            "banded": lambda: banded_core(prices, blob33),
            "naive": lambda: naive_core(prices, blob33),
            "schnorr": lambda: schnorr_core(grp, prices, sblobs),
        },
        runs=11,
    )
    print(f"   commitment check alone, medians of {c['ours'].runs} runs, alternating")
    row("commitment check alone: decode 33-byte points, bucketed MSM", c["ours"].ms(), f"({c['ours'].cpu_ms()})")
    vs("  vs coincurve, one combine_keys + one mult per band", c["banded"], c["ours"])
    vs("  vs one scalar multiplication per reading", c["naive"], c["ours"])
    vs("  vs 2048-bit Schnorr group (gmpy2)", c["schnorr"], c["ours"])
    row("  (Schnorr-group baseline setup, not timed above)", f"{setup:.1f} s", "single run")


def main() -> int:
    header("bench_billing: meter, hub and utility (issue 2)")
    readings = month_readings()
    bench_meter(readings)
    tariff, starts, prices, openings, st, reg, wire = make_month(readings)
    bench_hub(tariff, starts, openings, readings)
    with tempfile.TemporaryDirectory(prefix="meterhub-bench-billing-") as tmp:
        bench_utility(tariff, prices, openings, st, reg, wire, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
