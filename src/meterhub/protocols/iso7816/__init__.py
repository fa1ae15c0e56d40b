"""ISO/IEC 7816-4 codec: APDUs, status words, BER-TLV (sans-IO)."""

from .apdu import CommandAPDU, ResponseAPDU
from .sw import SW, ISOException
from .tlv import TLV, TLVError

__all__ = ["CommandAPDU", "ResponseAPDU", "SW", "ISOException", "TLV", "TLVError"]
