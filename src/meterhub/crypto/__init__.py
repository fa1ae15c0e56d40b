"""Cryptographic core: the secp256k1 group, Pedersen commitments, proofs.

Pure functions and value types only: no I/O. Every primitive comes from
``coincurve`` (libsecp256k1) or ``cryptography``.
"""

from .group import G, H, Point, PointDecodeError, Q, base_mul, msm, naive_msm, random_scalar
from .pedersen import Commitment, Opening, commit, commit_point, verify_opening

__all__ = [
    "G",
    "H",
    "Q",
    "Point",
    "PointDecodeError",
    "base_mul",
    "msm",
    "naive_msm",
    "random_scalar",
    "Commitment",
    "Opening",
    "commit",
    "commit_point",
    "verify_opening",
]
