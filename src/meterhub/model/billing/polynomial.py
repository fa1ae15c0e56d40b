"""Polynomial tariffs: square commitments with square proofs (docs/nonlinear.md).

An interval's price is ``a0 + a1 m_i + a2 m_i^2`` with the band's coefficients.
Prover: square commitments ``S_i`` with square proofs
(:func:`meterhub.crypto.rangeproof.prove_squares`, the verifiable sum of squares);
the bill is ``sum a0_i + a1_i m_i + a2_i m_i^2``.
Verifier: the square proofs, then
``sum a1_i C_i + sum a2_i S_i + (sum a0_i - bill) G - R H == 0`` as one
multi-scalar multiplication (points bucketed by coefficient).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ...crypto import rangeproof as rp
from ...crypto.group import G, H, msm
from ...crypto.pedersen import Commitment, Opening
from ...crypto.transcript import ProofContext
from ...tariffs.nonlinear import KIND_POLYNOMIAL, NonLinearTariff
from ..errors import Rejected
from ..formats.statements import ProofBundle, ProvenBillStatement
from .proven import ProvenKind

__all__ = ["POLYNOMIAL", "Polynomial"]


class Polynomial(ProvenKind):
    kinds: tuple[str, ...] = (KIND_POLYNOMIAL,)

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
        bands = tariff.band_indices_for(flat, step)
        proof, squares = rp.prove_squares(cs, openings, ctx)
        energy = blinding = 0
        for o, sq, b in zip(openings, squares, bands, strict=True):
            a0, a1, a2 = tariff.coefficients[b]
            energy += a0 + a1 * o.m + a2 * sq.m
            blinding += a1 * o.r + a2 * sq.r
        return energy, blinding, [proof]

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


POLYNOMIAL = Polynomial()
