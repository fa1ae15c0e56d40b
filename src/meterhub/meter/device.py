"""The simulated meter: commit to each reading, chain the commitments, sign a batch a day.

Data flow (docs/architecture.md, "Data flow for one interval"):

1. for interval ``i`` the meter measures ``m_i`` Wh, draws ``r_i`` uniformly
   mod ``Q`` and commits ``C_i = m_i*G + r_i*H``;
2. it extends a hash chain over the canonical 33-byte commitments (one link
   a day, streamed as the readings come) and, at the end of each local day, signs a :class:`DailyBatch` (meter id, day, first
   index, count, interval length, previous and new chain head) with ECDSA
   P-256;
3. the openings ``(i, m_i, r_i)`` go to the hub; ``(i, C_i)`` and the signed
   batches go to the utility.

Because each batch names the previous head, a dropped, repeated or reordered
reading, or a dropped day, breaks a signature or a chain check.
The device is sans-IO: it returns values; the CLI and transports move them.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from ..crypto import ecdsa
from ..crypto.group import H, base_mul, random_scalar
from ..crypto.pedersen import Opening
from ..errors import MeterhubError
from ..model.formats.units import COMMITMENT_SIZE
from ..model.formats.units import MAX_READING_WH as _MAX_READING_WH

__all__ = [
    "BatchError",
    "DailyBatch",
    "SignedBatch",
    "DayRecord",
    "Meter",
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


@dataclass(slots=True)
class DayRecord:
    """One local day's output of the meter."""

    batch: SignedBatch
    commitments: bytes  # concatenated 33-byte commitments, index order
    openings: list[Opening]  # to the hub only

    @property
    def first_index(self) -> int:
        return self.batch.batch.first_index


@dataclass
class Meter:
    """A meter's signing state. ``next_index`` and ``head`` persist between days."""

    meter_id: str
    signing_key: ecdsa.SigningKey
    interval_minutes: int = 15
    tz: str = "Europe/Berlin"
    next_index: int = 0
    head: bytes = field(default=b"")
    last_day: date | None = None
    #: The cumulative energy register (Wh). ``None``: version-1 batches without
    #: registers; a number: version-2 batches that sign it at each day boundary.
    register_wh: int | None = None

    def __post_init__(self) -> None:
        if not self.head:
            self.head = chain_genesis(self.meter_id)

    @property
    def public_key_bytes(self) -> bytes:
        return ecdsa.public_bytes(self.signing_key)

    def record_day(self, day: date, readings_wh: Sequence[int]) -> DayRecord:
        """Commit to one local day of readings, chain them and sign the batch.

        Days must follow each other without gaps: the chain carries over.
        """
        if self.last_day is not None and day.toordinal() != self.last_day.toordinal() + 1:
            raise ValueError(f"day {day} does not follow {self.last_day}")
        if not readings_wh:
            raise ValueError("a day has at least one reading")
        for wh in readings_wh:
            if isinstance(wh, bool) or not isinstance(wh, int) or not 0 <= wh <= MAX_READING_WH:
                raise ValueError(f"reading {wh!r} is not an integer Wh in [0, 2^32)")
        openings: list[Opening] = []
        parts: list[bytes] = []
        prev = self.head
        hasher = chain_hasher(prev, self.next_index)
        for wh in readings_wh:
            r = random_scalar()
            c = (base_mul(wh) + H * r).to_bytes()
            hasher.update(c)
            parts.append(c)
            openings.append(Opening(wh, r))
        head = hasher.digest()
        index = self.next_index + len(parts)
        reg_start = self.register_wh
        reg_end = None if reg_start is None else reg_start + sum(readings_wh)
        batch = DailyBatch(
            self.meter_id, day, self.next_index, len(parts), self.interval_minutes, prev, head,
            reg_start, reg_end,
        )
        sig = ecdsa.sign(self.signing_key, batch.signed_message())
        self.next_index = index
        self.head = head
        self.last_day = day
        self.register_wh = reg_end
        return DayRecord(SignedBatch(batch, sig), b"".join(parts), openings)

