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

The checks 5 to 7 are the tariff kind's own, in the billing engine
(:mod:`meterhub.model.billing`, one module per kind, beside its prover).
Pure: the caller fetches the data (see :mod:`meterhub.utility.store`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..model.formats.statements import ProvenBillStatement
from ..tariffs.nonlinear import NonLinearTariff
from .verifier import DayCommitments, MeterRegistration, Verdict, verify_statement_verdict

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
    if not isinstance(statement, ProvenBillStatement):
        return Verdict(False, "expected a v2 (proven) bill statement")
    if not isinstance(tariff, NonLinearTariff):
        return Verdict(False, "the customer's tariff is linear; verify with verifier.verify_bill")
    return verify_statement_verdict(statement, meter, days, tariff, require_reading_range=require_reading_range)
