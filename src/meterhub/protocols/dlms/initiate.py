"""xDLMS InitiateRequest / InitiateResponse and the conformance block, parsed here.

IEC 62056-5-3 / Green Book 1000-2 Ed. 9 §9.5 (ASN.1 of the xDLMS APDUs), §9.4.6.1
(the conformance block). ``dlms_cosem.protocol.xdlms.InitiateRequest.from_bytes``
hands only two of the three conformance octets to ``Conformance.from_bytes``, so the
first octet - general-protection, general-block-transfer, delta-value-encoding - is
lost; a client asking for service-specific ciphering then looks as if it had asked for
nothing. We parse the whole APDU ourselves (A-XDR):

```
InitiateRequest ::= SEQUENCE {                            -- tag 0x01
  dedicated-key                OCTET STRING OPTIONAL,     -- 00 | 01 len key
  response-allowed             BOOLEAN DEFAULT TRUE,      -- 00 | 01 bool
  proposed-quality-of-service  [0] IMPLICIT Integer8 OPTIONAL,  -- 00 | 01 byte
  proposed-dlms-version-number Unsigned8,
  proposed-conformance         Conformance,               -- 5F 1F 04 00 b0 b1 b2
  client-max-receive-pdu-size  Unsigned16 }
InitiateResponse ::= SEQUENCE {                           -- tag 0x08
  negotiated-quality-of-service [0] IMPLICIT Integer8 OPTIONAL,
  negotiated-dlms-version-number Unsigned8,
  negotiated-conformance       Conformance,
  server-max-receive-pdu-size  Unsigned16,
  vaa-name                     ObjectName }               -- Integer16, 0x0007 for LN
Conformance ::= [APPLICATION 31] IMPLICIT BIT STRING (SIZE(24))
```

The conformance BIT STRING is BER-encoded inside the A-XDR APDU: tag ``5F 1F``,
length 4, 0 unused bits, 3 octets. Bits are numbered from the left, bit 0 being the
most significant bit of the first octet (X.690 §8.6.2.1).

The AARQ itself is BER (ISO 8650 / Green Book §9.4.4); :func:`acse_user_information`
walks its top-level fields to the raw ``user-information`` (``[30]``, 0xBE) so the
xDLMS APDU inside reaches our parser untouched.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ...errors import MeterhubError

__all__ = [
    "InitiateError",
    "Conformance",
    "encode_conformance",
    "decode_conformance",
    "InitiateRequest",
    "InitiateResponse",
    "parse_initiate_request",
    "parse_initiate_response",
    "acse_user_information",
    "INITIATE_REQUEST",
    "INITIATE_RESPONSE",
    "LN_VAA_NAME",
]

INITIATE_REQUEST = 0x01
INITIATE_RESPONSE = 0x08
CONFORMANCE_TAG = b"\x5f\x1f"
#: vaa-name of an LN-referencing association (Green Book §9.5: 0x0007).
LN_VAA_NAME = 0x0007
#: BER tag of the AARQ/AARE ``user-information`` field: [30], context, constructed.
USER_INFORMATION_TAG = 0xBE


class InitiateError(MeterhubError, ValueError):
    """An InitiateRequest or InitiateResponse that cannot be parsed."""


class Conformance(enum.IntFlag):
    """The 24 conformance bits (Green Book §9.4.6.1, Table "Conformance block").

    The value of a member is its weight in the 3 octets read big-endian: standard
    bit ``n`` (counted from the left, 0 = MSB of the first octet) is ``1 << (23 - n)``.
    """

    RESERVED_ZERO = 1 << 23  # bit 0
    GENERAL_PROTECTION = 1 << 22  # bit 1
    GENERAL_BLOCK_TRANSFER = 1 << 21  # bit 2
    READ = 1 << 20  # bit 3 (SN referencing)
    WRITE = 1 << 19  # bit 4 (SN)
    UNCONFIRMED_WRITE = 1 << 18  # bit 5 (SN)
    DELTA_VALUE_ENCODING = 1 << 17  # bit 6
    RESERVED_SEVEN = 1 << 16  # bit 7
    ATTRIBUTE0_SUPPORTED_WITH_SET = 1 << 15  # bit 8
    PRIORITY_MGMT_SUPPORTED = 1 << 14  # bit 9
    ATTRIBUTE0_SUPPORTED_WITH_GET = 1 << 13  # bit 10
    BLOCK_TRANSFER_WITH_GET_OR_READ = 1 << 12  # bit 11
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = 1 << 11  # bit 12
    BLOCK_TRANSFER_WITH_ACTION = 1 << 10  # bit 13
    MULTIPLE_REFERENCES = 1 << 9  # bit 14
    INFORMATION_REPORT = 1 << 8  # bit 15 (SN)
    DATA_NOTIFICATION = 1 << 7  # bit 16
    ACCESS = 1 << 6  # bit 17
    PARAMETERIZED_ACCESS = 1 << 5  # bit 18 (SN)
    GET = 1 << 4  # bit 19
    SET = 1 << 3  # bit 20
    SELECTIVE_ACCESS = 1 << 2  # bit 21
    EVENT_NOTIFICATION = 1 << 1  # bit 22
    ACTION = 1 << 0  # bit 23

    @classmethod
    def bit(cls, n: int) -> Conformance:
        """The flag of standard bit ``n`` (0..23, counted from the left)."""
        if not 0 <= n <= 23:
            raise ValueError("conformance bits are numbered 0..23")
        return cls(1 << (23 - n))


def encode_conformance(c: Conformance) -> bytes:
    """``5F 1F 04 00`` + 3 octets (Green Book §9.4.6.1)."""
    return CONFORMANCE_TAG + b"\x04\x00" + int(c).to_bytes(3, "big")


def decode_conformance(buf: bytes, pos: int) -> tuple[Conformance, int]:
    """Read a conformance block at ``pos``; returns the flags and the position after it."""
    if buf[pos : pos + 4] != CONFORMANCE_TAG + b"\x04\x00" or pos + 7 > len(buf):
        raise InitiateError("conformance block is not 5F 1F 04 00 + 3 octets")
    return Conformance(int.from_bytes(buf[pos + 4 : pos + 7], "big")), pos + 7


def _optional(buf: bytes, pos: int, what: str) -> tuple[bool, int]:
    if pos >= len(buf) or buf[pos] not in (0, 1):
        raise InitiateError(f"{what}: usage flag is not 00/01")
    return buf[pos] == 1, pos + 1


def _optional_octet(buf: bytes, pos: int, what: str) -> tuple[int | None, int]:
    """An OPTIONAL (or DEFAULT) single-octet field, A-XDR: usage flag, then the octet
    if present (Green Book §9.5); ``None`` when absent."""
    present, pos = _optional(buf, pos, what)
    if not present:
        return None, pos
    if pos >= len(buf):
        raise InitiateError(f"{what}: truncated")
    return buf[pos], pos + 1


def _encode_optional_octet(value: int | None) -> bytes:
    """Inverse of :func:`_optional_octet`."""
    return b"\x00" if value is None else bytes([1, value & 0xFF])


@dataclass(frozen=True)
class InitiateRequest:
    """xDLMS InitiateRequest (Green Book §9.5)."""

    proposed_conformance: Conformance
    client_max_receive_pdu_size: int
    proposed_dlms_version_number: int = 6
    dedicated_key: bytes | None = None
    response_allowed: bool = True
    proposed_quality_of_service: int | None = None

    def to_bytes(self) -> bytes:
        out = bytearray([INITIATE_REQUEST])
        if self.dedicated_key is None:
            out.append(0)
        else:
            out += bytes([1, len(self.dedicated_key)]) + self.dedicated_key
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        out += _encode_optional_octet(self.proposed_quality_of_service)
        out.append(self.proposed_dlms_version_number)
        out += encode_conformance(self.proposed_conformance)
        out += self.client_max_receive_pdu_size.to_bytes(2, "big")
        return bytes(out)


def parse_initiate_request(apdu: bytes) -> InitiateRequest:
    """Parse an InitiateRequest; raises :class:`InitiateError`, never reads past the end."""
    apdu = bytes(apdu)
    if not apdu or apdu[0] != INITIATE_REQUEST:
        raise InitiateError("not an InitiateRequest")
    present, pos = _optional(apdu, 1, "dedicated-key")
    key = None
    if present:
        if pos >= len(apdu) or pos + 1 + apdu[pos] > len(apdu):
            raise InitiateError("dedicated-key: truncated")
        key, pos = apdu[pos + 1 : pos + 1 + apdu[pos]], pos + 1 + apdu[pos]
    allowed_octet, pos = _optional_octet(apdu, pos, "response-allowed")
    allowed = allowed_octet is None or allowed_octet != 0  # DEFAULT TRUE
    qos, pos = _optional_octet(apdu, pos, "proposed-quality-of-service")
    if pos >= len(apdu):
        raise InitiateError("proposed-dlms-version-number: truncated")
    version = apdu[pos]
    conformance, pos = decode_conformance(apdu, pos + 1)
    if pos + 2 != len(apdu):
        raise InitiateError("client-max-receive-pdu-size: wrong length")
    return InitiateRequest(
        proposed_conformance=conformance,
        client_max_receive_pdu_size=int.from_bytes(apdu[pos:], "big"),
        proposed_dlms_version_number=version,
        dedicated_key=key,
        response_allowed=allowed,
        proposed_quality_of_service=qos,
    )


@dataclass(frozen=True)
class InitiateResponse:
    """xDLMS InitiateResponse (Green Book §9.5); ``to_bytes`` is what
    ``dlms_cosem``'s ``UserInformation`` needs to carry it in an AARE."""

    negotiated_conformance: Conformance
    server_max_receive_pdu_size: int
    negotiated_dlms_version_number: int = 6
    negotiated_quality_of_service: int | None = None
    vaa_name: int = LN_VAA_NAME

    def to_bytes(self) -> bytes:
        out = bytearray([INITIATE_RESPONSE])
        out += _encode_optional_octet(self.negotiated_quality_of_service)
        out.append(self.negotiated_dlms_version_number)
        out += encode_conformance(self.negotiated_conformance)
        out += self.server_max_receive_pdu_size.to_bytes(2, "big")
        out += self.vaa_name.to_bytes(2, "big")
        return bytes(out)


