"""Tiered tariffs: per reading a hidden-row tier proof (docs/nonlinear.md, "tiered").

Prover: per reading a tier proof (:func:`meterhub.crypto.bulletproofs.prove_tier`):
a price commitment ``P_i`` and a proof that it holds ``(m_i - c_min)F1 + F2`` for
the row of the reading's band containing ``m_i``, the row hidden; the bill is
``sum`` of the prices, ``R`` the sum of their blindings (Rial and Danezis, WPES
2011, section 4).
Verifier: every reading's tier proof, their Bulletproofs in one multi-scalar
multiplication with random weights (Bünz et al. 2018, section 6.2), then
``sum P_i == bill G + R H``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ...crypto import bulletproofs as bp
from ...crypto.group import G, H
from ...crypto.pedersen import Commitment, Opening
from ...crypto.transcript import ProofContext
from ...tariffs.nonlinear import KIND_TIERED, NonLinearTariff
from ..errors import Rejected
from ..formats.contexts import reading_context
from ..formats.statements import ProofBundle, ProvenBillStatement
from .proven import ProvenKind, sum_points

__all__ = ["TIERED", "Tiered"]


class Tiered(ProvenKind):
    kinds: tuple[str, ...] = (KIND_TIERED,)

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
        energy = blinding = 0
        proofs: list[bytes] = []
        bands = tariff.band_indices_for(flat, step)
        for i, (c, o, b) in enumerate(zip(cs, openings, bands, strict=True)):
            rows = [r.as_tuple() for r in tariff.tiers[b]]
            proof, _, price = bp.prove_tier(c, o, rows, reading_context(ctx, first_index + i))
            proofs.append(proof)
            energy += price.m
            blinding += price.r
        return energy, blinding, proofs

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
        bands = tariff.band_indices_for(flat, step)
        tables = [[r.as_tuple() for r in rows] for rows in tariff.tiers]
        items = [
            bp.TierItem(c, tables[b], p, reading_context(ctx, st.first_index + i))
            for i, (c, b, p) in enumerate(zip(cs, bands, bundle.proofs, strict=True))
        ]
        if not bp.verify_tier_batch(items):
            raise Rejected("a tier proof does not verify (reading in the wrong tier, or a forged proof)")
        prices = [bp.tier_price_commitment(p).point for p in bundle.proofs]
        if sum_points(prices) != G * st.energy_charge + H * st.blinding:
            raise Rejected("sum P_i != bill*G + R*H: the bill or its blinding does not match the proven prices")


TIERED = Tiered()
