"""The fixed-size binary units every party exchanges (docs/formats.md).

One codec each, used by producer and consumer alike:

* **opening unit** (36 bytes): ``u32 m (Wh) || 32-byte r`` big-endian, the
  secret behind one Pedersen commitment ``C_i = m_i G + r_i H``. It is the
  plaintext of the sealed home-link openings, the readings applet's PUT DAY
  payload and what the applets store per interval (docs/formats.md, "Sealed
  openings"; docs/card.md, PUT DAY).
* **commitment** (33 bytes): a SEC 1 compressed point (SEC 1 v2 §2.3.3); runs of
  them travel as one concatenated blob (``c33``) so that they are decoded only
  where they are used (a 33-byte decode costs a square root).
* **commitment record** (41 bytes): ``u64 index || 33-byte commitment`` (the
  meter's utility file, docs/formats.md "Commitment records").
* **day** (4 bytes): ``u16 year || u8 month || u8 day`` in APDU and STORE DATA
  payloads (docs/card.md).

The decoders check framing only; what a value means (range, point validity)
is checked where it is used, so that the caller can name the interval at fault.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from datetime import date

from ...crypto.group import Q
from ...crypto.pedersen import Opening
from ..errors import FormatError

__all__ = [
    "COMMITMENT_SIZE",
    "DAY_SIZE",
    "MAX_READING_WH",
    "OPENING_SIZE",
    "OpeningUnits",
    "RECORD_SIZE",
    "commitment_at",
    "commitment_count",
    "decode_day",
    "decode_openings",
    "decode_records",
    "encode_day",
    "encode_openings",
    "encode_records",
    "iter_commitments",
    "iter_opening_units",
    "opening_unit_at",
]

OPENING_SIZE = 36
#: Largest reading a meter reports in one interval (2^32 - 1 Wh); readings are u32 on the wire.
MAX_READING_WH = 0xFFFFFFFF
COMMITMENT_SIZE = 33
RECORD_SIZE = 8 + COMMITMENT_SIZE
DAY_SIZE = 4

_OPENING = struct.Struct(">I32s")
_DAY = struct.Struct(">HBB")


# ---------------------------------------------------------------------------
# Opening units (u32 m || 32-byte r)
# ---------------------------------------------------------------------------
def encode_openings(openings: Iterable[Opening]) -> bytes:
    """The 36-byte units of ``openings``, concatenated in order."""
    return b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in openings)


def iter_opening_units(blob: bytes) -> Iterator[tuple[int, int]]:
    """``(m, r)`` of each 36-byte unit as plain integers (no :class:`Opening`
    objects: the applets sum millions of them). ``r`` is not range-checked here."""
    if len(blob) % OPENING_SIZE:
        raise FormatError(f"opening units are {OPENING_SIZE} bytes; {len(blob)} bytes is no whole number of them")
    frm = int.from_bytes
    for m, r in _OPENING.iter_unpack(blob):
        yield m, frm(r, "big")


def opening_unit_at(blob: bytes, k: int) -> tuple[int, int]:
    """``(m, r)`` of the ``k``-th unit (0-based) of ``blob``."""
    off = OPENING_SIZE * k
    if k < 0 or off + OPENING_SIZE > len(blob):
        raise FormatError(f"opening unit {k} lies outside the {len(blob)}-byte blob")
    m, r = _OPENING.unpack_from(blob, off)
    return m, int.from_bytes(r, "big")


def decode_openings(blob: bytes, count: int | None = None) -> list[Opening]:
    """The units as :class:`Opening` values; :class:`FormatError` if the length is
    not ``count`` units (when given) or a blinding is not below the group order."""
    if count is not None and len(blob) != OPENING_SIZE * count:
        raise FormatError(f"{len(blob)} bytes do not hold {count} opening units")
    out = []
    for m, r in iter_opening_units(blob):
        if r >= Q:
            raise FormatError("blinding factor out of range")
        out.append(Opening(m, r))
    return out


class OpeningUnits(Sequence[Opening]):
    """Stored 36-byte units seen as a sequence of :class:`Opening` values, decoded on
    access; :meth:`pairs` gives the plain ``(m, r)`` integers without building any
    object (what a linear sum over a month of readings wants on the card)."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        if len(blob) % OPENING_SIZE:
            raise FormatError(f"opening units are {OPENING_SIZE} bytes; {len(blob)} bytes is no whole number of them")
        self.blob = bytes(blob)

    def __len__(self) -> int:
        return len(self.blob) // OPENING_SIZE

    def __getitem__(self, k: int) -> Opening:  # type: ignore[override]  # no slices needed
        if k < 0:
            k += len(self)
        return Opening(*opening_unit_at(self.blob, k))

    def __iter__(self) -> Iterator[Opening]:
        return (Opening(m, r) for m, r in iter_opening_units(self.blob))

    def pairs(self) -> Iterator[tuple[int, int]]:
        return iter_opening_units(self.blob)


