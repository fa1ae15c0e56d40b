"""Self-masks and their secret-shared seeds (double masking).

Bonawitz, Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal, Seth,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017,
section 4 ("double masking"): besides its pairwise zero-sum masks
(:mod:`meterhub.crypto.zerosum`) every participant adds a *self-mask* expanded from
a fresh 16-byte seed ``b``, and gives every other participant a Shamir share of
``b`` (threshold ``t``), encrypted under the key it shares with that participant.
In the unmasking round the aggregator asks each survivor, for each other member,
*either* for the pairwise mask it shares with it (the member dropped out) *or* for
its share of the member's seed (the member is present), never both; so a member
falsely claimed missing keeps its self-mask, and only ``t`` colluding holders can
remove it.

Primitives, none written here: Shamir secret sharing over GF(2^128) from
pycryptodome (``Crypto.Protocol.SecretSharing.Shamir``, 16-byte secrets), HKDF-SHA256
(RFC 5869) to expand the seed and to derive the share-encryption key from the X25519
pair secret, AES-256-GCM (NIST SP 800-38D) from ``cryptography`` to encrypt a share.
Every derivation has its own domain-separation string.
"""

from __future__ import annotations

from collections.abc import Sequence

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import MeterhubError
from .group import Q
from .zerosum import PairKey

__all__ = [
    "SEED_BYTES",
    "NONCE_BYTES",
    "SEALED_BYTES",
    "SELF_MASK_DST",
    "SHARE_KEY_DST",
    "SelfMaskError",
    "self_masks",
    "split_seed",
    "combine_seed",
    "seal_share",
    "open_share",
]

SEED_BYTES = 16
NONCE_BYTES = 12
_PLAIN_BYTES = 2 + SEED_BYTES  # u16 share index || 16-byte share
SEALED_BYTES = NONCE_BYTES + _PLAIN_BYTES + 16  # nonce || ciphertext || GCM tag
SELF_MASK_DST = b"meterhub/v1/self-mask/hkdf-sha256"
SHARE_KEY_DST = b"meterhub/v1/self-mask-share-key/x25519-hkdf-sha256"
_SCALAR_BYTES = 48  # as in zerosum: bias from uniform mod Q below 2^-128
_BLOCK_SCALARS = (255 * 32) // _SCALAR_BYTES


class SelfMaskError(MeterhubError, ValueError):
    """A seed, share or sealed share that cannot be used."""


def self_masks(seed: bytes, context: bytes, count: int) -> list[int]:
    """``count`` scalars mod ``Q`` expanded from ``seed`` by HKDF-SHA256 (salt: the
    domain string; info: the caller's context and a block counter)."""
    if len(seed) != SEED_BYTES:
        raise SelfMaskError("a self-mask seed is 16 bytes")
    out: list[int] = []
    block = 0
    while len(out) < count:
        n = min(_BLOCK_SCALARS, count - len(out))
        info = len(context).to_bytes(2, "big") + context + block.to_bytes(4, "big")
        stream = HKDF(hashes.SHA256(), n * _SCALAR_BYTES, SELF_MASK_DST, info).derive(seed)
        out.extend(int.from_bytes(stream[k : k + _SCALAR_BYTES], "big") % Q for k in range(0, len(stream), _SCALAR_BYTES))
        block += 1
    return out


def split_seed(seed: bytes, threshold: int, holders: int) -> list[tuple[int, bytes]]:
    """Shamir shares ``(index, 16 bytes)`` of ``seed`` at indices ``1..holders``, any
    ``threshold`` of which give the seed back (Shamir 1979, over GF(2^128))."""
    if len(seed) != SEED_BYTES:
        raise SelfMaskError("a self-mask seed is 16 bytes")
    if not 1 <= threshold <= holders <= 0xFFFF:
        raise SelfMaskError("threshold must be 1..holders")
    return [(int(i), bytes(s)) for i, s in Shamir.split(threshold, holders, seed)]


def combine_seed(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """The seed from exactly ``threshold`` shares with distinct indices (more shares
    than the threshold would also do, at quadratic cost; fewer give a wrong seed, which
    the caller's commitment check then rejects)."""
    idx = [i for i, _ in shares]
    if not shares or len(set(idx)) != len(idx) or any(not 1 <= i <= 0xFFFF for i in idx):
        raise SelfMaskError("shares need distinct indices 1..65535")
    if any(len(s) != SEED_BYTES for _, s in shares):
        raise SelfMaskError("a share is 16 bytes")
    return bytes(Shamir.combine([(i, s) for i, s in shares]))


def _share_key(pair: PairKey) -> AESGCM:
    key = HKDF(hashes.SHA256(), 32, pair.salt, SHARE_KEY_DST).derive(pair.secret)
    return AESGCM(key)


def seal_share(pair: PairKey, aad: bytes, index: int, share: bytes, nonce: bytes) -> bytes:
    """``nonce || AES-256-GCM(u16 index || share)`` under the key derived from the pair
    secret; ``aad`` binds group, day, sender and receiver (the caller builds it)."""
    if len(nonce) != NONCE_BYTES or len(share) != SEED_BYTES or not 1 <= index <= 0xFFFF:
        raise SelfMaskError("bad share or nonce")
    return nonce + _share_key(pair).encrypt(nonce, index.to_bytes(2, "big") + share, aad)


def open_share(pair: PairKey, aad: bytes, sealed: bytes) -> tuple[int, bytes]:
    """The ``(index, share)`` inside ``sealed``; :class:`SelfMaskError` if it was not
    sealed under this pair's key with this ``aad``."""
    if len(sealed) != SEALED_BYTES:
        raise SelfMaskError(f"a sealed share is {SEALED_BYTES} bytes")
    try:
        plain = _share_key(pair).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise SelfMaskError("the sealed share does not open under this pair's key and context") from None
    return int.from_bytes(plain[:2], "big"), plain[2:]
