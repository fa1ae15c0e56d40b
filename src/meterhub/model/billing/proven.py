"""What every non-linear tariff kind shares: the v2 statement around the kind's proofs.

The hub knows every opening ``(m_i, r_i)``; the utility knows only the
meter-signed commitments ``C_i``. For a non-linear tariff the hub releases a v2
bill statement: the bill, the blinding sum ``R`` and zero-knowledge proofs that
the bill follows from the committed readings (Rial and Danezis, "Privacy-preserving
smart metering", WPES 2011, section 4). Each kind (:mod:`.tiered`,
:mod:`.inclining_block`, :mod:`.polynomial`) supplies its own proof and its own
check as :meth:`ProvenKind.prove_kind` and :meth:`ProvenKind.verify_kind`; this
module frames them and adds, optionally, per day one aggregated Bulletproof that
every reading lies in ``[0, m_max - 1]`` (Bünz et al. 2018, section 4.3).
Encodings: docs/formats.md, "Bill statement v2".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from ...crypto import bulletproofs as bp
from ...crypto.group import H, Point, PointDecodeError, Q, base_mul, msm
from ...crypto.pedersen import Commitment, Opening
from ...crypto.transcript import ProofContext
from ...tariffs.nonlinear import NonLinearTariff
from ..errors import Rejected
from ..formats.contexts import bill_context, range_context
from ..formats.statements import KIND_CODES, AnyBillStatement, ProofBundle, ProvenBillStatement
from ..formats.units import iter_commitments
from ..timebase import day_starts
from .base import BillCheck, BillJob

__all__ = ["ProvenKind", "prove_reading_range", "sum_points"]


def sum_points(points: Sequence[Point]) -> Point:
    """``sum P_i`` (one bucket of one ``combine``: no multiplication)."""
    return msm([1] * len(points), points)


def _commitments(openings: Sequence[Opening]) -> list[Commitment]:
    return [Commitment(base_mul(o.m) + H * o.r) for o in openings]


def prove_reading_range(
    commitments: Sequence[Commitment],
    openings: Sequence[Opening],
    day_sizes: Sequence[int],
    m_max: int,
    ctx: ProofContext,
) -> tuple[bytes, ...]:
    """Per day one aggregated Bulletproof that every reading lies in ``[0, m_max - 1]``
    (Bünz et al. 2018, section 4.3, with the bounded shift); reused by fraud detection."""
    out = []
    pos = 0
    for d, n in enumerate(day_sizes):
        cs, os_ = commitments[pos : pos + n], openings[pos : pos + n]
        out.append(bp.prove_bounded(cs, os_, m_max - 1, range_context(ctx, d)))
        pos += n
    return tuple(out)


class ProvenKind(ABC):
    """A non-linear tariff kind; subclasses set ``kinds`` and the two kind methods."""

    kinds: tuple[str, ...] = ()
    statement_types: tuple[type, ...] = (ProvenBillStatement,)

    # -- the kind's own proof and check ---------------------------------------
    @abstractmethod
    def prove_kind(
        self,
        tariff: NonLinearTariff,
        flat: Sequence[datetime],
        step: int,
        cs: Sequence[Commitment],
        openings: Sequence[Opening],
        ctx: ProofContext,
        first_index: int,
    ) -> tuple[int, int, list[bytes]]:
        """``(energy charge, blinding, proofs)`` for the readings."""

    @abstractmethod
    def verify_kind(
        self,
        st: ProvenBillStatement,
        tariff: NonLinearTariff,
        flat: Sequence[datetime],
        step: int,
        cs: Sequence[Commitment],
        bundle: ProofBundle,
        ctx: ProofContext,
    ) -> None:
        """Raise :class:`Rejected` unless the proofs show the statement's bill."""

    # -- the frame --------------------------------------------------------------
    def prove(self, job: BillJob) -> ProvenBillStatement:
        """The v2 statement; ``ValueError``/``TariffError`` if a reading lies outside the tariff."""
        if not isinstance(job.tariff, NonLinearTariff):
            raise TypeError("a proven (v2) statement needs a NonLinearTariff (linear tariffs: time_of_use)")
        if job.metering_point is not None or job.contract_id is not None:
            raise ValueError("per-band energy (v3) needs a time-of-use tariff")
        tariff = job.tariff
        tz, step = job.time_base
        n_days = job.n_days
        if n_days < 1:
            raise ValueError("period ends before it starts")
        day_lists = [day_starts(job.period_from + timedelta(days=k), tz, step) for k in range(n_days)]
        flat = [s for day in day_lists for s in day]
        openings = list(job.openings)  # decoded once (stored units decode on access)
        if len(flat) != len(openings):
            raise ValueError(f"{len(openings)} openings for {len(flat)} intervals")
        cs = list(job.commitments) if job.commitments is not None else _commitments(openings)
        if len(cs) != len(openings):
            raise ValueError("one commitment per opening is needed")
        for o in openings:
            if not 0 <= o.m < tariff.m_max:
                raise ValueError(f"reading {o.m} outside [0, {tariff.m_max})")
        count = len(openings)
        digest = tariff.digest()
        ctx = bill_context(
            job.meter_id, job.period_from, job.period_to, tariff.tariff_id, tariff.version, tariff.kind,
            digest, job.first_index, count,
        )
        energy, blinding, proofs = self.prove_kind(tariff, flat, step, cs, openings, ctx, job.first_index)
        ranges: tuple[bytes, ...] = ()
        if job.reading_range:
            ranges = prove_reading_range(cs, openings, [len(d) for d in day_lists], tariff.m_max, ctx)
        bundle = ProofBundle(tariff.kind, count, tuple(proofs), ranges)
        standing = n_days * tariff.standing_charge_per_day
        return ProvenBillStatement(
            meter_id=job.meter_id,
            period_from=job.period_from,
            period_to=job.period_to,
            first_index=job.first_index,
            count=count,
            tariff_id=tariff.tariff_id,
            tariff_version=tariff.version,
            tariff_kind=tariff.kind,
            tariff_digest=digest,
            currency=tariff.currency,
            subunits_per_unit=tariff.subunits_per_unit,
            energy_charge=energy,
            standing_charge=standing,
            total=energy + standing,
            blinding=blinding % Q,
            proof=bundle.to_bytes(),
        )

    def verify(self, statement: AnyBillStatement, check: BillCheck) -> None:
        """Checks 5 to 7 of :mod:`meterhub.utility.proof_verifier` (after the period checks)."""
        if not isinstance(statement, ProvenBillStatement):
            kind = check.tariff.kind
            raise Rejected(f"{kind} tariff needs a proven (v2) statement")
        st = statement
        tariff = cast(NonLinearTariff, check.tariff)
        if st.tariff_kind != tariff.kind:
            raise Rejected(f"statement is for a {st.tariff_kind} tariff, the customer's is {tariff.kind}")
        bundle = ProofBundle.from_bytes(st.proof)
        if bundle.kind != st.tariff_kind or bundle.count != st.count or st.tariff_kind not in KIND_CODES:
            raise Rejected("proof bundle does not match the statement (kind or count)")
        if check.require_reading_range and not bundle.ranges:
            raise Rejected("the reading-range proofs are required but missing")
        try:
            cs = [Commitment(Point.from_bytes(c)) for c in iter_commitments(check.c33)]
        except PointDecodeError as exc:
            raise Rejected(f"a commitment does not decode: {exc}") from None
        ctx = st.context()
        self.verify_kind(st, tariff, check.flat_starts, check.interval_minutes, cs, bundle, ctx)
        if bundle.ranges:
            starts = check.starts
            if len(bundle.ranges) != len(starts):
                raise Rejected(f"{len(bundle.ranges)} reading-range proofs for {len(starts)} days")
            items_r = []
            pos = 0
            for d, (day, proof) in enumerate(zip(starts, bundle.ranges, strict=True)):
                items_r.append(
                    bp.BatchItem(cs[pos : pos + len(day)], proof, range_context(ctx, d), m_max=tariff.m_max - 1)
                )
                pos += len(day)
            if not bp.verify_batch(items_r):
                raise Rejected(f"a reading lies outside [0, {tariff.m_max - 1}] (range proof fails)")
