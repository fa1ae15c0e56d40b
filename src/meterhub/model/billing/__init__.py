"""One billing engine: each tariff kind's prover and verifier side by side, one table.

=====================  ===========================  ==================================
tariff ``kind``        module                       statement
=====================  ===========================  ==================================
``time-of-use``        :mod:`.time_of_use`          v1; v3 with metering point, contract
``tiered``             :mod:`.tiered`               v2 (per-reading tier proofs)
``inclining-block``    :mod:`.inclining_block`      v2 (one tier proof on the total)
``polynomial``         :mod:`.polynomial`           v2 (square proofs)
=====================  ===========================  ==================================

Every kind is a :class:`~meterhub.model.billing.base.BillingKind`: ``prove(job)``
for the hub (the CLI's ``hub bill`` and the billing applet) and ``verify(statement,
check)`` for the utility, chosen by :func:`engine_for` from :data:`KINDS`. The
callers call :func:`issue_statement` and :func:`verify_statement` and never fork on
the tariff's type; adding a kind is one module and one row here (docs/nonlinear.md).
The proof contexts are in :mod:`meterhub.model.formats.contexts`, the statement formats in
:mod:`meterhub.model.formats.statements`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...tariffs import TariffError
from ..errors import Rejected
from ..formats.contexts import bill_context, range_context, reading_context
from ..formats.statements import AnyBillStatement
from .base import BillCheck, BillingKind, BillJob, BillTariff, check_energy_bound
from .inclining_block import INCLINING_BLOCK
from .polynomial import POLYNOMIAL
from .proven import prove_reading_range, sum_points
from .tiered import TIERED
from .time_of_use import TIME_OF_USE

__all__ = [
    "KINDS",
    "BillCheck",
    "BillJob",
    "BillTariff",
    "BillingKind",
    "bill_context",
    "check_energy_bound",
    "check_version",
    "engine_for",
    "issue_statement",
    "prove_reading_range",
    "range_context",
    "reading_context",
    "sum_points",
    "verify_statement",
]

#: Tariff kind -> its prover and verifier.
KINDS: Mapping[str, BillingKind] = {
    kind: engine for engine in (TIME_OF_USE, TIERED, INCLINING_BLOCK, POLYNOMIAL) for kind in engine.kinds
}


def engine_for(tariff: BillTariff) -> BillingKind:
    """The engine of ``tariff``'s kind; :class:`TariffError` for a kind without one."""
    engine = KINDS.get(tariff.kind)
    if engine is None:
        raise TariffError(f"no billing engine for tariff kind {tariff.kind!r:.40}")
    return engine


def issue_statement(job: BillJob) -> AnyBillStatement:
    """The statement the hub releases for ``job`` (its tariff's kind decides the version)."""
    return engine_for(job.tariff).prove(job)


def check_version(statement: AnyBillStatement, tariff: BillTariff) -> BillingKind:
    """The engine of ``tariff``'s kind if it issues ``statement``'s version; else
    :class:`Rejected` (checked first, so that a v1 statement for a non-linear tariff is
    refused as such, never billed at 0)."""
    engine = engine_for(tariff)
    if not isinstance(statement, engine.statement_types):
        if tariff.kind in TIME_OF_USE.kinds:
            raise Rejected("a proven (v2) statement for a linear tariff")
        raise Rejected(f"{tariff.kind} tariff needs a proven (v2) statement")
    return engine


def verify_statement(statement: AnyBillStatement, check: BillCheck) -> None:
    """The kind's own checks of ``statement`` once the period is checked; raises
    :class:`Rejected` with the first failure (a statement of a version the kind does
    not issue included)."""
    check_version(statement, check.tariff).verify(statement, check)
