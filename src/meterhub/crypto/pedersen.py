"""Pedersen commitments over secp256k1: ``C = m*G + r*H``.

Pedersen, "Non-interactive and information-theoretic secure verifiable secret
sharing", CRYPTO 1991. Perfectly hiding, computationally binding under the
discrete-log assumption because ``log_G(H)`` is unknown (``H`` is hashed to the
curve, see :func:`meterhub.crypto.group.hash_to_point`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .group import G, H, Point, Q, base_mul, msm, random_scalar

__all__ = ["Commitment", "Opening", "commit", "verify_opening"]


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


def commit(m: int, r: int | None = None) -> tuple[Commitment, Opening]:
    """Commit to integer ``m`` (reduced mod Q) with blinding ``r`` (fresh if None)."""
    if r is None:
        r = random_scalar()
    r %= Q
    point = base_mul(m) + (H * r)
    return Commitment(point), Opening(m, r)


def verify_opening(c: Commitment, opening: Opening) -> bool:
    """Check ``C == m*G + r*H``."""
    return msm([opening.m, opening.r], [G, H]) == c.point
