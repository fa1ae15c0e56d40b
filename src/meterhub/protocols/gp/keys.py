"""Static SCP03 key sets and GlobalPlatform key check values.

A security domain holds one or more SCP03 key sets, each identified by a key version
number (KVN) and made of three AES keys of the same length (GP Amendment D v1.1.2 §4.1.1):
Key-ENC (derives S-ENC and the pseudo-random card challenge), Key-MAC (derives S-MAC
and S-RMAC) and Key-DEK (protects key material in PUT KEY / STORE DATA).

The key check value (KCV) of an AES key is the first three bytes of the AES-ECB
encryption of sixteen bytes '01' under that key (GP Card Specification v2.3.1 §11.8.2.3,
PUT KEY key check value; the same rule is used by GlobalPlatformPro and osmocom pySim).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ...errors import MeterhubError

__all__ = ["AES_KEY_LENGTHS", "KeySetError", "StaticKeys", "kcv_aes"]

#: AES-128, AES-192 and AES-256 (Amendment D §4.1.1: all three are allowed for SCP03).
AES_KEY_LENGTHS: tuple[int, ...] = (16, 24, 32)


class KeySetError(MeterhubError, ValueError):
    """A key set that cannot be used for SCP03 (wrong length, KVN out of range).

    ``sw`` is the status word a card answers to a PUT KEY carrying such a key set
    ('6A80', incorrect values in the command data).
    """

    def __init__(self, message: str, sw: int = 0x6A80) -> None:
        super().__init__(message)
        self.sw = sw


def kcv_aes(key: bytes) -> bytes:
    """Return the 3-byte GP key check value of an AES key.

    GP Card Specification v2.3.1 §11.8.2.3 (PUT KEY): KCV = first 3 bytes of
    AES-ECB(key, '01' * 16).
    """
    key = bytes(key)
    if len(key) not in AES_KEY_LENGTHS:
        raise KeySetError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(b"\x01" * 16) + enc.finalize())[:3]


@dataclass(frozen=True, repr=False)
class StaticKeys:
    """One SCP03 static key set (Amendment D §4.1.1).

    ``kvn`` is the key version number ('01'..'7F' per GPC v2.3.1 §11.1.8; '00' is
    reserved for "first available" in INITIALIZE UPDATE and 'FF' for the
    personalisation key set, so neither can name a stored key set).
    """

    kvn: int
    enc: bytes
    mac: bytes
    dek: bytes

    def __post_init__(self) -> None:
        # Normalise bytearray/memoryview input so the frozen value is hashable and immutable.
        for name in ("enc", "mac", "dek"):
            object.__setattr__(self, name, bytes(getattr(self, name)))
        if not isinstance(self.kvn, int) or not 0x01 <= self.kvn <= 0x7F:
            raise KeySetError(f"key version number must be 0x01..0x7F, got {self.kvn!r}")
        lengths = {len(self.enc), len(self.mac), len(self.dek)}
        if len(lengths) != 1 or not lengths <= set(AES_KEY_LENGTHS):
            # Amendment D §4.1.1: the three keys of a set share one AES key length.
            raise KeySetError("ENC, MAC and DEK must be AES keys of one length (16, 24 or 32)")

    @classmethod
    def single(cls, kvn: int, key: bytes) -> StaticKeys:
        """Key set using the same value for ENC, MAC and DEK (e.g. test keys 40..4F)."""
        return cls(kvn=kvn, enc=key, mac=key, dek=key)

    @property
    def key_length(self) -> int:
        """Length in bytes of each key (16, 24 or 32)."""
        return len(self.enc)

    def kcv(self) -> tuple[bytes, bytes, bytes]:
        """KCVs of (ENC, MAC, DEK), as reported in the key information template."""
        return kcv_aes(self.enc), kcv_aes(self.mac), kcv_aes(self.dek)

    def __repr__(self) -> str:
        # Never print key material; KCVs identify a key without revealing it.
        e, m, d = (k.hex().upper() for k in self.kcv())
        return f"StaticKeys(kvn=0x{self.kvn:02X}, AES-{self.key_length * 8}, kcv={e}/{m}/{d})"
