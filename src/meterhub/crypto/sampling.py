"""Verifiable sampling: one reading in ``k`` chosen by a coin toss (commit-then-reveal).

The proposal's forecasting use case releases one reading in ``k`` (k = 100) with its
opening. Neither side may choose which: a utility that chose could aim at the
evening peak of one household, a hub that chose could release only low readings.
The indices therefore come from a two-party coin toss (Blum, "Coin flipping by
telephone", 1981), with SHA-256 as the commitment (hiding and binding in the
random-oracle model) and a domain-separation tag on every hash:

1. **Before the period** the utility draws a 32-byte nonce ``n_U`` and sends
   ``c = SHA-256(DST_COMMIT || lp(meter_id) || period || u16 k || n_U)``. The hub
   stores ``c``, draws its own nonce ``n_H`` (32 bytes from the card's RNG) and
   answers only its commitment ``c_H = SHA-256(DST_HUB_NONCE || n_H)``, so neither
   side can compute an index before both have committed. The hub refuses a
   commitment for a period that has already begun, a second toss for the period,
   and ``k`` below the customer's floor (docs/privacy.md).
2. **After the period** the utility reveals ``n_U``. The hub checks it against
   ``c``, derives ``seed = SHA-256(DST_SEED || c || n_U || n_H)`` and releases ``n_H``
   with the samples; the utility checks ``n_H`` against ``c_H``.
3. The period's intervals are cut into blocks of ``k`` (the last may be shorter,
   length ``L_b``); block ``b`` releases interval
   ``first + k*b + (SHA-256(DST_INDEX || seed || u32 b) mod L_b)``
   (bias below 2^-248) with its opening ``(m, r)``.
4. The utility recomputes the indices from ``c``, ``n_U``, ``n_H``, rejects any
   sample at another index (or missing, or extra), and checks every opening
   against the meter-signed commitments exactly, ``C_j == m_j G + r_j H`` each
   (one libsecp256k1 ``combine`` per sample over fixed-base table entries and
   ``-C_j``: cheaper here than a random linear combination, and without its
   ``2^-128`` error).

The utility's nonce is fixed before it sees ``n_H``, and ``n_H`` is chosen
without knowledge of ``n_U``, so the seed is uniform if either side is honest.
A hub can refuse to answer (visible) but cannot steer the indices.
Pure functions: no I/O.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ..errors import MeterhubError
from .bulletproofs._tables import openings_hold
from .group import PointArray, PointDecodeError, Q

__all__ = [
    "DEFAULT_K",
    "DST_COMMIT",
    "DST_HUB_NONCE",
    "DST_INDEX",
    "DST_SEED",
    "Sample",
    "SamplingError",
    "check_samples",
    "commit_hub_nonce",
    "commit_nonce",
    "derive_indices",
    "derive_seed",
    "new_nonce",
    "verify_sample_openings",
]

DEFAULT_K = 100
DST_COMMIT = b"meterhub/v1/sampling/commit\x00"
DST_SEED = b"meterhub/v1/sampling/seed\x00"
DST_INDEX = b"meterhub/v1/sampling/index\x00"
DST_HUB_NONCE = b"meterhub/v1/sampling/hub-nonce\x00"


class SamplingError(MeterhubError, ValueError):
    """A sample set that does not follow the coin toss, or an opening that does not match."""


@dataclass(frozen=True, slots=True)
class Sample:
    index: int
    m: int
    r: int


def new_nonce() -> bytes:
    return secrets.token_bytes(32)


def _period(first: date, last: date) -> bytes:
    return f"{first.isoformat()}/{last.isoformat()}".encode()


def commit_nonce(meter_id: str, first: date, last: date, k: int, nonce: bytes) -> bytes:
    """The utility's commitment ``c`` (step 1)."""
    if len(nonce) != 32 or not 1 <= k <= 0xFFFF:
        raise SamplingError("nonce must be 32 bytes and k in 1..65535")
    mid = meter_id.encode()
    return hashlib.sha256(
        DST_COMMIT + len(mid).to_bytes(2, "big") + mid + _period(first, last) + k.to_bytes(2, "big") + nonce
    ).digest()


def commit_hub_nonce(hub_nonce: bytes) -> bytes:
    """The hub's commitment to its nonce, ``SHA-256(DST_HUB_NONCE || n_H)``: what the hub
    answers at commit time, so that neither side knows the indices before both committed."""
    if len(hub_nonce) != 32:
        raise SamplingError("the hub nonce must be 32 bytes")
    return hashlib.sha256(DST_HUB_NONCE + hub_nonce).digest()


def derive_seed(commitment: bytes, utility_nonce: bytes, hub_nonce: bytes) -> bytes:
    if len(commitment) != 32 or len(utility_nonce) != 32 or len(hub_nonce) != 32:
        raise SamplingError("commitment and nonces must be 32 bytes")
    return hashlib.sha256(DST_SEED + commitment + utility_nonce + hub_nonce).digest()


def derive_indices(seed: bytes, first_index: int, count: int, k: int) -> list[int]:
    """One index per block of ``k`` intervals (step 3)."""
    if count < 1 or k < 1:
        raise SamplingError("count and k must be positive")
    out = []
    for b in range(-(-count // k)):
        length = min(k, count - b * k)
        h = hashlib.sha256(DST_INDEX + seed + b.to_bytes(4, "big")).digest()
        out.append(first_index + b * k + int.from_bytes(h, "big") % length)
    return out


def check_samples(
    samples: Sequence[Sample], seed: bytes, first_index: int, count: int, k: int
) -> None:
    """Raise :class:`SamplingError` unless the samples sit exactly at the derived indices."""
    want = derive_indices(seed, first_index, count, k)
    if len(samples) != len(want):
        raise SamplingError(f"{len(samples)} samples, the coin toss selects {len(want)}")
    for s, i in zip(samples, want, strict=True):
        if s.index != i:
            raise SamplingError(f"sample at interval {s.index}, the coin toss selects {i}")
        if not 0 <= s.m < 1 << 32 or not 0 <= s.r < Q:
            raise SamplingError(f"sample {s.index}: value or blinding out of range")


def verify_sample_openings(samples: Sequence[Sample], c65: bytes) -> bool:
    """``C_j == m_j G + r_j H`` for every sample, exactly, with the 65-byte commitments
    ``c65`` of the samples (in the same order): the points parsed once, then one
    ``combine`` per sample over fixed-base table entries and ``-C_j``
    (:func:`meterhub.crypto.bulletproofs._tables.openings_hold`). ``False`` if a
    commitment does not decode or an opening does not hold."""
    if len(c65) != 65 * len(samples):
        raise SamplingError("one commitment per sample is needed")
    if not samples:
        return True
    try:
        points = PointArray.parse(c65, 65)
    except PointDecodeError:
        return False
    return openings_hold([s.m for s in samples], [s.r for s in samples], points)
