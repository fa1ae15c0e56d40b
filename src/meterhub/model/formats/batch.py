"""The meter's signed daily batch and its commitment hash chain (docs/formats.md, "Daily batch").

The wire format is shared by the meter that signs it, the hub that stores it and the
utility that verifies it, so it lives in the model layer (docs/architecture.md,
"Layers"); :mod:`meterhub.meter.device` re-exports these names for the meter.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import date

from ...crypto import ecdsa
from ...errors import MeterhubError
from .units import COMMITMENT_SIZE
from .units import MAX_READING_WH as _MAX_READING_WH

__all__ = [
    "BATCH_VERSION",
    "BATCH_VERSION_REGISTERS",
    "MAX_READING_WH",
    "BatchError",
    "DailyBatch",
    "SignedBatch",
    "chain_genesis",
    "chain_hasher",
    "chain_head",
]


_GENESIS_DST = b"meterhub/v1/commitment-chain/genesis"
_STEP_DST = b"meterhub/v1/commitment-chain/step"
_BATCH_DST = b"meterhub/v1/daily-batch\x00"
BATCH_VERSION = 1
#: Version 2 adds the cumulative energy register (Wh) at the day's start and end boundary.
BATCH_VERSION_REGISTERS = 2
#: Largest reading a meter reports in one interval (docs/formats.md: readings are u32 on the wire).
MAX_READING_WH = _MAX_READING_WH


class BatchError(MeterhubError, ValueError):
    """A batch or commitment record that cannot be decoded."""


def chain_genesis(meter_id: str) -> bytes:
    """Head of the empty chain: ``SHA-256(len || DST || meter_id)``; binds the chain to the meter."""
    mid = meter_id.encode()
    return hashlib.sha256(
        bytes([len(_GENESIS_DST)]) + _GENESIS_DST + len(mid).to_bytes(2, "big") + mid
    ).digest()


_STEP_PREFIX = bytes([len(_STEP_DST)]) + _STEP_DST


def chain_hasher(prev_head: bytes, first_index: int) -> hashlib._Hash:
    """Start a day's link of the chain; feed it the day's 33-byte commitments in order.

    ``head_d = SHA-256(len || DST || head_{d-1} || u64(first_index) || C_first || ... || C_last)``.
    The meter streams each commitment in as it is made; the verifier hashes
    the day's blob in one pass. Positions are implied by the fixed 33-byte
    width and ``first_index``, so a dropped, repeated, reordered or altered
    commitment changes the head.
    """
    if len(prev_head) != 32:
        raise BatchError("chain head must be 32 bytes")
    return hashlib.sha256(_STEP_PREFIX + prev_head + first_index.to_bytes(8, "big"))


def chain_head(prev_head: bytes, first_index: int, commitments33: bytes) -> bytes:
    """The head after a day's commitments (see :func:`chain_hasher`)."""
    if len(commitments33) % COMMITMENT_SIZE:
        raise BatchError("commitment blob length is not a multiple of 33")
    h = chain_hasher(prev_head, first_index)
    h.update(commitments33)
    return h.digest()


@dataclass(frozen=True, slots=True)
class DailyBatch:
    """What the meter signs at the end of a local day (docs/formats.md, "Daily batch")."""

    meter_id: str
    day: date
    first_index: int
    count: int
    interval_minutes: int
    prev_head: bytes
    head: bytes
    #: Version 2 only: the meter's cumulative energy register (1.8.0, Wh) at the local
    #: day's start and end boundary; ``None`` in a version-1 batch.
    register_start_wh: int | None = None
    register_end_wh: int | None = None

    @property
    def version(self) -> int:
        return BATCH_VERSION if self.register_start_wh is None else BATCH_VERSION_REGISTERS

    def to_bytes(self) -> bytes:
        """Fixed big-endian layout: version, meter id (u8 length + UTF-8), year (u16),
        month, day, first index (u64), count (u32), interval minutes (u8), previous
        head (32), head (32); version 2 then the register at the day's start and at
        its end (u64 Wh each)."""
        mid = self.meter_id.encode()
        if not 0 < len(mid) < 256:
            raise BatchError("meter id must be 1..255 bytes of UTF-8")
        tail = b""
        if (self.register_start_wh is None) != (self.register_end_wh is None):
            raise BatchError("a version-2 batch carries both registers")
        if self.register_start_wh is not None and self.register_end_wh is not None:
            if not 0 <= self.register_start_wh <= self.register_end_wh < 1 << 64:
                raise BatchError("registers must satisfy 0 <= start <= end < 2^64")
            tail = struct.pack(">QQ", self.register_start_wh, self.register_end_wh)
        return (
            bytes([self.version, len(mid)])
            + mid
            + struct.pack(
                ">HBBQIB32s32s",
                self.day.year,
                self.day.month,
                self.day.day,
                self.first_index,
                self.count,
                self.interval_minutes,
                self.prev_head,
                self.head,
            )
            + tail
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DailyBatch:
        if len(data) < 2 or data[0] not in (BATCH_VERSION, BATCH_VERSION_REGISTERS):
            raise BatchError("unknown daily-batch version")
        n = data[1]
        body = data[2 + n :]
        want = 81 if data[0] == BATCH_VERSION else 97
        if n == 0 or len(body) != want:
            raise BatchError("daily batch has the wrong length")
        try:
            mid = data[2 : 2 + n].decode()
            y, mo, d, first, count, interval, prev, head = struct.unpack(">HBBQIB32s32s", body[:81])
            day = date(y, mo, d)
        except (UnicodeDecodeError, ValueError, struct.error) as exc:
            raise BatchError(f"malformed daily batch: {exc}") from None
        if data[0] == BATCH_VERSION:
            return cls(mid, day, first, count, interval, prev, head)
        start, end = struct.unpack(">QQ", body[81:])
        if start > end:
            raise BatchError("daily batch register runs backwards (start > end)")
        return cls(mid, day, first, count, interval, prev, head, start, end)

    def signed_message(self) -> bytes:
        return _BATCH_DST + self.to_bytes()


@dataclass(frozen=True, slots=True)
class SignedBatch:
    batch: DailyBatch
    signature: bytes  # 64-byte r || s, ECDSA P-256 / SHA-256

    def verify(self, public_key: ecdsa.VerifyingKey) -> bool:
        return ecdsa.verify(public_key, self.batch.signed_message(), self.signature, low_s=True)
