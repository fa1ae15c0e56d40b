"""ISO/IEC 7816-4 status words and the ``ISOException`` that carries one.

The status word (SW1-SW2) closes every response APDU (ISO/IEC 7816-4:2020
§5.1 "Command-response pairs", §5.6 status bytes). Names follow
the ``javacard.framework.ISO7816`` interface (Java Card 3.0.5 API) where one
exists, so that code ported from Java Card reads the same.
"""

from __future__ import annotations

from enum import IntEnum

from ...errors import MeterhubError

__all__ = [
    "SW",
    "ISOException",
    "bytes_remaining",
    "correct_length",
    "sw_bytes",
    "sw_from_bytes",
    "is_success",
]


class SW(IntEnum):
    """Fixed status words (ISO/IEC 7816-4 §5.6 status bytes; GPC 2.3.1 §11.1.3)."""

    NO_ERROR = 0x9000
    BYTES_REMAINING_00 = 0x6100  # SW2 = bytes still available (GET RESPONSE)
    WARNING_STATE_UNCHANGED = 0x6200
    FILE_INVALIDATED = 0x6283  # "selected file deactivated"; GPC: card is CARD_LOCKED
    MORE_DATA_AVAILABLE = 0x6310  # GPC 2.3.1 §11.4.3: GET STATUS continuation
    VERIFY_FAILED = 0x63C0
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    FILE_INVALID = 0x6983
    DATA_INVALID = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    APPLET_SELECT_FAILED = 0x6999  # Java Card 3.0.5 JCRE §4.5.2
    WRONG_DATA = 0x6A80
    FUNC_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    FILE_FULL = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    CORRECT_LENGTH_00 = 0x6C00  # SW2 = exact Ne to resend with
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN = 0x6F00  # "no precise diagnosis"


class ISOException(MeterhubError):  # noqa: N818 - the Java Card name, kept on purpose
    """An error that ends command processing with status word ``sw``.

    Mirrors ``javacard.framework.ISOException`` (Java Card 3.0.5 API): the
    runtime turns it into a response APDU carrying only ``sw`` (JCRE §3.3).
    """

    def __init__(self, sw: int, message: str = "") -> None:
        if not 0 <= sw <= 0xFFFF:
            raise ValueError(f"status word out of range: {sw!r}")
        self.sw = int(sw)
        super().__init__(message or f"SW {self.sw:04X}")

    @classmethod
    def throw_it(cls, sw: int) -> None:
        """Java Card spelling: ``ISOException.throwIt(sw)``."""
        raise cls(sw)


def bytes_remaining(n: int) -> int:
    """``61xx``: ``n`` more bytes for GET RESPONSE; xx = 00 means 256 or more."""
    return 0x6100 | (min(n, 256) & 0xFF)


def correct_length(n: int) -> int:
    """``6Cxx``: wrong Le, resend with Le = xx (ISO/IEC 7816-4 §5.6, 1 <= n <= 256)."""
    if not 1 <= n <= 256:
        raise ValueError("6Cxx only encodes 1..256")
    return 0x6C00 | (n & 0xFF)


def sw_bytes(sw: int) -> bytes:
    """SW1-SW2 as two bytes."""
    return int(sw).to_bytes(2, "big")


def sw_from_bytes(b: bytes) -> int:
    """The SW of a complete response APDU (its last two bytes)."""
    if len(b) < 2:
        raise ValueError("a response APDU has at least SW1-SW2")
    return int.from_bytes(b[-2:], "big")


def is_success(sw: int) -> bool:
    """Normal processing: 9000 or 61xx (ISO/IEC 7816-4 §5.6)."""
    return sw == SW.NO_ERROR or (sw >> 8) == 0x61
