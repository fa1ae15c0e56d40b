"""SML transport protocol version 1 (SML 1.04, "SML-Transport-Protokoll Version 1";
BSI TR-03109-1 Anlage IV).

File layout::

    1b 1b 1b 1b  01 01 01 01          start sequence
    <payload>                         SML messages, every 1b1b1b1b doubled
    00 .. 00                          0..3 padding bytes to a multiple of 4
    1b 1b 1b 1b  1a <pad> <crc hi lo> end sequence

The CRC-16/X.25 covers everything from the first start byte up to and including the
padding-count byte, and is sent low byte first (as libsml, smllib and pysml do).
Escaping replaces each occurrence of the escape sequence left to right (the same
rule smllib and pysml undo with a left-to-right replace).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .crc import crc16_x25_wire
from .errors import (
    SMLCRCError,
    SMLError,
    SMLEscapeError,
    SMLLengthError,
    SMLStructureError,
    SMLTruncatedError,
)
from .messages import SmlMessage, decode_messages, encode_messages

__all__ = [
    "END_MARK",
    "ESCAPE",
    "START",
    "SmlFile",
    "SmlStreamDecoder",
    "decode_transport",
    "encode_file",
    "encode_transport",
    "parse_file",
]

ESCAPE = b"\x1b\x1b\x1b\x1b"
START = ESCAPE + b"\x01\x01\x01\x01"
END_MARK = 0x1A
_START_BODY = b"\x01\x01\x01\x01"


def encode_transport(payload: bytes) -> bytes:
    """Wrap a payload in a v1 transport file: escape, pad, end sequence, file CRC."""
    escaped = payload.replace(ESCAPE, ESCAPE + ESCAPE)
    pad = -len(escaped) % 4
    out = bytearray(START)
    out += escaped
    out += b"\x00" * pad
    out += ESCAPE
    out.append(END_MARK)
    out.append(pad)
    out += crc16_x25_wire(out).to_bytes(2, "big")
    return bytes(out)


def _scan(buf: bytes | bytearray, pos: int) -> tuple[str, int]:
    """Scan escaped payload from ``pos`` (just after a start sequence).

    Returns ("end", i) with i the offset of the end escape, ("restart", i) for a new
    start sequence at i, or ("more", i) when more input is needed (i = resume point).
    Raises :class:`SMLEscapeError` for an escape followed by anything else.
    """
    n = len(buf)
    while True:
        i = buf.find(ESCAPE, pos)
        if i < 0:
            # the last 3 bytes may be the beginning of an escape
            return "more", max(pos, n - 3)
        # measure the run of 1b bytes (up to 8): 8 is a doubled escape (payload data);
        # 4..7 means 0..3 payload 1b bytes directly before a real escape sequence
        j = i + 4
        while j < n and j < i + 8 and buf[j] == 0x1B:
            j += 1
        if j == i + 8:
            pos = j
            continue
        if n < j + 4:
            return "more", i
        esc = j - 4
        if buf[j] == END_MARK:
            return "end", esc
        if buf[j : j + 4] == _START_BODY:
            return "restart", esc
        raise SMLEscapeError(
            f"bad escape sequence 1b1b1b1b{bytes(buf[j : j + 4]).hex()} at offset {esc}"
        )


def _finish(buf: bytes | bytearray, start: int, end_esc: int) -> bytes:
    """Check padding and file CRC of the file buf[start:end_esc+8]; return the payload."""
    pad = buf[end_esc + 5]
    body_len = end_esc - (start + 8)
    # transport v1 pads with 0..3 bytes; DZG meters send 4 when already aligned (smllib's
    # Frame1 capture, pysml also accepts <= 4), so 4 is tolerated on decode only
    if pad > 4:
        raise SMLLengthError(f"padding count {pad} > 4")
    if body_len % 4:
        raise SMLLengthError(f"escaped payload of {body_len} bytes is not a multiple of 4")
    if pad > body_len:
        raise SMLLengthError(f"padding count {pad} exceeds payload of {body_len} bytes")
    crc = int.from_bytes(buf[end_esc + 6 : end_esc + 8], "big")
    expected = crc16_x25_wire(memoryview(buf)[start : end_esc + 6])
    if crc != expected:
        raise SMLCRCError(f"file CRC {crc:04x} != computed {expected:04x}")
    escaped = bytes(buf[start + 8 : end_esc])
    if pad and escaped[-pad:] != b"\x00" * pad:
        raise SMLLengthError("padding bytes are not 00")
    payload = escaped[: len(escaped) - pad].replace(ESCAPE + ESCAPE, ESCAPE)
    return payload


def decode_transport(data: bytes) -> bytes:
    """Unwrap exactly one v1 transport file and return its unescaped payload."""
    if len(data) < 16:
        raise SMLTruncatedError(f"{len(data)} bytes cannot hold a transport v1 file")
    if not data.startswith(START):
        raise SMLStructureError("file does not begin with the start sequence 1b1b1b1b01010101")
    kind, i = _scan(data, 8)
    if kind == "more":
        raise SMLTruncatedError("file ends before the end sequence")
    if kind == "restart":
        raise SMLStructureError(f"start sequence inside the file at offset {i}")
    if i + 8 != len(data):
        raise SMLStructureError(f"{len(data) - i - 8} bytes trail the end sequence")
    return _finish(data, 0, i)


def parse_file(data: bytes, *, check_message_crc: bool = True) -> list[SmlMessage]:
    """Decode one transport v1 file into its messages.  The file CRC is always checked;
    every message CRC too unless ``check_message_crc`` is False (see
    :meth:`SmlMessage.decode`)."""
    return decode_messages(decode_transport(data), check_crc=check_message_crc)


def encode_file(messages: list[SmlMessage]) -> bytes:
    """Encode messages and wrap them in one transport v1 file."""
    return encode_transport(encode_messages(messages))


@dataclass(frozen=True, slots=True)
class SmlFile:
    """One complete file found by :class:`SmlStreamDecoder`."""

    raw: bytes
    messages: list[SmlMessage]


class SmlStreamDecoder:
    """Sans-IO decoder for a byte stream of v1 files, as an optical reader sees it.

    ``feed(data)`` returns the files completed by ``data``.  Garbage between files is
    skipped; a corrupt file (bad escape, CRC, structure) is dropped, its error appended
    to :attr:`errors` (the newest ``max_errors`` kept), and decoding resynchronises on
    the next start sequence.  A file growing past ``max_file_size`` bytes is dropped,
    so memory stays bounded.
    """

    def __init__(self, *, max_file_size: int = 64 * 1024, max_errors: int = 32) -> None:
        self._buf = bytearray()
        self._scan_pos = 0  # resume point of the escape scan inside the current file
        self.max_file_size = max_file_size
        self.errors: deque[SMLError] = deque(maxlen=max_errors)
        self.skipped_bytes = 0
        self.files_ok = 0
        self.error_count = 0  # total errors ever, unlike the bounded ``errors`` deque

    def feed(self, data: bytes) -> list[SmlFile]:
        self._buf += data
        out: list[SmlFile] = []
        buf = self._buf
        while True:
            start = buf.find(START)
            if start < 0:
                # keep a tail that may begin a start sequence
                keep = 7
                if len(buf) > keep:
                    self.skipped_bytes += len(buf) - keep
                    del buf[: len(buf) - keep]
                self._scan_pos = 0
                return out
            if start:
                self.skipped_bytes += start
                del buf[:start]
                self._scan_pos = 0
            try:
                kind, i = _scan(buf, max(8, self._scan_pos))
            except SMLEscapeError as exc:
                self._drop(exc)
                continue
            if kind == "more":
                if len(buf) > self.max_file_size:
                    self._drop(SMLLengthError(f"file exceeds {self.max_file_size} bytes"))
                    continue
                self._scan_pos = i
                return out
            if kind == "restart":
                self._drop(SMLTruncatedError("file cut off by a new start sequence"), upto=i)
                continue
            raw = bytes(buf[: i + 8])
            try:
                messages = decode_messages(_finish(raw, 0, i))
            except SMLError as exc:
                # drop only this start sequence: a cut-off file can swallow the start of
                # the next one (e.g. when cut inside a doubled escape), so rescan inside
                self._drop(exc)
                continue
            del buf[: i + 8]
            self._scan_pos = 0
            self.files_ok += 1
            out.append(SmlFile(raw, messages))

    def _drop(self, exc: SMLError, upto: int | None = None) -> None:
        """Record ``exc`` and discard the current file's start so scanning moves on."""
        self._record(exc)
        cut = 8 if upto is None else upto
        self.skipped_bytes += cut
        del self._buf[:cut]
        self._scan_pos = 0

    def _record(self, exc: SMLError) -> None:
        self.errors.append(exc)
        self.error_count += 1
