"""Verification of proven (v2) bill statements under non-linear tariffs.

The utility checks, in order, and stops at the first failure with a precise
reason (docs/architecture.md, data flow step 6; Rial and Danezis WPES 2011, section 4):

1. to 4. exactly as :func:`meterhub.utility.verifier.verify_bill` (statement
   names this meter and the customer's tariff id, version and digest; one
   signed, chained, complete batch per day; coverage, standing charge, total),
   by the same code (:func:`meterhub.utility.verifier.check_period`);
5. the statement's tariff kind, currency and sub-unit scale are the tariff's;
6. the proof bundle decodes strictly and matches the statement;
7. the proofs, batched wherever the proof allows it:

   * tiered: every reading's tier proof; their Bulletproofs in one
     multi-scalar multiplication with random weights (Bünz et al. 2018,
     section 6.2), then ``sum P_i == bill G + R H``;
   * inclining-block: the block proof on ``T = sum C_i`` (computed here), then
     ``sum t_i C_i + P == bill G + R H``;
   * polynomial: the square proofs, then
     ``sum a1_i C_i + sum a2_i S_i + (sum a0_i - bill) G - R H == 0`` as one
     multi-scalar multiplication (points bucketed by coefficient);
   * reading ranges (if present, or required): all days' bounded
     Bulletproofs in one batch.

Pure: the caller fetches the data (see :mod:`meterhub.utility.store`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..crypto import bulletproofs as bp
from ..crypto import rangeproof as rp
from ..crypto.group import G, H, Point, PointDecodeError, msm
from ..crypto.pedersen import Commitment
from ..crypto.transcript import ProofError
from ..hub.proving import (
    KIND_CODES,
    ProofBundle,
    ProvenBillStatement,
    range_context,
    reading_context,
    sum_points,
)
from ..tariffs import TariffError
from ..tariffs.nonlinear import KIND_INCLINING_BLOCK, KIND_TIERED, NonLinearTariff
from .verifier import DayCommitments, MeterRegistration, Rejected, Verdict, check_period

__all__ = ["verify_proven_bill"]


def verify_proven_bill(
    statement: ProvenBillStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: NonLinearTariff,
    *,
    require_reading_range: bool = False,
) -> Verdict:
    """Check a v2 statement; returns a :class:`Verdict` naming the first failure.
    Never raises for malformed statements or proofs (they are rejections)."""
    try:
        _verify(statement, meter, days, tariff, require_reading_range)
    except Rejected as rej:
        return Verdict(False, str(rej))
    except ProofError as exc:
        return Verdict(False, f"malformed proof: {exc}")
    except TariffError as exc:
        return Verdict(False, str(exc))
    return Verdict(True)


def _verify(
    st: ProvenBillStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: NonLinearTariff,
    require_range: bool,
) -> None:
    if not isinstance(st, ProvenBillStatement):
        raise Rejected("expected a v2 (proven) bill statement")
    if not isinstance(tariff, NonLinearTariff):
        raise Rejected("the customer's tariff is linear; verify with verifier.verify_bill")
    starts = check_period(st, meter, days, tariff)
    if st.tariff_kind != tariff.kind:
        raise Rejected(f"statement is for a {st.tariff_kind} tariff, the customer's is {tariff.kind}")
    bundle = ProofBundle.from_bytes(st.proof)
    if bundle.kind != st.tariff_kind or bundle.count != st.count or st.tariff_kind not in KIND_CODES:
        raise Rejected("proof bundle does not match the statement (kind or count)")
    if require_range and not bundle.ranges:
        raise Rejected("the reading-range proofs are required but missing")
    try:
        cs = [
            Commitment(Point.from_bytes(dc.c33[k : k + 33]))
            for dc in days
            for k in range(0, len(dc.c33), 33)
        ]
    except PointDecodeError as exc:
        raise Rejected(f"a commitment does not decode: {exc}") from None
    flat = [s for day in starts for s in day]
    ctx = st.context()
    step = meter.interval_minutes

    if tariff.kind == KIND_TIERED:
        bands = tariff.band_indices_for(flat, step)
        tables = [[r.as_tuple() for r in rows] for rows in tariff.tiers]
        items = [
            bp.TierItem(c, tables[b], p, reading_context(ctx, st.first_index + i))
            for i, (c, b, p) in enumerate(zip(cs, bands, bundle.proofs, strict=True))
        ]
        if not bp.verify_tier_batch(items):
            raise Rejected("a tier proof does not verify (reading in the wrong tier, or a forged proof)")
        prices = [bp.tier_price_commitment(p).point for p in bundle.proofs]
        lhs = sum_points(prices)
        if lhs != G * st.energy_charge + H * st.blinding:
            raise Rejected("sum P_i != bill*G + R*H: the bill or its blinding does not match the proven prices")
    elif tariff.kind == KIND_INCLINING_BLOCK:
        (proof,) = bundle.proofs
        total = Commitment(sum_points([c.point for c in cs]))
        rows = [r.as_tuple() for r in tariff.blocks]
        if not bp.verify_tier(total, rows, proof, ctx):
            raise Rejected("the block proof on the committed total does not verify")
        prices = tariff.linear_prices_for(flat, step)
        block = bp.tier_price_commitment(proof).point
        check = msm(
            [*prices, 1, -st.energy_charge, -st.blinding],
            [*(c.point for c in cs), block, G, H],
        )
        if not check.is_identity:
            raise Rejected("sum t_i*C_i + P != bill*G + R*H: the bill or its blinding is wrong")
    else:
        (proof,) = bundle.proofs
        if not rp.verify_sum_of_squares(cs, proof, ctx):
            raise Rejected("the square proofs do not verify")
        squares = rp.square_commitments(len(cs), proof)
        bands = tariff.band_indices_for(flat, step)
        co = [tariff.coefficients[b] for b in bands]
        a0 = sum(c[0] for c in co)
        check = msm(
            [*(c[1] for c in co), *(c[2] for c in co), a0 - st.energy_charge, -st.blinding],
            [*(c.point for c in cs), *(s.point for s in squares), G, H],
        )
        if not check.is_identity:
            raise Rejected("sum a1*C_i + a2*S_i + a0*G != bill*G + R*H: the bill or its blinding is wrong")

    if bundle.ranges:
        if len(bundle.ranges) != len(starts):
            raise Rejected(f"{len(bundle.ranges)} reading-range proofs for {len(starts)} days")
        items_r = []
        pos = 0
        for d, (day, proof) in enumerate(zip(starts, bundle.ranges, strict=True)):
            items_r.append(bp.BatchItem(cs[pos : pos + len(day)], proof, range_context(ctx, d), m_max=tariff.m_max - 1))
            pos += len(day)
        if not bp.verify_batch(items_r):
            raise Rejected(f"a reading lies outside [0, {tariff.m_max - 1}] (range proof fails)")
