"""Zero-sum masks from pairwise Diffie-Hellman keys.

Kursawe, Danezis and Kohlweiss, "Privacy-friendly aggregation for the smart
grid", PETS 2011, section 4 ("aggregation protocols based on Diffie-Hellman
key exchange"): every pair of participants ``(i, k)`` shares a key from an
ECDH exchange; from it both derive the same pseudo-random value ``p_ik`` for
each round, which ``i`` adds and ``k`` subtracts. Each participant's total
mask ``sum_k s_ik p_ik`` looks uniformly random, and the masks of the whole
group sum to zero, so the sum of the masked values is the sum of the values.

Here the values are scalars mod the secp256k1 group order ``Q`` (a Pedersen
reading and its blinding), the key exchange is X25519 (RFC 7748) from
``cryptography`` and the pseudo-random function is HKDF-SHA256 (RFC 5869)
with domain separation: the salt binds the pair's two public keys (sorted),
the info string binds the domain, the caller's context (a group id and an
interval range) and a block counter. Each scalar takes 48 bytes of output
reduced mod ``Q``, so its bias from uniform is below 2^-128.

The sign ``s_ik`` is ``+1`` when ``i``'s public key sorts before ``k``'s and
``-1`` otherwise, so both ends agree without further coordination.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import constant_time, hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import MeterhubError
from .group import Q

__all__ = [
    "KEY_BYTES",
    "MASK_DST",
    "ZeroSumError",
    "PairKey",
    "generate_private_key",
    "private_key_from_bytes",
    "private_key_bytes",
    "public_key_bytes",
    "pair_key",
    "member_masks",
    "sum_masks",
    "pair_tag",
    "pair_tag_ok",
]

KEY_BYTES = 32
MASK_DST = b"meterhub/v1/zero-sum-mask/x25519-hkdf-sha256"
TAG_KEY_DST = b"meterhub/v1/pair-tag-key/x25519-hkdf-sha256"
TAG_BYTES = 16
_SCALAR_BYTES = 48
_BLOCK_SCALARS = (255 * 32) // _SCALAR_BYTES  # HKDF-Expand gives at most 255 hash blocks


class ZeroSumError(MeterhubError, ValueError):
    """A peer key that cannot be used (malformed, low order, our own)."""


def generate_private_key() -> X25519PrivateKey:
    """A fresh X25519 key from the OS CSPRNG (``cryptography`` draws it)."""
    return X25519PrivateKey.generate()


def private_key_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    if len(raw) != KEY_BYTES:
        raise ZeroSumError("an X25519 private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def public_key_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class PairKey:
    """The key one participant shares with one peer, and the sign of its masks."""

    __slots__ = ("secret", "salt", "sign", "peer")

    def __init__(self, secret: bytes, salt: bytes, sign: int, peer: bytes) -> None:
        self.secret, self.salt, self.sign, self.peer = secret, salt, sign, peer

    def values(self, context: bytes, count: int) -> list[int]:
        """``count`` pseudo-random scalars for ``context`` (unsigned, identical at both ends)."""
        out: list[int] = []
        block = 0
        while len(out) < count:
            n = min(_BLOCK_SCALARS, count - len(out))
            info = MASK_DST + len(context).to_bytes(2, "big") + context + block.to_bytes(4, "big")
            stream = HKDF(hashes.SHA256(), n * _SCALAR_BYTES, self.salt, info).derive(self.secret)
            out.extend(
                int.from_bytes(stream[k : k + _SCALAR_BYTES], "big") % Q
                for k in range(0, len(stream), _SCALAR_BYTES)
            )
            block += 1
        return out

    def masks(self, context: bytes, count: int) -> list[int]:
        """The signed masks ``s_ik p_ik`` this participant adds, mod ``Q``."""
        if self.sign > 0:
            return self.values(context, count)
        return [(-v) % Q for v in self.values(context, count)]


def pair_key(own: X25519PrivateKey, peer_public: bytes) -> PairKey:
    """ECDH with one peer (RFC 7748 §6.1). Refuses malformed keys, our own key and
    low-order points (whose shared secret is all zero)."""
    own_pub = public_key_bytes(own)
    if len(peer_public) != KEY_BYTES:
        raise ZeroSumError("an X25519 public key is 32 bytes")
    if peer_public == own_pub:
        raise ZeroSumError("a participant cannot pair with itself")
    try:
        secret = own.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError:  # cryptography refuses an all-zero shared secret (low-order point)
        raise ZeroSumError("peer key is a low-order point") from None
    lo, hi = sorted((own_pub, bytes(peer_public)))
    return PairKey(secret, lo + hi, 1 if own_pub < peer_public else -1, bytes(peer_public))


def pair_tag(pair: PairKey, message: bytes) -> bytes:
    """A 16-byte HMAC-SHA256 tag (RFC 2104, truncated as in RFC 2104 §5) of ``message``
    under a key derived from the pair's shared secret by HKDF-SHA256 with its own info
    string (so the tag key is independent of the mask stream): one hub tells one peer
    something the grid operator relays but cannot forge (docs/fraud.md, registry heads)."""
    key = HKDF(hashes.SHA256(), 32, pair.salt, TAG_KEY_DST).derive(pair.secret)
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    return mac.finalize()[:TAG_BYTES]


def pair_tag_ok(pair: PairKey, message: bytes, tag: bytes) -> bool:
    """Constant-time check of a :func:`pair_tag`."""
    return len(tag) == TAG_BYTES and constant_time.bytes_eq(pair_tag(pair, message), bytes(tag))


def member_masks(pairs: Iterable[PairKey], context: bytes, count: int) -> list[int]:
    """One participant's total mask per value: ``sum_k s_ik p_ik mod Q``."""
    total = [0] * count
    for pk in pairs:
        for j, v in enumerate(pk.masks(context, count)):
            total[j] += v
    return [t % Q for t in total]


def sum_masks(columns: Sequence[Sequence[int]]) -> list[int]:
    """Element-wise sum mod ``Q`` (used to check that a group's masks cancel)."""
    if not columns:
        return []
    return [sum(col) % Q for col in zip(*columns, strict=True)]
