"""IEC 62056-47 (Green Book 1000-2 Ed. 9 §7.3.3) wrapper framing over TCP/UDP, sans-IO.

Each APDU travels behind an 8-byte header: ``version (=1) | source wPort |
destination wPort | length``, all Unsigned16 big-endian. The header codec is
``dlms_cosem.protocol.wrappers.WrapperHeader``; this module adds the stream
reassembly a TCP server needs, bounded so that a peer announcing a huge length
cannot make us buffer without limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlms_cosem.protocol.wrappers import WrapperHeader

from ...errors import MeterhubError

__all__ = ["WrapperError", "WrapperFrame", "WrapperDecoder", "HEADER_LEN", "WRAPPER_VERSION"]

HEADER_LEN = 8
WRAPPER_VERSION = 1


class WrapperError(MeterhubError, ValueError):
    """A byte stream that is not a sequence of well-formed wrapper frames."""


@dataclass(frozen=True)
class WrapperFrame:
    source: int
    destination: int
    apdu: bytes

    def to_bytes(self) -> bytes:
        if len(self.apdu) > 0xFFFF:
            raise WrapperError("an APDU longer than 65535 bytes does not fit a wrapper frame")
        header = WrapperHeader(self.source, self.destination, len(self.apdu))
        head: bytes = header.to_bytes()  # dlms_cosem ships no type information
        return head + self.apdu


class WrapperDecoder:
    """Feed it bytes as they arrive; it returns the complete frames.

    Raises :class:`WrapperError` on a version other than 1, a zero length or a
    length above ``max_apdu``; the caller then closes the connection
    (IEC 62056-47 has no resynchronisation).
    """

    def __init__(self, max_apdu: int = 0xFFFF) -> None:
        self.max_apdu = max_apdu
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[WrapperFrame]:
        self._buf += data
        frames: list[WrapperFrame] = []
        while len(self._buf) >= HEADER_LEN:
            header = WrapperHeader.from_bytes(bytes(self._buf[:HEADER_LEN]))
            if header.version != WRAPPER_VERSION:
                raise WrapperError(f"wrapper version {header.version}")
            if header.length == 0 or header.length > self.max_apdu:
                raise WrapperError(f"wrapper length {header.length} out of range")
            end = HEADER_LEN + header.length
            if len(self._buf) < end:
                break
            frames.append(
                WrapperFrame(header.source_wport, header.destination_wport, bytes(self._buf[HEADER_LEN:end]))
            )
            del self._buf[:end]
        return frames
