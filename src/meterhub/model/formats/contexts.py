"""The proof contexts of a bill (docs/formats.md, "Bill statement v2").

Every proof's transcript starts from a :class:`~meterhub.crypto.transcript.ProofContext`
naming the meter, the period, the tariff id and version, and a statement label
that holds the tariff kind, its digest, the first index and the count (and, for
per-reading proofs, the reading's index), so a proof never verifies for another
meter, period, tariff version or reading. Prover and verifier both build them
here; the byte strings are frozen (a change breaks every stored v2 statement).
"""

from __future__ import annotations

from datetime import date

from ...crypto.transcript import ProofContext

__all__ = ["bill_context", "range_context", "reading_context"]


def _period(period_from: date, period_to: date) -> str:
    return f"{period_from.isoformat()}/{period_to.isoformat()}"


def bill_context(
    meter_id: str,
    period_from: date,
    period_to: date,
    tariff_id: str,
    tariff_version: int,
    kind: str,
    tariff_digest: bytes,
    first_index: int,
    count: int,
) -> ProofContext:
    """The context every proof of one bill starts from (all public inputs)."""
    label = (
        b"meterhub/bill/v2|"
        + kind.encode()
        + b"|"
        + bytes(tariff_digest)
        + first_index.to_bytes(8, "big")
        + count.to_bytes(8, "big")
    )
    return ProofContext(meter_id, _period(period_from, period_to), tariff_id, tariff_version, label)


def reading_context(ctx: ProofContext, index: int) -> ProofContext:
    """The context of the per-reading proof of interval ``index`` (so proofs cannot be swapped)."""
    return ProofContext(
        ctx.meter_id, ctx.period, ctx.tariff_id, ctx.tariff_version,
        ctx.statement + b"|reading" + index.to_bytes(8, "big"),
    )


def range_context(ctx: ProofContext, day: int) -> ProofContext:
    """The context of the reading-range proof of day ``day`` of the period."""
    return ProofContext(
        ctx.meter_id, ctx.period, ctx.tariff_id, ctx.tariff_version,
        ctx.statement + b"|range" + day.to_bytes(4, "big"),
    )
