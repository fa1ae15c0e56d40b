"""The DR program operator's verification and settlement of event reductions.

For one :class:`meterhub.dr.release.DRRelease` (docs/demand-response.md), first failure
wins (``Rejected`` reason):

1. the release names this meter, this event (id and digest of the signed record the
   VTN sent), the reviewed applet (code hash) under the expected AID;
2. the event day's and every baseline day's signed batch: signature under the meter's
   key, interval count, chain head over the commitments
   (:func:`meterhub.utility.settlement.check_batches`, shared with billing);
3. the commitment to the scaled reduction, formed from the meter's commitments with
   the public coefficients, ``a * sum_{D,E} C - 1000 N * sum_E C_e == S G + R_S H``;
4. the Bulletproof that the adjustment factor ``a`` is the capped ratio, over the
   commitments ``k_A * sum_W C_e + k_X * sum_{D,W} C + const G`` the verifier forms
   (:func:`verify_event`: all customers' proofs of one event in one batch).

Settlement: payment = max(reduction, 0) x the event's price (1e-8 EUR per Wh), per
customer; per event the verified total reduction per feeder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from ..crypto import bulletproofs
from ..crypto.group import G, H, Point, PointDecodeError, msm, msm_encoded
from ..crypto.pedersen import Commitment
from ..dr.event import (
    METHOD_PJM,
    DREvent,
    EventError,
    event_windows,
    pjm_coefficients,
    pjm_selection_bounds,
)
from ..dr.release import (
    DRRelease,
    adjustment_bounds,
    proof_context,
    reduction_coefficients,
)
from .settlement import check_batches
from .verifier import DayCommitments, MeterRegistration, Rejected

__all__ = ["EventSettlement", "VerifiedReduction", "settle_event", "verify_event", "verify_release"]


@dataclass(frozen=True)
class VerifiedReduction:
    meter_id: str
    event_id: str
    reduction: Fraction  # Wh
    adjustment: int  # CAISO: the factor in permille; PJM: the index of the dropped candidate day
    payment: int  # 1e-8 EUR


def _encodings(dc: DayCommitments) -> tuple[bytes, int]:
    """The day's commitments uncompressed where the store has them (about 5x faster to
    parse), else compressed, and the width of one encoding."""
    return (dc.c65, 65) if dc.c65 is not None else (dc.c33, 33)


def _window_sum(days: Sequence[tuple[date, DayCommitments]], positions: Sequence[int]) -> Point:
    """``sum_{d, j in positions} C_dj``: the needed encodings are cut out of each day's
    blob and summed by :func:`meterhub.crypto.group.msm_encoded` (strict parse into one
    array, one libsecp256k1 ``combine``), no Python object per point."""
    parts: dict[int, list[bytes]] = {33: [], 65: []}
    for _, dc in days:
        blob, w = _encodings(dc)
        parts[w].extend(blob[w * j : w * j + w] for j in positions)
    acc = Point.identity()
    for w, chunks in parts.items():
        if chunks:
            try:
                acc = acc + msm_encoded([1] * len(chunks), b"".join(chunks), w)
            except PointDecodeError:
                raise Rejected(f"day {_bad_day(days, positions)}: a commitment does not decode") from None
    return acc


def _bad_day(days: Sequence[tuple[date, DayCommitments]], positions: Sequence[int]) -> date | None:
    """The first day with an undecodable commitment among ``positions`` (error path only)."""
    for d, dc in days:
        blob, w = _encodings(dc)
        try:
            for j in positions:
                Point.from_bytes(blob[w * j : w * j + w])
        except PointDecodeError:
            return d
    return None


def _linear(
    rel: DRRelease, ev: DREvent, meter: MeterRegistration, days: Mapping[date, DayCommitments],
    code_hash: bytes, app_aid: str,
) -> tuple[VerifiedReduction, bulletproofs.BatchItem]:
    """Checks 1 to 3; returns the figure and the range proof still to check (check 4)."""
    if rel.meter_id != meter.meter_id:
        raise Rejected(f"release is for meter {rel.meter_id!r}, not {meter.meter_id!r}")
    if rel.event_id != ev.event_id or rel.event_digest != ev.digest():
        raise Rejected("release is bound to another event (id or digest)")
    if rel.code_hash != code_hash or rel.applet_aid != app_aid:
        raise Rejected("release is not from the reviewed DR applet")
    if rel.method != ev.method:
        raise Rejected("release uses another baseline method than the signed event")
    if rel.n_days != len(ev.baseline_days):
        raise Rejected(f"release uses {rel.n_days} baseline days, the event names {len(ev.baseline_days)}")
    try:
        day, e_pos, w_pos = event_windows(ev, meter.tz, meter.interval_minutes)
    except EventError as exc:
        raise Rejected(f"event: {exc}") from None
    checked: dict[date, DayCommitments] = {}
    for d in (day, *ev.baseline_days):
        dc = days.get(d)
        if dc is None:
            raise Rejected(f"no signed batch for day {d}")
        b = dc.batch.batch
        check_batches(meter.meter_id, d, d, b.first_index, b.count, 0, meter, [dc])
        checked[d] = dc
    event_day = [(day, checked[day])]
    base = [(d, checked[d]) for d in ev.baseline_days]
    if ev.method == METHOD_PJM:
        return _linear_pjm(rel, ev, meter, event_day, base, e_pos, w_pos)
    c_e = _window_sum(event_day, e_pos)
    c_b = _window_sum(base, e_pos)
    c_a = _window_sum(event_day, w_pos)
    c_x = _window_sum(base, w_pos)
    kb, ke = reduction_coefficients(rel.adjustment, rel.n_days)
    if c_b * kb + c_e * ke != G * rel.scaled_reduction + H * rel.blinding:
        raise Rejected("the reduction does not open the commitment formed from the meter's readings")
    bounds = [Commitment(c_a * ka + c_x * kx + G * c) for ka, kx, c in adjustment_bounds(rel.adjustment, rel.n_days)]
    item = bulletproofs.BatchItem(bounds, rel.proof, proof_context(meter.meter_id, ev.event_id, ev.digest()), rel.bits)
    red = Fraction(rel.scaled_reduction, 1000 * rel.n_days)
    pay = int(max(red, Fraction(0)) * ev.price)
    return VerifiedReduction(meter.meter_id, ev.event_id, red, rel.adjustment, pay), item


def _linear_pjm(
    rel: DRRelease, ev: DREvent, meter: MeterRegistration, event_day: list[tuple[date, DayCommitments]],
    cands: list[tuple[date, DayCommitments]], e_pos: list[int], w_pos: list[int],
) -> tuple[VerifiedReduction, bulletproofs.BatchItem]:
    """PJM (version 2 release): the dropped candidate ``rel.adjustment`` names the days
    left (the others); checks 3 and 4 with the selection bounds instead of the factor's."""
    drop = rel.adjustment
    if not 0 <= drop < len(cands):
        raise Rejected("release drops a candidate day the event does not name")
    usage = [_window_sum([c], e_pos) for c in cands]
    sel = [c for k, c in enumerate(cands) if k != drop]
    kb, ka, kx, ke, den = pjm_coefficients(len(sel), len(e_pos), len(w_pos))
    c_s = msm([kb, ka, kx, ke], [_window_sum(sel, e_pos), _window_sum(event_day, w_pos), _window_sum(sel, w_pos),
                                 _window_sum(event_day, e_pos)])
    if c_s != G * rel.scaled_reduction + H * rel.blinding:
        raise Rejected("the reduction does not open the commitment formed from the meter's readings")
    bounds = [Commitment(usage[k] - usage[drop] + G * c) for k, c in pjm_selection_bounds(drop, ev.baseline_days)]
    ctx = proof_context(meter.meter_id, ev.event_id, ev.digest(), METHOD_PJM)
    item = bulletproofs.BatchItem(bounds, rel.proof, ctx, rel.bits)
    red = Fraction(rel.scaled_reduction, den)
    pay = int(max(red, Fraction(0)) * ev.price)
    return VerifiedReduction(meter.meter_id, ev.event_id, red, drop, pay), item


