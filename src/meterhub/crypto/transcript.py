"""Fiat-Shamir transcripts with domain separation, and the proof layer's error.

A :class:`Transcript` turns an interactive public-coin protocol (a sigma
protocol, Maurer 2009; a range proof, Bünz et al. 2018, section 4.4) into a
non-interactive one (Fiat and Shamir, CRYPTO 1986). It follows the design of
Merlin (the transcript of the dalek Bulletproofs): a protocol label first, then
labelled messages, and challenges squeezed from the running state. It is built
only on SHA-256 from :mod:`hashlib`:

* the state is a running SHA-256 over the framed absorbs;
* every absorb is framed as ``op(1) || len(label)(4) || label || len(msg)(8) || msg``
  (lengths big-endian), so no two different sequences of absorbs collide;
* a challenge is ``SHA-256(state || "chal" || label || counter || i)`` for
  ``i = 0, 1`` (64 bytes), reduced mod ``Q``: the bias is below ``2^-256``.
  The 64 output bytes are absorbed back, so later challenges depend on it.

:class:`ProofContext` is the public context that every meterhub proof binds to:
meter id, period, tariff id and version, and a free-form statement label. A
proof made for one meter, period or tariff never verifies for another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import MeterhubError
from .group import G, H, Point, Q, scalar_to_bytes

__all__ = ["GROUP_NAME", "ProofError", "ProofContext", "Transcript"]

#: Name of the group, absorbed into every transcript.
GROUP_NAME = b"secp256k1"
#: Version of the transcript framing itself.
_TRANSCRIPT_DST = b"meterhub/transcript/v1/sha256"

# Operation codes: an absorb can never be confused with a challenge squeeze.
_OP_PROTOCOL = b"\x00"
_OP_APPEND = b"\x01"
_OP_CHALLENGE = b"\x02"


class ProofError(MeterhubError, ValueError):
    """A proof or a statement is malformed (wrong length, tag, version, encoding)."""


def _frame(op: bytes, label: bytes, message: bytes) -> bytes:
    return op + len(label).to_bytes(4, "big") + label + len(message).to_bytes(8, "big") + message


class Transcript:
    """A Merlin-style Fiat-Shamir transcript over SHA-256.

    ``Transcript(b"meterhub/opening/v1")`` starts a transcript for one protocol;
    ``append_*`` absorbs public data with a label; ``challenge_scalar`` derives
    a challenge in ``[0, Q)``. The prover and the verifier must perform the
    same sequence of calls.
    """

    __slots__ = ("_h", "_counter")

    def __init__(self, protocol: bytes) -> None:
        if not isinstance(protocol, bytes) or not protocol:
            raise ValueError("protocol label must be non-empty bytes")
        self._h = hashlib.sha256(_TRANSCRIPT_DST)
        self._counter = 0
        self._h.update(_frame(_OP_PROTOCOL, b"protocol", protocol))

    def copy(self) -> Transcript:
        """An independent copy (for forking a transcript into sub-proofs)."""
        t = Transcript.__new__(Transcript)
        t._h = self._h.copy()
        t._counter = self._counter
        return t

    # -- absorbs -------------------------------------------------------------
    def append_message(self, label: bytes, message: bytes) -> None:
        """Absorb ``message`` under ``label`` (both length-prefixed)."""
        self._h.update(_frame(_OP_APPEND, label, bytes(message)))

    def append_u64(self, label: bytes, n: int) -> None:
        if not 0 <= n < 1 << 64:
            raise ValueError("u64 out of range")
        self.append_message(label, n.to_bytes(8, "big"))

    def append_scalar(self, label: bytes, k: int) -> None:
        """Absorb a scalar reduced mod ``Q`` (32 bytes big-endian)."""
        self.append_message(label, scalar_to_bytes(k))

    def append_int(self, label: bytes, k: int) -> None:
        """Absorb an arbitrary (possibly negative) integer, sign and magnitude."""
        mag = abs(k).to_bytes((abs(k).bit_length() + 7) // 8, "big")
        self.append_message(label, (b"-" if k < 0 else b"+") + mag)

    def append_point(self, label: bytes, p: Point) -> None:
        """Absorb a point in its canonical 33-byte encoding."""
        self.append_message(label, p.to_bytes())

    def append_points(self, label: bytes, points: Iterable[Point]) -> None:
        """Absorb a list of points: its length, then each point."""
        enc = [p.to_bytes() for p in points]
        self.append_message(label, len(enc).to_bytes(8, "big") + b"".join(enc))

    def append_group(self) -> None:
        """Absorb the group name and both Pedersen generators."""
        self.append_message(b"group", GROUP_NAME)
        self.append_point(b"G", G)
        self.append_point(b"H", H)

    # -- squeezes ------------------------------------------------------------
    def challenge_bytes(self, label: bytes, n: int = 64) -> bytes:
        """``n`` pseudo-random bytes bound to everything absorbed so far."""
        if not 0 < n <= 255 * 32:
            raise ValueError("challenge length out of range")
        base = self._h.copy()
        base.update(_frame(_OP_CHALLENGE, label, self._counter.to_bytes(8, "big")))
        out = b"".join(_extend(base, i) for i in range((n + 31) // 32))[:n]
        self._counter += 1
        # Absorb the output so the next challenge depends on this one.
        self._h.update(_frame(_OP_CHALLENGE, label, out))
        return out

    def challenge_scalar(self, label: bytes) -> int:
        """A challenge in ``[0, Q)`` from 64 bytes mod ``Q`` (bias < 2^-256)."""
        return int.from_bytes(self.challenge_bytes(label, 64), "big") % Q

    def challenge_scalars(self, label: bytes, n: int) -> list[int]:
        """``n`` challenges (e.g. batch-verification weights), 64 bytes each."""
        out: list[int] = []
        while len(out) < n:
            k = min(n - len(out), 127)  # challenge_bytes yields at most 8160 bytes
            raw = self.challenge_bytes(label, 64 * k)
            out.extend(int.from_bytes(raw[64 * i : 64 * i + 64], "big") % Q for i in range(k))
        return out


def _extend(base: hashlib._Hash, i: int) -> bytes:
    h = base.copy()
    h.update(i.to_bytes(4, "big"))
    return h.digest()


@dataclass(frozen=True, slots=True)
class ProofContext:
    """Public context bound into every proof (Rial & Danezis WPES 2011, section 4:
    the bill is tied to the meter, the billing period and the tariff).

    ``statement`` is a free-form label of what is proved (e.g. ``b"tier-row"``)
    chosen by the caller; it is absorbed as well.
    """

    meter_id: str = ""
    period: str = ""
    tariff_id: str = ""
    tariff_version: int = 0
    statement: bytes = b""

    def __post_init__(self) -> None:
        if not all(isinstance(x, str) for x in (self.meter_id, self.period, self.tariff_id)):
            raise TypeError("meter id, period and tariff id must be str")
        if not isinstance(self.statement, bytes):
            raise TypeError("statement must be bytes")
        if not isinstance(self.tariff_version, int) or not 0 <= self.tariff_version < 1 << 64:
            raise ValueError("tariff version must fit in 64 bits")

    def transcript(self, protocol: bytes) -> Transcript:
        """A fresh transcript for ``protocol`` with the group and this context absorbed."""
        t = Transcript(protocol)
        t.append_group()
        t.append_message(b"meter-id", self.meter_id.encode("utf-8"))
        t.append_message(b"period", self.period.encode("utf-8"))
        t.append_message(b"tariff-id", self.tariff_id.encode("utf-8"))
        t.append_u64(b"tariff-version", self.tariff_version)
        t.append_message(b"statement", bytes(self.statement))
        return t
