"""Inclining-block tariffs: one tier proof on the period's total (docs/nonlinear.md).

Prover: the total ``T = sum C_i`` (opening ``sum m_i, sum r_i``) gets one tier proof
against the block table (range proofs on the total,
:func:`meterhub.crypto.bulletproofs.prove_tier`), giving the block price
commitment ``P``; the linear band prices add ``sum t_i m_i``.
Verifier: the block proof on ``T = sum C_i`` (computed by the verifier itself),
then ``sum t_i C_i + P == bill G + R H`` as one multi-scalar multiplication.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ...crypto import bulletproofs as bp
from ...crypto.group import G, H, Q, msm
from ...crypto.pedersen import Commitment, Opening
from ...crypto.transcript import ProofContext
from ...tariffs.nonlinear import KIND_INCLINING_BLOCK, NonLinearTariff
from ..errors import Rejected
from ..formats.statements import ProofBundle, ProvenBillStatement
from .proven import ProvenKind, sum_points

__all__ = ["INCLINING_BLOCK", "IncliningBlock"]


class IncliningBlock(ProvenKind):
    kinds: tuple[str, ...] = (KIND_INCLINING_BLOCK,)

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
        prices = tariff.linear_prices_for(flat, step)
        total = Commitment(sum_points([c.point for c in cs]))
        t_open = Opening(sum(o.m for o in openings), sum(o.r for o in openings) % Q)
        rows = [r.as_tuple() for r in tariff.blocks]
        proof, _, block = bp.prove_tier(total, t_open, rows, ctx)
        energy = sum(t * o.m for t, o in zip(prices, openings, strict=True)) + block.m
        blinding = sum(t * o.r for t, o in zip(prices, openings, strict=True)) + block.r
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


INCLINING_BLOCK = IncliningBlock()