def parse_initiate_response(apdu: bytes) -> InitiateResponse:
    """Parse an InitiateResponse; raises :class:`InitiateError`."""
    apdu = bytes(apdu)
    if not apdu or apdu[0] != INITIATE_RESPONSE:
        raise InitiateError("not an InitiateResponse")
    qos, pos = _optional_octet(apdu, 1, "negotiated-quality-of-service")
    if pos >= len(apdu):
        raise InitiateError("negotiated-dlms-version-number: truncated")
    version = apdu[pos]
    conformance, pos = decode_conformance(apdu, pos + 1)
    if pos + 4 != len(apdu):
        raise InitiateError("server-max-receive-pdu-size / vaa-name: wrong length")
    return InitiateResponse(
        negotiated_conformance=conformance,
        server_max_receive_pdu_size=int.from_bytes(apdu[pos : pos + 2], "big"),
        negotiated_dlms_version_number=version,
        negotiated_quality_of_service=qos,
        vaa_name=int.from_bytes(apdu[pos + 2 :], "big"),
    )


def _ber_length(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise InitiateError("BER length: truncated")
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if not 1 <= n <= 2 or pos + 1 + n > len(buf):
        raise InitiateError("BER length: unsupported or truncated long form")
    return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def acse_user_information(apdu: bytes) -> bytes | None:
    """The xDLMS APDU inside the ``user-information`` of an AARQ, AARE, RLRQ or RLRE, or None.

    ``user-information ::= [30] IMPLICIT Association-information`` holding an
    ``OCTET STRING`` (``04 len``) with the A-XDR-encoded xDLMS APDU (Green Book §9.4.4).
    """
    apdu = bytes(apdu)
    if len(apdu) < 2 or apdu[0] not in (0x60, 0x61, 0x62, 0x63):
        raise InitiateError("not an AARQ, AARE, RLRQ or RLRE")
    length, pos = _ber_length(apdu, 1)
    end = pos + length
    if end != len(apdu):
        raise InitiateError("AARQ length does not match")
    while pos < end:
        tag = apdu[pos]
        if tag & 0x1F == 0x1F:
            raise InitiateError("multi-octet BER tags are not used in an AARQ")
        n, body = _ber_length(apdu, pos + 1)
        if body + n > end:
            raise InitiateError("AARQ field runs past the end")
        if tag == USER_INFORMATION_TAG:
            inner = apdu[body : body + n]
            if len(inner) < 2 or inner[0] != 0x04:
                raise InitiateError("user-information is not an OCTET STRING")
            m, start = _ber_length(inner, 1)
            if start + m != len(inner):
                raise InitiateError("user-information length does not match")
            return inner[start:]
        pos = body + n
    return None
