"""HDLC framing (IEC 62056-46, Green Book 1000-2 Ed. 9 §8.4) for the meter side, sans-IO.

The HDLC-based profile: frame format type 3, ``7E | A0xx | dest | src | control |
HCS | information | FCS | 7E``, HCS/FCS the CRC-16 of the FCS-16 of RFC 1662 (the same
CRC-16/X.25 ``dlms_cosem.hdlc.frames.FCS`` computes), client addresses on one byte,
server addresses on 1, 2 or 4 bytes (upper = logical device, lower = physical
device). Only normal response mode with window size 1 is implemented, which is what
the default parameters (no negotiation, Green Book §8.4.5.3.2) give:

* SNRM → UA (carrying the parameters), DISC → UA (or DM when not connected);
* I-frames carry ``E6 E6 00`` + APDU; the answer is ``E6 E7 00`` + APDU, segmented
  into frames of at most ``max_info`` bytes, each next segment released by an RR;
* a frame with a bad HCS or FCS, a bad length or format, or another address is
  discarded without reply, as HDLC requires (§8.4.3); the peer's timer recovers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlms_cosem.hdlc.frames import FCS as _CRC

from ...errors import MeterhubError
from .server import DlmsServer, ServerAssociation

__all__ = [
    "HdlcError",
    "HdlcFrame",
    "HdlcDeframer",
    "HdlcServerLink",
    "LLC_REQUEST",
    "LLC_RESPONSE",
]

FLAG = 0x7E
LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
# Control field values with the P/F bit (0x10) cleared (Green Book §8.4.3.3).
SNRM, DISC, UA, DM, FRMR = 0x83, 0x43, 0x63, 0x0F, 0x87
PF = 0x10
MAX_FRAME_LENGTH = 0x7FF  # 11-bit length field


class HdlcError(MeterhubError, ValueError):
    """A frame that is not well-formed (format, length, address, HCS or FCS)."""


def crc16(data: bytes) -> bytes:
    """HCS/FCS bytes as transmitted (dlms-cosem's CRC-16/X.25 implementation)."""
    fcs: bytes = _CRC.calculate_for(data)  # dlms_cosem ships no type information
    return fcs


def _address(buf: bytes, pos: int) -> tuple[bytes, int]:
    start = pos
    while pos < len(buf):
        if buf[pos] & 1:
            n = pos + 1 - start
            if n not in (1, 2, 4):
                raise HdlcError(f"address of {n} bytes")
            return bytes(buf[start : pos + 1]), pos + 1
        pos += 1
        if pos - start > 4:
            break
    raise HdlcError("unterminated address")


@dataclass(frozen=True)
class HdlcFrame:
    """One HDLC frame; addresses are kept as their encoded bytes."""

    destination: bytes
    source: bytes
    control: int
    information: bytes = b""
    segmented: bool = False

    def to_bytes(self) -> bytes:
        info_part = 2 + len(self.information) if self.information else 0
        length = 2 + len(self.destination) + len(self.source) + 1 + info_part + 2
        if length > MAX_FRAME_LENGTH:
            raise HdlcError("frame too long")
        fmt = 0xA000 | (0x0800 if self.segmented else 0) | length
        header = fmt.to_bytes(2, "big") + self.destination + self.source + bytes([self.control])
        body = header + (crc16(header) + self.information if self.information else b"")
        return bytes([FLAG]) + body + crc16(body) + bytes([FLAG])

    @classmethod
    def from_bytes(cls, raw: bytes) -> HdlcFrame:
        """Parse a frame including both flags; check format, length, HCS and FCS."""
        if len(raw) < 9 or raw[0] != FLAG or raw[-1] != FLAG:
            raise HdlcError("missing flags or too short")
        fmt = int.from_bytes(raw[1:3], "big")
        if fmt & 0xF000 != 0xA000:
            raise HdlcError("not frame format type 3")
        if fmt & 0x7FF != len(raw) - 2:
            raise HdlcError("length field does not match the frame")
        body = raw[1:-3]
        if crc16(body) != raw[-3:-1]:
            raise HdlcError("FCS error")
        dest, pos = _address(raw, 3)
        src, pos = _address(raw, pos)
        if pos >= len(raw) - 3:
            raise HdlcError("no control field")
        control = raw[pos]
        pos += 1
        info = b""
        if pos < len(raw) - 3:  # an information field: HCS over the header first
            if pos + 2 > len(raw) - 3:
                raise HdlcError("truncated HCS")
            if crc16(raw[1:pos]) != raw[pos : pos + 2]:
                raise HdlcError("HCS error")
            info = bytes(raw[pos + 2 : -3])
        return cls(dest, src, control, info, bool(fmt & 0x0800))


class HdlcDeframer:
    """Split a byte stream into raw frames (flags included), resynchronising on garbage.

    Uses the length field rather than searching for the closing flag, because 0x7E may
    occur inside a frame (DLMS HDLC does no byte stuffing). Never buffers more than one
    maximum-length frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            try:
                start = self._buf.index(FLAG)
            except ValueError:
                self.dropped += len(self._buf)
                self._buf.clear()
                return out
            if start:
                self.dropped += start
                del self._buf[:start]
            if len(self._buf) < 3:
                return out
            fmt = int.from_bytes(self._buf[1:3], "big")
            if fmt & 0xF000 != 0xA000 or (fmt & 0x7FF) < 7:
                del self._buf[:1]  # not a frame start (e.g. 7E 7E): resync
                self.dropped += 1
                continue
            total = (fmt & 0x7FF) + 2
            if len(self._buf) < total:
                return out
            if self._buf[total - 1] != FLAG:
                del self._buf[:1]
                self.dropped += 1
                continue
            out.append(bytes(self._buf[:total]))
            # The closing flag may also open the next frame (Green Book §8.4.2.1).
            del self._buf[: total - 1]
            if len(self._buf) == 1:
                self._buf.clear()


@dataclass
class HdlcServerLink:
    """The meter end of one HDLC link: ``receive(bytes) -> bytes to send``."""

    dlms: DlmsServer
    logical_address: int = 1
    physical_address: int | None = None
    max_info: int = 128
    connected: bool = False
    discarded: int = 0
    _deframer: HdlcDeframer = field(default_factory=HdlcDeframer)
    _vs: int = 0
    _vr: int = 0
    _rx: bytearray = field(default_factory=bytearray)
    _tx: list[bytes] = field(default_factory=list)
    _peer: bytes = b""
    _me: bytes = b""
    association: ServerAssociation | None = None

    def receive(self, data: bytes) -> bytes:
        out = bytearray()
        for raw in self._deframer.feed(data):
            try:
                frame = HdlcFrame.from_bytes(raw)
            except HdlcError:
                self.discarded += 1
                continue
            if not self._for_me(frame.destination) or len(frame.source) != 1:
                self.discarded += 1
                continue
            reply = self._handle(frame)
            if reply is not None:
                out += reply.to_bytes()
        return bytes(out)

    def _for_me(self, dest: bytes) -> bool:
        if len(dest) == 1:
            upper, lower = dest[0] >> 1, None
        elif len(dest) == 2:
            upper, lower = dest[0] >> 1, dest[1] >> 1
        else:
            upper = (dest[0] >> 1) << 7 | dest[1] >> 1
            lower = (dest[2] >> 1) << 7 | dest[3] >> 1
        return upper == self.logical_address and lower == self.physical_address

    def _reply(self, control: int, info: bytes = b"", segmented: bool = False) -> HdlcFrame:
        return HdlcFrame(self._peer, self._me, control, info, segmented)

    def _handle(self, frame: HdlcFrame) -> HdlcFrame | None:
        c = frame.control & ~PF
        if c == SNRM:
            self._peer, self._me = frame.source, frame.destination
            self.connected, self._vs, self._vr = True, 0, 0
            self._rx.clear()
            self._tx.clear()
            self.association = self.dlms.association(frame.source[0] >> 1)
            return self._reply(UA | PF, self._parameters())
        if c == DISC:
            was = self.connected
            self._peer, self._me = frame.source, frame.destination
            self.connected, self.association = False, None
            return self._reply((UA if was else DM) | PF)
        if not self.connected or frame.source != self._peer:
            self._peer, self._me = frame.source, frame.destination
            return self._reply(DM | PF)
        if frame.control & 1 == 0:
            return self._information(frame)
        if frame.control & 0x0F == 0x01:  # RR: the peer wants the next segment
            if self._tx:
                return self._next_segment()
            return self._reply(0x01 | PF | self._vr << 5)
        return self._reply(FRMR | PF)

    def _information(self, frame: HdlcFrame) -> HdlcFrame:
        ns = (frame.control >> 1) & 7
        if ns != self._vr:
            # Out of sequence (lost or repeated frame): acknowledge what we have.
            return self._reply(0x01 | PF | self._vr << 5)
        self._vr = (self._vr + 1) % 8
        self._rx += frame.information
        if len(self._rx) > self.dlms.max_pdu_size + 64:
            self._rx.clear()  # longer than we announced: drop the request
            return self._reply(FRMR | PF)
        if frame.segmented:
            return self._reply(0x01 | PF | self._vr << 5)
        request, self._rx = bytes(self._rx), bytearray()
        if not request.startswith(LLC_REQUEST):
            return self._reply(0x01 | PF | self._vr << 5)
        assert self.association is not None
        response = LLC_RESPONSE + self.association.handle(request[len(LLC_REQUEST) :])
        self._tx = [response[i : i + self.max_info] for i in range(0, len(response), self.max_info)]
        return self._next_segment()

    def _next_segment(self) -> HdlcFrame:
        chunk = self._tx.pop(0)
        control = (self._vs << 1) | PF | (self._vr << 5)
        self._vs = (self._vs + 1) % 8
        return self._reply(control, chunk, segmented=bool(self._tx))

    def _parameters(self) -> bytes:
        """UA information field: negotiated HDLC parameters (Green Book §8.4.5.3.2)."""

        def param(pid: int, value: int, width: int) -> bytes:
            return bytes([pid, width]) + value.to_bytes(width, "big")

        w = 1 if self.max_info < 256 else 2
        group = (
            param(0x05, self.max_info, w)
            + param(0x06, self.max_info, w)
            + param(0x07, 1, 4)
            + param(0x08, 1, 4)
        )
        return bytes([0x81, 0x80, len(group)]) + group
