"""Aggregated Bulletproofs range proofs over secp256k1.

Bünz, Bootle, Boneh, Poelstra, Wuille and Maxwell, "Bulletproofs: Short Proofs
for Confidential Transactions and More", IEEE S&P 2018:

* section 4.1 (range proof) and 4.3 (aggregation of ``m`` values): the prover
  commits to the bits ``a_L`` and ``a_R = a_L - 1`` (``A``) and to blinding
  vectors (``S``), proves ``t(x) = <l(x), r(x)>`` with ``T1, T2``, and hands
  ``l, r`` to the inner-product argument;
* section 3 (protocol 2, the inner-product argument, log-size);
* section 6.2: the verifier checks everything with one multi-scalar
  multiplication, the t-check and the inner-product check combined with a
  fresh random weight.

Conventions follow the reference implementation of the dalek project
(``r(X)`` uses ``z^(2+j) 2^n`` for value ``j``; the ``L`` terms carry ``u^2``).
Two implementation choices for this stack (libsecp256k1 through coincurve,
where one scalar multiplication dominates every other cost):

* with at most ``TABLE_GENERATORS`` generators per side (every tier proof up
  to n = 16) all bases have fixed-base tables and the prover never folds a
  generator: each round's ``L`` and ``R`` are table sums over the original
  generators with the challenge products of the verifier's ``s`` vector
  (sections 3.1 and 6.2). Above that it folds them with one multiplication
  per element, keeping the common factor ``u^-1`` (resp. ``u``) aside;
* the value base is ``G`` and the blinding base ``H`` of the Pedersen
  commitments, so readings ``C_i`` are proved directly; the vector generators
  come from :func:`meterhub.crypto.group.hash_to_point` over public labels.

``m`` is padded to a power of two with the identity commitment (value 0,
blinding 0), which the verifier pads identically. ``n`` is a power of two up
to 64.

Byte encoding (big-endian)::

    version 0x01 | tag 0x20 | n (1) | m (4, unpadded)
    | A | S | T1 | T2            (4 x 33, compressed points)
    | t_x | tau_x | mu          (3 x 32, scalars < Q)
    | L_1..L_k | R_1..R_k        (2k x 33, k = log2(n * m_padded))
    | a | b                     (2 x 32)

Tier proofs (version 2, :data:`TIER_VERSION`) embed the same layout with
version byte 0x02, the inner-product argument stopped at vectors of length
``TIER_FOLD``: ``k = log2(n * m_padded / TIER_FOLD)`` rounds, then
``a_1..a_f | b_1..b_f``.

Modules: :mod:`._tables` (generators, fixed-base tables), :mod:`.ipa` (the
inner-product argument and what every proof built on it shares, the sum-of-squares
proof of :mod:`meterhub.crypto.sumsquares` included), :mod:`.range_proof` (range, bounded and batch proofs),
:mod:`.tier` (tier proofs).
"""

from __future__ import annotations

from ._tables import generators, openings_hold, value_point
from .range_proof import (
    MAX_VALUES,
    TAG_BULLETPROOF,
    TAG_BULLETPROOF_BOUNDED,
    BatchItem,
    bulletproof_size,
    prove,
    prove_bounded,
    verify,
    verify_batch,
    verify_bounded,
)
from .tier import (
    MAX_ROWS,
    TAG_TIER,
    TierItem,
    prove_tier,
    tier_bits,
    tier_price_commitment,
    tier_proof_size,
    verify_tier,
    verify_tier_batch,
)

__all__ = [
    "TAG_BULLETPROOF",
    "TAG_BULLETPROOF_BOUNDED",
    "MAX_VALUES",
    "generators",
    "value_point",
    "openings_hold",
    "bulletproof_size",
    "prove",
    "verify",
    "prove_bounded",
    "verify_bounded",
    "BatchItem",
    "verify_batch",
    "TAG_TIER",
    "MAX_ROWS",
    "tier_bits",
    "tier_proof_size",
    "prove_tier",
    "verify_tier",
    "tier_price_commitment",
    "TierItem",
    "verify_tier_batch",
]
