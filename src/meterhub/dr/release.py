"""The demand-response applet's release (docs/formats.md, "DR release") and the
linear combinations both sides compute (docs/demand-response.md).

One class, :class:`DRRelease`, is the wire format used by the applet (producer) and
the utility (consumer). Big-endian::

    u8 version (1: CAISO, 2: PJM) | text meter id | text event id | 32 event digest
    | 16-byte applet AID (len-prefixed text, hex) | 32 code hash
    | u8 N days | u16 a | i64 S | 32 R_S | u8 range bits n (16, 32 or 64)
    | u16 proof length | proof

CAISO (version 1): ``N`` baseline days (5..10, or 4 on a weekend), ``a`` the adjustment
factor in permille, the proof over the one or two adjustment bounds. PJM (version 2):
``N`` candidate days (5, or 3 on a weekend), ``a`` the index of the dropped candidate
(the lowest event-window usage), the proof over the ``N - 1`` selection bounds
(:func:`meterhub.dr.event.pjm_selection_bounds`).

``text`` is ``u8 length || UTF-8``. ``S`` is the scaled reduction, ``R_S`` its opening
(mod Q), the proof a Bulletproof (``meterhub.crypto.bulletproofs``) over the
one or two adjustment bounds (``n`` the shortest of 16, 32, 64 that both fit), bound by a :class:`ProofContext` to meter and event.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..crypto.group import Q
from ..crypto.transcript import ProofContext
from .event import (
    ADJ_CAP_HIGH,
    ADJ_CAP_LOW,
    MAX_BASELINE_DAYS,
    METHOD_CAISO,
    METHOD_PJM,
    PJM_CANDIDATES,
    WEEKEND_BASELINE_DAYS,
    EventError,
)

__all__ = ["DRRelease", "RANGE_BITS", "range_bits", "adjustment_bounds", "proof_context", "reduction_coefficients"]

RELEASE_VERSION = {METHOD_CAISO: 1, METHOD_PJM: 2}
RANGE_BITS = (16, 32, 64)


def range_bits(values: list[int]) -> int:
    """The shortest of 16, 32 or 64 bits that every bounded value fits.

    The two bounds add up to ``X - 1`` (``X`` the baseline days' adjustment-window
    sum), so for a household both usually fit 16 bits: two 16-bit values need 32
    vector generators, all of which have fixed-base tables
    (:data:`meterhub.crypto.bulletproofs.TABLE_GENERATORS`), so neither prover nor
    verifier multiplies a generator. The width is public: it tells the recipient
    whether both slacks are below 2^16 (or 2^32), i.e. one of three widths, under
    two bits about the size of ``X`` per event (docs/demand-response.md)."""
    for bits in RANGE_BITS:
        if all(v < 1 << bits for v in values):
            return bits
    raise EventError("adjustment bound does not fit 64 bits")


def _text(s: str) -> bytes:
    raw = s.encode()
    if len(raw) > 255:
        raise EventError("text longer than 255 bytes")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class DRRelease:
    meter_id: str
    event_id: str
    event_digest: bytes
    applet_aid: str
    code_hash: bytes
    n_days: int
    adjustment: int
    scaled_reduction: int
    blinding: int
    bits: int
    proof: bytes
    method: int = METHOD_CAISO

    def to_bytes(self) -> bytes:
        return (
            bytes([RELEASE_VERSION[self.method]]) + _text(self.meter_id) + _text(self.event_id) + self.event_digest
            + _text(self.applet_aid) + self.code_hash
            + struct.pack(">BHq", self.n_days, self.adjustment, self.scaled_reduction)
            + self.blinding.to_bytes(32, "big") + struct.pack(">BH", self.bits, len(self.proof)) + self.proof
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> DRRelease:
        """Strict parse; raises :class:`EventError` naming the fault."""
        raw = bytes(raw)
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(raw):
                raise EventError("DR release truncated")
            out = raw[pos : pos + n]
            pos += n
            return out

        def text() -> str:
            n = take(1)[0]
            try:
                return take(n).decode()
            except UnicodeDecodeError:
                raise EventError("DR release: bad text") from None

        version = take(1)[0]
        method = next((m for m, v in RELEASE_VERSION.items() if v == version), None)
        if method is None:
            raise EventError("DR release: another version")
        meter_id, event_id = text(), text()
        digest = take(32)
        aid = text()
        code_hash = take(32)
        n, a, s = struct.unpack(">BHq", take(11))
        r = int.from_bytes(take(32), "big")
        bits, plen = struct.unpack(">BH", take(3))
        proof = take(plen)
        if pos != len(raw):
            raise EventError("DR release: trailing bytes")
        if method == METHOD_PJM:
            fields_ok = n in PJM_CANDIDATES.values() and 0 <= a < n
        else:
            fields_ok = ADJ_CAP_LOW <= a <= ADJ_CAP_HIGH and WEEKEND_BASELINE_DAYS <= n <= MAX_BASELINE_DAYS
        if r >= Q or not fields_ok or bits not in RANGE_BITS:
            raise EventError("DR release: field out of range")
        return cls(meter_id, event_id, digest, aid, code_hash, n, a, s, r, bits, proof, method)


_STATEMENT = {METHOD_CAISO: b"dr-adjustment", METHOD_PJM: b"dr-pjm-selection"}


def proof_context(meter_id: str, event_id: str, digest: bytes, method: int = METHOD_CAISO) -> ProofContext:
    """Binds the range proof to meter, event (id and digest) and what it proves."""
    return ProofContext(meter_id=meter_id, period=event_id, tariff_id=digest.hex(), statement=_STATEMENT[method])


def reduction_coefficients(a: int, n_days: int) -> tuple[int, int]:
    """``(k_baseline, k_event)``: ``S = k_baseline * sum_{D,E} m + k_event * sum_E m_e``."""
    return a, -1000 * n_days


def adjustment_bounds(a: int, n_days: int) -> list[tuple[int, int, int]]:
    """The bounds that prove ``a``: each ``(k_A, k_X, const)`` is a value
    ``k_A*A + k_X*X + const >= 0`` to be range-proved (module docstring of dr.event)."""
    out = []
    if a > ADJ_CAP_LOW:
        out.append((1000 * n_days, -a, 0))
    if a < ADJ_CAP_HIGH:
        out.append((-1000 * n_days, a + 1, -1))
    return out
