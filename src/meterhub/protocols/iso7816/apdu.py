"""Command and response APDUs (ISO/IEC 7816-4:2020 §5.1-§5.4).

Strict, sans-IO codec. :meth:`CommandAPDU.from_bytes` accepts exactly the four
cases of ISO/IEC 7816-4 §5.1 ("Command-response pairs" and its
decoding rules for the body):

=====  =======================================  ==========================
case   short                                    extended
=====  =======================================  ==========================
1      ``CLA INS P1 P2``                        -
2      ``... Le``            (Le 00 = 256)      ``... 00 Le1 Le2`` (0000 = 65536)
3      ``... Lc data``       (Lc 01..FF)        ``... 00 Lc1 Lc2 data`` (Lc 0001..FFFF)
4      ``... Lc data Le``                       ``... 00 Lc1 Lc2 data Le1 Le2``
=====  =======================================  ==========================

Anything else is refused with an :class:`~meterhub.protocols.iso7816.sw.ISOException`
carrying the status word a card would answer (``6700`` bad length, ``6E00``
invalid CLA, ``6D00`` invalid INS). A successful parse always re-encodes to
the same bytes (the ``extended`` flag records the length form).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sw import SW, ISOException

__all__ = ["CommandAPDU", "ResponseAPDU", "MAX_SHORT_NE", "MAX_EXTENDED_NE"]

MAX_SHORT_NC = 255
MAX_SHORT_NE = 256
MAX_EXTENDED_NC = 65535
MAX_EXTENDED_NE = 65536


def _check_cla_ins(cla: int, ins: int) -> None:
    """CLA FF is invalid (reserved for PPS, ISO/IEC 7816-3 §9; 7816-4 §5.4.1);
    CLA 001x xxxx is RFU (7816-4 §5.4.1); INS 6X and 9X are invalid
    (7816-4 §5.1, they would clash with T=0 procedure bytes)."""
    if cla == 0xFF or (cla & 0xE0) == 0x20:
        raise ISOException(SW.CLA_NOT_SUPPORTED, f"invalid CLA {cla:02X}")
    if (ins & 0xF0) in (0x60, 0x90):
        raise ISOException(SW.INS_NOT_SUPPORTED, f"invalid INS {ins:02X}")


@dataclass(frozen=True, slots=True)
class CommandAPDU:
    """A C-APDU.

    ``le`` is Ne, the maximum number of response bytes expected: ``None`` when
    the Le field is absent, otherwise 1..256 (short) or 1..65536 (extended).
    ``extended`` selects extended length fields; ``None`` means "short when it
    fits" and is resolved at construction.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 0xFF:
                raise ValueError(f"{name} must be a byte, got {v!r}")
        object.__setattr__(self, "data", bytes(self.data))
        nc, ne = len(self.data), self.le
        if ne is not None and not 1 <= ne <= MAX_EXTENDED_NE:
            raise ValueError(f"Ne out of range: {ne}")
        if nc > MAX_EXTENDED_NC:
            raise ValueError(f"Nc out of range: {nc}")
        fits_short = nc <= MAX_SHORT_NC and (ne is None or ne <= MAX_SHORT_NE)
        ext = self.extended
        if ext is None:
            ext = not fits_short
        if ext and nc == 0 and ne is None:
            raise ValueError("case 1 has no extended form")
        if not ext and not fits_short:
            raise ValueError("Nc/Ne too large for short length fields")
        object.__setattr__(self, "extended", bool(ext))

    # --- ISO/IEC 7816-4 §5.4.1 class byte ------------------------------------
    @property
    def channel(self) -> int:
        """Logical channel from CLA (ISO/IEC 7816-4 §5.4.1; GPC 2.3.1 §11.1.4).

        First interindustry coding ``000x xxcc`` (and proprietary ``1x0x xxcc``)
        carries channels 0..3 in b2-b1; further interindustry ``01xx cccc``
        (and ``11xx cccc``) carries 4..19 in b4-b1.
        """
        if self.cla & 0x40:
            return 4 + (self.cla & 0x0F)
        return self.cla & 0x03

    @property
    def secure_messaging(self) -> int:
        """SM indication: b4-b3 (first interindustry) or b6 (further), 0 if none."""
        if self.cla & 0x40:
            return 1 if self.cla & 0x20 else 0
        return (self.cla >> 2) & 0x03

    @property
    def chaining(self) -> bool:
        """Command chaining bit b5 (ISO/IEC 7816-4, command chaining)."""
        return bool(self.cla & 0x10)

    @property
    def interindustry(self) -> bool:
        """b8 = 0: interindustry class (ISO/IEC 7816-4 §5.4.1)."""
        return not self.cla & 0x80

    @property
    def case(self) -> int:
        """ISO/IEC 7816-4 case number 1..4."""
        return {(False, False): 1, (False, True): 2, (True, False): 3, (True, True): 4}[
            (bool(self.data), self.le is not None)
        ]

    @property
    def ne(self) -> int:
        """Ne, 0 when the Le field is absent."""
        return self.le or 0

    @property
    def header(self) -> bytes:
        return bytes((self.cla, self.ins, self.p1, self.p2))

    # --- encode / decode --------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Encode per ISO/IEC 7816-4 §5.1."""
        out = bytearray(self.header)
        nc, ne = len(self.data), self.le
        if self.extended:
            out.append(0x00)
            if nc:
                out += nc.to_bytes(2, "big") + self.data
            if ne is not None:
                out += (ne & 0xFFFF).to_bytes(2, "big")  # 65536 encodes as 0000
        else:
            if nc:
                out.append(nc)
                out += self.data
            if ne is not None:
                out.append(ne & 0xFF)  # 256 encodes as 00
        return bytes(out)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandAPDU:
        """Strict decode; raises :class:`ISOException` with the card's answer SW."""
        raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise ISOException(SW.WRONG_LENGTH, "C-APDU shorter than its header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        _check_cla_ins(cla, ins)
        if n == 4:  # case 1
            return cls(cla, ins, p1, p2)
        if n == 5:  # case 2S
            return cls(cla, ins, p1, p2, b"", raw[4] or 256, False)
        if raw[4] != 0:  # short Lc
            lc = raw[4]
            if n == 5 + lc:  # case 3S
                return cls(cla, ins, p1, p2, raw[5:], None, False)
            if n == 6 + lc:  # case 4S
                return cls(cla, ins, p1, p2, raw[5:-1], raw[-1] or 256, False)
            raise ISOException(SW.WRONG_LENGTH, "Lc does not match the body")
        # first body byte 00 and more than one body byte: extended length
        if n == 7:  # case 2E
            return cls(cla, ins, p1, p2, b"", int.from_bytes(raw[5:7], "big") or 65536, True)
        if n < 7:
            raise ISOException(SW.WRONG_LENGTH, "truncated extended length field")
        lc = int.from_bytes(raw[5:7], "big")
        if lc == 0:
            raise ISOException(SW.WRONG_LENGTH, "extended Lc of zero")
        if n == 7 + lc:  # case 3E
            return cls(cla, ins, p1, p2, raw[7:], None, True)
        if n == 9 + lc:  # case 4E
            le = int.from_bytes(raw[-2:], "big") or 65536
            return cls(cla, ins, p1, p2, raw[7:-2], le, True)
        raise ISOException(SW.WRONG_LENGTH, "extended Lc does not match the body")

    def with_channel(self, channel: int) -> CommandAPDU:
        """Same command with CLA re-coded for ``channel`` (ISO/IEC 7816-4 §5.4.1)."""
        if not 0 <= channel <= 19:
            raise ValueError("channel must be 0..19")
        base = self.cla & 0x80
        if channel <= 3:
            sm = self.secure_messaging if not self.cla & 0x40 else (0x02 if self.secure_messaging else 0)
            cla = base | (self.cla & 0x10) | (sm << 2) | channel
        else:
            sm = 1 if self.secure_messaging else 0
            cla = base | 0x40 | (sm << 5) | (self.cla & 0x10) | (channel - 4)
        return CommandAPDU(cla, self.ins, self.p1, self.p2, self.data, self.le, self.extended)


@dataclass(frozen=True, slots=True)
class ResponseAPDU:
    """An R-APDU: optional data then SW1-SW2 (ISO/IEC 7816-4 §5.1)."""

    data: bytes = b""
    sw: int = SW.NO_ERROR

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", bytes(self.data))
        if not 0 <= int(self.sw) <= 0xFFFF:
            raise ValueError(f"status word out of range: {self.sw!r}")
        object.__setattr__(self, "sw", int(self.sw))

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        """Decode; fewer than two bytes is not an R-APDU (ValueError)."""
        raw = bytes(raw)
        if len(raw) < 2:
            raise ValueError("an R-APDU ends with SW1-SW2")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))
