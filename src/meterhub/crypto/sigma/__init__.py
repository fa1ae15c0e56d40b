"""Non-interactive sigma protocols over Pedersen commitments.

One generic engine covers every statement: Maurer's unified zero-knowledge
proof of knowledge of a preimage under a group homomorphism (Maurer,
"Unifying zero-knowledge proofs of knowledge", AFRICACRYPT 2009, section 4).
A :class:`LinearStatement` lists equations ``P_k = sum_j x_{i(k,j)} * B_{k,j}``
over a witness vector ``x``; openings, equality, linear relations, products
and squares are all such statements. Conjunctions share one challenge;
disjunctions use the CDS composition (Cramer, Damgård and Schoenmakers,
"Proofs of partial knowledge", CRYPTO 1994): simulated branches get random
challenges, the real branch gets ``c - sum(others)``.

Proofs use the compact form (challenge and responses, no commitments): the
verifier recomputes ``A_k = sum_j z_j B_{k,j} - c_k P_k`` and re-derives the
challenge from the transcript. It is shorter than sending the ``A_k``, and on
this stack it is also cheaper to verify: a random-linear-combination batch
would still need one scalar multiplication for every ``A_k``, which the
compact form does not send at all.

Byte encoding of every sigma proof (big-endian, scalars strictly ``< Q``)::

    version (1) = 0x01 | tag (1) | c (32)
    | for each clause, for each branch but the last: branch challenge (32)
    | for each clause, for each branch, for each witness: response (32)

The shape (clauses, branches, witnesses per branch) is fixed by the public
statement, so the verifier knows the exact length; anything else is rejected
with :class:`ProofError`.

Modules: :mod:`.engine` (statements, encoding, clauses) and :mod:`.proofs`
(statement builders, named proofs, OR conveniences).
"""

from __future__ import annotations

from ..transcript import ProofError
from .engine import (
    TAG_EQUALITY,
    TAG_LINEAR,
    TAG_OPENING,
    TAG_OR,
    TAG_PRODUCT,
    TAG_ROW,
    TAG_SQUARE,
    TAG_STATEMENT,
    VERSION,
    Equation,
    LinearStatement,
    SigmaProof,
    lincomb,
    prove_clauses,
    prove_or,
    prove_statement,
    verify_clauses,
    verify_or,
    verify_statement,
)
from .proofs import (
    equality_statement,
    linear_statement,
    opening_statement,
    product_statement,
    prove_equal_to_one_of,
    prove_equality,
    prove_linear,
    prove_one_of_values,
    prove_opening,
    prove_product,
    prove_row_membership,
    prove_square,
    square_statement,
    verify_equal_to_one_of,
    verify_equality,
    verify_linear,
    verify_one_of_values,
    verify_opening,
    verify_product,
    verify_row_membership,
    verify_square,
)

__all__ = [
    "VERSION",
    "TAG_OPENING",
    "TAG_EQUALITY",
    "TAG_LINEAR",
    "TAG_PRODUCT",
    "TAG_SQUARE",
    "TAG_OR",
    "TAG_STATEMENT",
    "TAG_ROW",
    "ProofError",
    "Equation",
    "LinearStatement",
    "SigmaProof",
    "lincomb",
    "prove_clauses",
    "verify_clauses",
    "prove_statement",
    "verify_statement",
    "prove_or",
    "verify_or",
    "opening_statement",
    "equality_statement",
    "linear_statement",
    "product_statement",
    "square_statement",
    "prove_opening",
    "verify_opening",
    "prove_equality",
    "verify_equality",
    "prove_linear",
    "verify_linear",
    "prove_product",
    "verify_product",
    "prove_square",
    "verify_square",
    "prove_one_of_values",
    "verify_one_of_values",
    "prove_equal_to_one_of",
    "verify_equal_to_one_of",
    "prove_row_membership",
    "verify_row_membership",
]
