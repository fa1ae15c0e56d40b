"""The simulated meter: commit to each reading, chain the commitments, sign a batch a day.

Data flow (docs/architecture.md, "Data flow for one interval"):

1. for interval ``i`` the meter measures ``m_i`` Wh, draws ``r_i`` uniformly
   mod ``Q`` and commits ``C_i = m_i*G + r_i*H`` (libsecp256k1's constant-time
   ``ecmult_gen`` and ``ecmult_const``, :func:`meterhub.crypto.pedersen.commit_point`);
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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from ..crypto import ecdsa
from ..crypto.group import random_scalar
from ..crypto.pedersen import Opening, commit_point

# The batch wire format and the commitment chain live in the model layer (one home shared
# with the hub and the utility); re-exported here for the meter's callers.
from ..model.formats.batch import (
    BATCH_VERSION,
    BATCH_VERSION_REGISTERS,
    MAX_READING_WH,
    BatchError,
    DailyBatch,
    SignedBatch,
    chain_genesis,
    chain_hasher,
    chain_head,
)

__all__ = [
    "BATCH_VERSION",
    "BATCH_VERSION_REGISTERS",
    "MAX_READING_WH",
    "BatchError",
    "DailyBatch",
    "SignedBatch",
    "DayRecord",
    "Meter",
    "chain_genesis",
    "chain_hasher",
    "chain_head",
]


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
            # Constant time in the reading and the blinding (pedersen.commit_point).
            c = commit_point(wh, r).to_bytes()
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