# ---------------------------------------------------------------------------
# Commitments (33-byte compressed points) and commitment records
# ---------------------------------------------------------------------------
def commitment_count(c33: bytes) -> int:
    """How many 33-byte commitments ``c33`` holds; :class:`FormatError` if no whole number."""
    n, rem = divmod(len(c33), COMMITMENT_SIZE)
    if rem:
        raise FormatError(f"commitment blob length {len(c33)} is not a multiple of {COMMITMENT_SIZE}")
    return n


def commitment_at(c33: bytes, k: int) -> bytes:
    """The ``k``-th (0-based) 33-byte commitment of ``c33``, still encoded."""
    off = COMMITMENT_SIZE * k
    if k < 0 or off + COMMITMENT_SIZE > len(c33):
        raise FormatError(f"commitment {k} lies outside the {len(c33)}-byte blob")
    return c33[off : off + COMMITMENT_SIZE]


def iter_commitments(c33: bytes) -> Iterator[bytes]:
    """Each 33-byte commitment of ``c33`` in order, still encoded."""
    for k in range(commitment_count(c33)):
        yield c33[COMMITMENT_SIZE * k : COMMITMENT_SIZE * (k + 1)]


def encode_records(first_index: int, commitments33: bytes) -> bytes:
    """``(i, C_i)`` records for a contiguous run of 33-byte commitments."""
    return b"".join(
        (first_index + k).to_bytes(8, "big") + c for k, c in enumerate(iter_commitments(commitments33))
    )


def decode_records(data: bytes) -> tuple[list[int], bytes]:
    """Split records into their indices and the concatenated 33-byte commitments.

    Only the framing is checked here; whether the points are valid and the
    indices contiguous is the verifier's business, so that it can say which
    interval is at fault.
    """
    n, rem = divmod(len(data), RECORD_SIZE)
    if rem:
        raise FormatError(f"commitment records must be {RECORD_SIZE}-byte units")
    fields = _records_struct(n).unpack(data)  # one C call: i_0, C_0, i_1, C_1, ...
    return list(fields[0::2]), b"".join(fields[1::2])


_RECORDS_STRUCTS: dict[int, struct.Struct] = {}


def _records_struct(n: int) -> struct.Struct:
    """``struct`` layout of ``n`` records (u64 index || 33-byte commitment), cached: the
    utility's ingest decodes a day's 92/96/100 records per upload."""
    st = _RECORDS_STRUCTS.get(n)
    if st is None:
        st = struct.Struct(">" + f"Q{COMMITMENT_SIZE}s" * n)
        if len(_RECORDS_STRUCTS) < 64:  # a few day lengths in practice; bounded anyway
            _RECORDS_STRUCTS[n] = st
    return st


# ---------------------------------------------------------------------------
# Days (u16 year || u8 month || u8 day)
# ---------------------------------------------------------------------------
def encode_day(d: date) -> bytes:
    """The 4-byte day of APDU and STORE DATA payloads."""
    return _DAY.pack(d.year, d.month, d.day)


def decode_day(raw: bytes) -> date:
    """The inverse of :func:`encode_day`; :class:`FormatError` for a wrong length or no such day."""
    try:
        y, m, d = _DAY.unpack(raw)
        return date(y, m, d)
    except (struct.error, ValueError):
        raise FormatError("bad date (u16 year, u8 month, u8 day)") from None
