"""CRC-16/X.25 as used by SML (SML 1.04: the crc16 of "SML_Message" and the file CRC of
"SML-Transport-Protokoll Version 1").

Parameters (CRC RevEng catalogue, CRC-16/IBM-SDLC alias CRC-16/X-25): poly 0x1021
reflected (0x8408), init 0xFFFF, refin/refout true, xorout 0xFFFF, check 0x906E.
On the wire SML sends the CRC low byte first, i.e. the big-endian ``Unsigned16``
in the message (and the two trailing bytes of a file) equals the byte-swapped CRC;
libsml, smllib and pysml all agree on this order.
"""

from __future__ import annotations

__all__ = ["crc16_x25", "crc16_x25_wire"]


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            # reflected algorithm: shift right, xor the reflected polynomial
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_x25(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """Return the CRC-16/X.25 of ``data`` (check value 0x906E for b"123456789")."""
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def crc16_x25_wire(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC as SML writes it: the Unsigned16 whose big-endian bytes go on the wire."""
    crc = crc16_x25(data)
    return ((crc & 0xFF) << 8) | (crc >> 8)
