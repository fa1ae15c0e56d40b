"""Application identifiers (ISO/IEC 7816-4 application identifier; ISO/IEC 7816-5 registration;
Java Card 3.0.5 API ``javacard.framework.AID``).

An AID is 5..16 bytes: a 5-byte registered application provider identifier
(RID) followed by an optional proprietary extension (PIX) of up to 11 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AID"]


@dataclass(frozen=True, slots=True, order=True)
class AID:
    """An immutable AID; compares and hashes by its bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        raw = bytes(self.raw)
        if not 5 <= len(raw) <= 16:
            raise ValueError(f"an AID has 5..16 bytes, got {len(raw)}")
        object.__setattr__(self, "raw", raw)

    @classmethod
    def from_hex(cls, text: str) -> AID:
        return cls(bytes.fromhex(text.replace(" ", "").replace(":", "")))

    @classmethod
    def of(cls, value: AID | bytes | bytearray | str) -> AID:
        """Coerce bytes, hex text or an AID."""
        if isinstance(value, AID):
            return value
        if isinstance(value, str):
            return cls.from_hex(value)
        return cls(bytes(value))

    @property
    def rid(self) -> bytes:
        return self.raw[:5]

    @property
    def pix(self) -> bytes:
        return self.raw[5:]

    def partial_equals(self, prefix: bytes) -> bool:
        """``AID.partialEquals``: does this AID start with ``prefix``
        (partial DF name selection, ISO/IEC 7816-4 §11.2.2)?"""
        return self.raw.startswith(bytes(prefix))

    def __bytes__(self) -> bytes:
        return self.raw

    def __len__(self) -> int:
        return len(self.raw)

    def hex(self) -> str:
        return self.raw.hex().upper()

    def __str__(self) -> str:
        return self.hex()
