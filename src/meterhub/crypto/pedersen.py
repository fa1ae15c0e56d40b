"""Pedersen commitments over secp256k1: ``C = m*G + r*H``.

Pedersen, "Non-interactive and information-theoretic secure verifiable secret
sharing", CRYPTO 1991. Perfectly hiding, computationally binding under the
discrete-log assumption because ``log_G(H)`` is unknown (``H`` is hashed to the
curve, see :func:`meterhub.crypto.group.hash_to_point`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .group import G, H, Point, Q, base_mul, msm, random_scalar
from .group.point import _combine

__all__ = ["Commitment", "Opening", "commit", "commit_point", "verify_opening"]

#: ``-G``, the offset :func:`commit_point` subtracts again.
_NEG_G = -G


@dataclass(frozen=True, slots=True)
class Opening:
    """The secret behind a commitment: the value ``m`` and the blinding ``r``."""

    m: int
    r: int

    def __post_init__(self) -> None:
        if not 0 <= self.r < Q:
            raise ValueError("blinding factor must be in [0, Q)")


@dataclass(frozen=True, slots=True)
class Commitment:
    """A Pedersen commitment; a thin, typed wrapper around a group element."""

    point: Point

    def to_bytes(self) -> bytes:
        return self.point.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Commitment:
        return cls(Point.from_bytes(data))

    def __add__(self, other: Commitment) -> Commitment:
        return Commitment(self.point + other.point)

    def __sub__(self, other: Commitment) -> Commitment:
        return Commitment(self.point - other.point)

    def __mul__(self, k: int) -> Commitment:
        return Commitment(self.point * k)

    __rmul__ = __mul__


def commit_point(m: int, r: int) -> Point:
    """``m*G + r*H`` with libsecp256k1's constant-time multiplications for the secrets ``m``, ``r``.

    ``r*H`` is :meth:`Point.mul_secret` (``secp256k1_ecmult_const`` behind ``secp256k1_ecdh``),
    not ``H * r`` (``tweak_mul``, variable-time wNAF). ``m*G`` is ``secp256k1_ecmult_gen`` on
    ``m + 1``, minus ``G`` again: :func:`base_mul` of ``m`` itself would return early for
    ``m = 0``, and a 0 Wh reading (nobody home) is exactly what must not show in the time
    taken. The branches left are on ``m = -1 mod Q``, a value no reading takes, and on
    ``r = 0 mod Q`` (probability ``1/Q`` for a fresh ``r``). The point additions
    (``secp256k1_ec_pubkey_combine``) use libsecp256k1's constant-time ``secp256k1_gej_add_ge``
    and ``secp256k1_ge_set_gej``; it branches only on a sum at infinity (probability ``1/Q``).
    The result equals ``base_mul(m) + H * r`` byte for byte.
    """
    shifted = (m + 1) % Q
    if shifted == 0:
        return H.mul_secret(r) + _NEG_G
    rh = H.mul_secret(r)
    if rh.is_identity:
        return base_mul(shifted) + _NEG_G
    # One libsecp256k1 combine of the three summands (5 us less than two additions).
    return _combine([base_mul(shifted).public_key, rh.public_key, _NEG_G.public_key])


def commit(m: int, r: int | None = None) -> tuple[Commitment, Opening]:
    """Commit to integer ``m`` (reduced mod Q) with blinding ``r`` (fresh if None), by
    :func:`commit_point` (constant time in ``m`` and ``r``)."""
    if r is None:
        r = random_scalar()
    r %= Q
    return Commitment(commit_point(m, r)), Opening(m, r)


def verify_opening(c: Commitment, opening: Opening) -> bool:
    """Check ``C == m*G + r*H``."""
    return msm([opening.m, opening.r], [G, H]) == c.point