def _proof_ok(items: Sequence[bulletproofs.BatchItem]) -> bool:
    try:
        if len(items) == 1:
            it = items[0]
            return bulletproofs.verify(it.commitments, it.n, it.proof, it.ctx)
        return bulletproofs.verify_batch(items)
    except ValueError:  # ProofError: a malformed proof
        return False


def verify_release(
    rel: DRRelease,
    ev: DREvent,
    meter: MeterRegistration,
    days: Mapping[date, DayCommitments],
    *,
    code_hash: bytes,
    app_aid: str,
) -> VerifiedReduction:
    """Checks 1 to 4 of the module docstring; raises :class:`Rejected`."""
    v, item = _linear(rel, ev, meter, days, code_hash, app_aid)
    if not _proof_ok([item]):
        raise Rejected("the adjustment factor's range proof does not verify")
    return v


def verify_event(
    items: Sequence[tuple[DRRelease, MeterRegistration, Mapping[date, DayCommitments]]],
    ev: DREvent,
    *,
    code_hash: bytes,
    app_aid: str,
) -> list[VerifiedReduction | Rejected]:
    """All customers' releases for one event: checks 1-3 one by one, then every range
    proof in one batch (:func:`meterhub.crypto.bulletproofs.verify_batch`, random
    weights); if the batch fails, each proof alone, so each verdict names its own fault.
    Returns, in order, the figure or the :class:`Rejected` reason."""
    out: list[VerifiedReduction | Rejected] = []
    pending: list[tuple[int, bulletproofs.BatchItem]] = []
    for rel, meter, days in items:
        try:
            v, item = _linear(rel, ev, meter, days, code_hash, app_aid)
        except Rejected as exc:
            out.append(exc)
            continue
        pending.append((len(out), item))
        out.append(v)
    if pending and not _proof_ok([it for _, it in pending]):
        for k, it in pending:
            if not _proof_ok([it]):
                out[k] = Rejected("the adjustment factor's range proof does not verify")
    return out


@dataclass
class EventSettlement:
    event_id: str
    per_feeder_wh: dict[str, float]
    total_wh: float
    payments: int


def settle_event(event_id: str, verified: Sequence[VerifiedReduction], feeder_of: Mapping[str, str]) -> EventSettlement:
    """Per event: the verified total reduction per feeder and the payments."""
    per: dict[str, float] = {}
    for v in verified:
        if v.event_id != event_id:
            raise ValueError(f"a reduction of event {v.event_id!r} in the settlement of {event_id!r}")
        f = feeder_of.get(v.meter_id, "unassigned")
        per[f] = per.get(f, 0.0) + float(v.reduction)
    return EventSettlement(event_id, per, sum(per.values()), sum(v.payment for v in verified))
