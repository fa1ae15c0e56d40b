"""Proven bills under non-linear tariffs (docs/architecture.md, data flow step 4).

The provers now live with their verifiers in the billing engine,
:mod:`meterhub.model.billing` (one module per tariff kind), and the v2 statement
and proof bundle in :mod:`meterhub.model.formats.statements`. This module keeps
the hub's entry point :func:`prove_bill` and re-exports the rest for existing imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from ..crypto.pedersen import Commitment, Opening
from ..model.billing import (
    BillJob,
    bill_context,
    engine_for,
    prove_reading_range,
    range_context,
    reading_context,
    sum_points,
)
from ..model.billing.proven import ProvenKind
from ..model.formats.statements import (
    BUNDLE_VERSION,
    KIND_CODES,
    STATEMENT_V2_FORMAT,
    ProofBundle,
    ProvenBillStatement,
    statement_from_json,
)
from ..tariffs.nonlinear import NonLinearTariff

__all__ = [
    "STATEMENT_V2_FORMAT",
    "BUNDLE_VERSION",
    "KIND_CODES",
    "ProvenBillStatement",
    "ProofBundle",
    "bill_context",
    "reading_context",
    "range_context",
    "prove_bill",
    "prove_reading_range",
    "sum_points",
    "statement_from_json",
]


def prove_bill(
    *,
    meter_id: str,
    tariff: NonLinearTariff,
    period_from: date,
    period_to: date,
    first_index: int,
    openings: Sequence[Opening],
    commitments: Sequence[Commitment] | None = None,
    tz: str | None = None,
    interval_minutes: int | None = None,
    reading_range: bool = False,
) -> ProvenBillStatement:
    """The v2 statement for a period of whole local days (``period_to`` inclusive),
    by the tariff kind's engine (:mod:`meterhub.model.billing`). Raises
    ``ValueError``/``TariffError`` if a reading lies outside the tariff."""
    engine = engine_for(tariff)
    if not isinstance(engine, ProvenKind):
        raise TypeError("prove_bill needs a NonLinearTariff (linear tariffs: hub.billing)")
    return engine.prove(
        BillJob(
            meter_id=meter_id, tariff=tariff, period_from=period_from, period_to=period_to,
            first_index=first_index, openings=openings, tz=tz, interval_minutes=interval_minutes,
            commitments=commitments, reading_range=reading_range,
        )
    )
