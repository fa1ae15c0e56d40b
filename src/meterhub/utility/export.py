"""The recipient's check of a consented Green Button export (docs/privacy.md).

:func:`verify_export` checks an export (:mod:`meterhub.model.formats.greenbutton`) against the
meter-signed commitments: the batches of the period (signatures, chain, completeness,
shared with billing), that the interval readings tile the period's meter intervals in
groups of ``resolution / interval`` starting at each group's first interval, and every
value with its blinding: ``sum_{i in group} C_i = value*G + blinding*H``, all groups in
one multi-scalar multiplication with random 128-bit weights (the sampling check).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..crypto.group import Point, PointDecodeError, Q
from ..crypto.sampling import Sample, SamplingError, verify_sample_openings
from ..model.formats.greenbutton import Export
from ..model.formats.units import commitment_at
from .settlement import check_batches
from .verifier import DayCommitments, MeterRegistration, Rejected, Verdict

__all__ = ["verify_export"]


def verify_export(exp: Export, meter: MeterRegistration, days: Sequence[DayCommitments]) -> Verdict:
    """Check a parsed export against the period's signed batches ``days`` (exactly the
    exported period's days, in order)."""
    try:
        if exp.meter_id != meter.meter_id:
            raise Rejected(f"export is for meter {exp.meter_id!r}")
        starts = check_batches(exp.meter_id, exp.period_from, exp.period_to, exp.first_index, exp.count, 0,
                               meter, days)
        flat = [s for day in starts for s in day]
        interval = meter.interval_minutes
        if exp.resolution_minutes % interval:
            raise Rejected("resolution is not a multiple of the meter's interval")
        g = exp.resolution_minutes // interval
        if len(flat) != exp.count or exp.count != g * len(exp.readings):
            raise Rejected("the readings do not cover the period's meter intervals")
        blob = b"".join(d.c33 for d in days)  # exactly the period's days (check_batches)
        samples, sums = [], []
        for j, r in enumerate(exp.readings):
            if r.start != int(flat[j * g].timestamp()) or r.duration != exp.resolution_minutes * 60:
                raise Rejected(f"interval reading {j} does not start at its meter interval")
            if not 0 <= r.blinding < Q:
                raise Rejected(f"interval reading {j}: blinding out of range")
            acc = Point.identity()
            for i in range(j * g, j * g + g):
                acc = acc + Point.from_bytes(commitment_at(blob, i))
            samples.append(Sample(j, r.value, r.blinding))
            sums.append(acc.to_bytes_uncompressed())
        if not verify_sample_openings(samples, b"".join(sums)):
            raise Rejected("an exported value or its blinding does not match the meter's commitments")
    except (Rejected, SamplingError, PointDecodeError, ValueError) as exc:
        return Verdict(False, str(exc))
    return Verdict(True)
