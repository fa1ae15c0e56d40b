"""Self-masks shared linearly over Z_q (double masking).

Bonawitz, Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal, Seth,
"Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017,
§4 ("double masking") and §4.3 (the unmasking round): besides its pairwise zero-sum
masks (:mod:`meterhub.crypto.zerosum`) every participant adds a *self-mask* and
secret-shares it (threshold ``t``) among the group; in the unmasking round each
survivor answers, for each other member, *either* the pairwise mask it shares with it
(the member dropped out) *or* self-mask shares (the member is present), never both,
so a member falsely claimed missing keeps its self-mask and only ``t`` colluding
holders can remove it.

Here the self-mask is not expanded from a seed: it is a vector of ``count`` scalars
mod ``Q`` (the secp256k1 group order, the ring of the readings' blinding factors),
drawn uniformly, and Shamir-shared over the field Z_Q coordinate by coordinate
(Shamir, "How to share a secret", CACM 22(11), 1979): a polynomial ``f`` of degree
``t - 1`` with ``f(0)`` the self-mask, member ``x`` (indices ``1..n``, the group's
member order, the dealer included) holding ``f(x)``. Shamir sharing is linear: the
sum of the shares member ``x`` holds of the self-masks of a set ``P`` is ``F(x)`` for
``F = sum_{i in P} f_i``, so each answering member returns ONE vector and the
aggregator interpolates ``F(0) = sum_{i in P} s_i`` once from ``t`` answers
(:func:`combine`), learning the sum of the present members' self-masks and nothing
about any one of them.

Which shares travel: a degree-``t - 1`` polynomial is fixed by any ``t`` of its values
(Shamir 1979, §2). The dealer draws ``f(0)`` from its RNG and takes ``f(x)`` for the
``t - 1`` members ``x`` that follow it in the member order (cyclically,
:func:`derived_holders`) from HKDF-SHA256 over the X25519 secret it shares with ``x``
(:func:`derived_share`, which ``x`` computes itself in the unmasking round); the
other ``n - t`` members' shares follow by Lagrange interpolation (:func:`split`) and
travel sealed with AES-256-GCM under a key derived from the pair's X25519 secret
(:func:`seal_vector`). For independent uniform values at ``t`` points the polynomial is
uniform, as in Shamir's scheme with random coefficients, so any ``t - 1`` shares are
independent of ``f(0)``; the pseudo-random values hold this against anyone without
the pair secrets. It keeps a 50-member group's messages within one STORE DATA
sequence (docs/fraud.md).

Field arithmetic only (sums, products and inverses of Python integers mod ``Q``);
the primitives are HKDF-SHA256 (RFC 5869) and AES-256-GCM (NIST SP 800-38D) from
``cryptography``, each derivation with its own domain-separation string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import MeterhubError
from .group import Q
from .zerosum import PairKey

__all__ = [
    "NONCE_BYTES",
    "SCALAR_BYTES",
    "SHARE_DST",
    "SHARE_KEY_DST",
    "SelfMaskError",
    "random_scalars",
    "lagrange_coefficients",
    "derived_holders",
    "derived_share",
    "split",
    "combine",
    "consistent",
    "sealed_size",
    "seal_vector",
    "open_vector",
]

NONCE_BYTES = 12
SCALAR_BYTES = 32
SHARE_DST = b"meterhub/v2/self-mask-share/x25519-hkdf-sha256"
SHARE_KEY_DST = b"meterhub/v2/self-mask-share-key/x25519-hkdf-sha256"
_WIDE = 48  # bytes reduced mod Q per scalar, as in zerosum: bias from uniform below 2^-128
_BLOCK_SCALARS = (255 * 32) // _WIDE  # HKDF-Expand gives at most 255 hash blocks
MAX_INDEX = 0xFFFF


class SelfMaskError(MeterhubError, ValueError):
    """A share, index set or sealed share that cannot be used."""


def _reduce(stream: bytes) -> list[int]:
    return [int.from_bytes(stream[k : k + _WIDE], "big") % Q for k in range(0, len(stream), _WIDE)]


def random_scalars(random_bytes: Callable[[int], bytes], count: int) -> list[int]:
    """``count`` uniform scalars mod ``Q`` (48 random bytes each, reduced) from the
    caller's RNG: ``secrets.token_bytes`` or a card's random source."""
    raw = random_bytes(_WIDE * count)
    if len(raw) != _WIDE * count:
        raise SelfMaskError("the random source gave the wrong number of bytes")
    return _reduce(raw)


@lru_cache(maxsize=1024)
def _coefficients(xs: tuple[int, ...], at: int) -> tuple[int, ...]:
    ell = 1
    for x in xs:
        ell = ell * (at - x) % Q
    out = []
    for j, xj in enumerate(xs):
        w = 1
        for m, xm in enumerate(xs):
            if m != j:
                w *= xj - xm
        out.append(ell * pow((at - xj) * w % Q, -1, Q) % Q)
    return tuple(out)


def lagrange_coefficients(xs: Sequence[int], at: int = 0) -> tuple[int, ...]:
    """``lambda_j`` with ``f(at) = sum_j lambda_j f(xs[j])`` for every polynomial ``f``
    of degree below ``len(xs)`` over Z_Q (Lagrange's formula, ``lambda_j = prod_{m != j}
    (at - x_m) / (x_j - x_m)``). The points are distinct indices ``0..65535``."""
    pts = tuple(int(x) for x in xs)
    if not pts or len(set(pts)) != len(pts) or any(not 0 <= x <= MAX_INDEX for x in pts):
        raise SelfMaskError("interpolation needs distinct points 0..65535")
    if at in pts:
        return tuple(1 if x == at else 0 for x in pts)
    return _coefficients(pts, at)


def _apply(coeffs: Sequence[int], vectors: Sequence[Sequence[int]]) -> list[int]:
    width = len(vectors[0])
    if any(len(v) != width for v in vectors):
        raise SelfMaskError("share vectors of different lengths")
    out = [0] * width
    for c, v in zip(coeffs, vectors, strict=True):
        for k, y in enumerate(v):
            out[k] += c * y
    return [y % Q for y in out]


def derived_holders(members: int, dealer: int, threshold: int) -> list[int]:
    """The ``threshold - 1`` indices whose shares of the dealer's self-mask are derived
    from the pair secret, not sent: the members after ``dealer`` in the cyclic order of
    indices ``1..members``."""
    if not 1 <= dealer <= members or not 1 <= threshold <= members - 1:
        raise SelfMaskError("threshold must be 1..members - 1 and the dealer a member")
    return [(dealer - 1 + k) % members + 1 for k in range(1, threshold)]


def derived_share(pair: PairKey, context: bytes, count: int) -> list[int]:
    """The share ``f(x)`` of ``count`` scalars that dealer and holder ``x`` both derive:
    HKDF-SHA256 of the pair's X25519 secret (salt: the pair's two public keys; info:
    :data:`SHARE_DST`, the caller's context naming group, day, dealer and holder, and
    a block counter)."""
    out: list[int] = []
    block = 0
    while len(out) < count:
        n = min(_BLOCK_SCALARS, count - len(out))
        info = SHARE_DST + len(context).to_bytes(2, "big") + context + block.to_bytes(4, "big")
        out.extend(_reduce(HKDF(hashes.SHA256(), n * _WIDE, pair.salt, info).derive(pair.secret)))
        block += 1
    return out


def split(secret: Sequence[int], fixed: Mapping[int, Sequence[int]], at: Sequence[int]) -> dict[int, list[int]]:
    """The shares ``f(x)`` for ``x`` in ``at`` of the polynomial (vector) ``f`` of
    degree ``len(fixed)`` with ``f(0) = secret`` and ``f(x) = fixed[x]``: the threshold
    is ``len(fixed) + 1``."""
    xs = (0, *fixed)
    base = [list(secret), *(list(v) for v in fixed.values())]
    if 0 in fixed or any(x in xs for x in at):
        raise SelfMaskError("the points to evaluate must differ from 0 and the fixed ones")
    return {x: _apply(lagrange_coefficients(xs, x), base) for x in at}


def combine(shares: Mapping[int, Sequence[int]]) -> list[int]:
    """``f(0)`` from ``threshold`` shares ``{x: f(x)}`` (more points than the threshold
    also give ``f(0)`` when they lie on ``f``; :func:`consistent` checks that)."""
    if not shares:
        raise SelfMaskError("no shares")
    return _apply(lagrange_coefficients(tuple(shares), 0), list(shares.values()))


def consistent(shares: Mapping[int, Sequence[int]], threshold: int, weights: Sequence[int]) -> list[int]:
    """The indices beyond the first ``threshold`` whose share does not lie on the
    polynomial of degree ``threshold - 1`` through the first ``threshold`` shares,
    tested on the random linear combination ``weights`` of the coordinates (a wrong
    share passes with probability ``1/Q`` over the weights, which the caller draws
    fresh; Schwartz-Zippel)."""
    xs = list(shares)
    if len(xs) < threshold:
        raise SelfMaskError(f"{len(xs)} shares, the threshold is {threshold}")
    folded = {x: sum(w * y for w, y in zip(weights, v, strict=True)) % Q for x, v in shares.items()}
    base = xs[:threshold]
    bad = []
    for x in xs[threshold:]:
        c = lagrange_coefficients(base, x)
        if sum(ci * folded[b] for ci, b in zip(c, base, strict=True)) % Q != folded[x]:
            bad.append(x)
    return bad


def sealed_size(count: int) -> int:
    """Bytes of a sealed share of ``count`` scalars: nonce, ``u16 index || count x 32``,
    GCM tag."""
    return NONCE_BYTES + 2 + SCALAR_BYTES * count + 16


def _share_key(pair: PairKey) -> AESGCM:
    key = HKDF(hashes.SHA256(), 32, pair.salt, SHARE_KEY_DST).derive(pair.secret)
    return AESGCM(key)


def seal_vector(pair: PairKey, aad: bytes, index: int, share: Sequence[int], nonce: bytes) -> bytes:
    """``nonce || AES-256-GCM(u16 index || scalars)`` under the key derived from the
    pair secret; ``aad`` binds group, day, dealer and holder (the caller builds it)."""
    if len(nonce) != NONCE_BYTES or not 1 <= index <= MAX_INDEX or any(not 0 <= y < Q for y in share):
        raise SelfMaskError("bad share or nonce")
    plain = index.to_bytes(2, "big") + b"".join(y.to_bytes(SCALAR_BYTES, "big") for y in share)
    return nonce + _share_key(pair).encrypt(nonce, plain, aad)


def open_vector(pair: PairKey, aad: bytes, sealed: bytes, count: int) -> tuple[int, list[int]]:
    """The ``(index, share)`` inside ``sealed``; :class:`SelfMaskError` if it was not
    sealed under this pair's key with this ``aad``, or holds another number of scalars
    or one not below ``Q``."""
    if len(sealed) != sealed_size(count):
        raise SelfMaskError(f"a sealed share of {count} scalars is {sealed_size(count)} bytes")
    try:
        plain = _share_key(pair).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise SelfMaskError("the sealed share does not open under this pair's key and context") from None
    share = [int.from_bytes(plain[k : k + SCALAR_BYTES], "big") for k in range(2, len(plain), SCALAR_BYTES)]
    if any(y >= Q for y in share):
        raise SelfMaskError("a share scalar is not below the group order")
    return int.from_bytes(plain[:2], "big"), share
