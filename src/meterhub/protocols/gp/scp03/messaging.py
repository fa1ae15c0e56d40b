"""SCP03 secure messaging (Amendment D §6.2.4-§6.2.7): the CLA rules (GPC v2.3.1
§11.1.4, ISO 7816-4 §5.4.1), C-MAC/R-MAC chaining, command and response encryption,
and where a card keeps its sequence counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .kdf import (
    _BLOCK,
    SW_OK,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SCP03Error,
    SessionKeys,
    _aes_cbc,
    pad80,
    unpad80,
)

__all__ = [
    "MemoryCounterStore",
    "SequenceCounterStore",
]

# --- CLA handling (GPC v2.3.1 §11.1.4, ISO 7816-4 §5.4.1) -------------------------------


def _further_interindustry(cla: int) -> bool:
    # '40'..'7F' / 'C0'..'FF': logical channels 4..19, SM indicated by b6.
    return bool(cla & 0x40)


def _has_sm(cla: int) -> bool:
    return bool(cla & (0x20 if _further_interindustry(cla) else 0x04))


def _with_sm(cla: int) -> int:
    return cla | (0x20 if _further_interindustry(cla) else 0x04)


def _without_sm(cla: int) -> int:
    return cla & ~(0x20 if _further_interindustry(cla) else 0x04) & 0xFF


def _mac_cla(cla: int) -> int:
    # Channel bits cleared so the C-MAC is independent of the logical channel.
    return (cla & 0x80) | 0x04


def _encode_lc(n: int, extended: bool = False) -> bytes:
    # The MAC covers Lc as it was sent: a command that arrived in extended form (yubikit
    # sends every command so) is MACed with its 3-byte Lc even when short would fit.
    return bytes([n]) if n <= 0xFF and not extended else b"\x00" + n.to_bytes(2, "big")


def _check_byte(value: int, name: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise SCP03Error(SW_WRONG_DATA, f"{name} is not a byte")


def _response_protected(sw: int) -> bool:
    # §6.2.5: no R-MAC on an error; only success and warnings are protected.
    return sw == SW_OK or (sw >> 8) in (0x62, 0x63)


class _SecureMessaging:
    """Per-session state shared by both ends: keys, level, MAC chaining value, counter."""

    def __init__(self, keys: SessionKeys, level: int, mac_len: int, chain: bytes) -> None:
        self.keys = keys
        self.level = level
        self.mac_len = mac_len
        self.chain = chain  # MAC chaining value (§6.2.4): full 16-byte CMAC of the last C-MAC
        self.counter = 1  # encryption counter value for the next command (§6.2.6)
        self.last_counter = 0  # counter value of the command being answered
        # The session keys are fixed for the session: their AES key schedules are set up
        # once here, not per command (a CMAC context is copied per MAC, and ECB keeps no
        # state between whole blocks), so each command costs only its MACs and ciphers.
        self._mac_base = cmac.CMAC(algorithms.AES(keys.s_mac))
        self._rmac_base = cmac.CMAC(algorithms.AES(keys.s_rmac))
        self._icv_ecb: Any = Cipher(algorithms.AES(keys.s_enc), modes.ECB()).encryptor()

    @staticmethod
    def _cmac(base: cmac.CMAC, data: bytes) -> bytes:
        mac = base.copy()
        mac.update(data)
        return mac.finalize()

    def command_mac(
        self, cla: int, ins: int, p1: int, p2: int, body: bytes, extended: bool = False
    ) -> bytes:
        """Full CMAC over chaining value || header || Lc || data (§6.2.4); Lc counts the MAC."""
        lc = _encode_lc(len(body) + self.mac_len, extended)
        return self._cmac(self._mac_base, self.chain + bytes([_mac_cla(cla), ins, p1, p2]) + lc + body)

    def _icv(self, counter: int, response: bool) -> bytes:
        # §6.2.6: ICV = AES(S-ENC, counter as 16 bytes); §6.2.7: response ICV has MSB '80'.
        block = (b"\x80" + counter.to_bytes(15, "big")) if response else counter.to_bytes(16, "big")
        out: bytes = self._icv_ecb.update(block)  # one whole block in, one out
        return out

    def encrypt(self, data: bytes, counter: int, *, response: bool) -> bytes:
        return _aes_cbc(self.keys.s_enc, self._icv(counter, response), pad80(data), decrypt=False)

    def decrypt(self, data: bytes, counter: int, *, response: bool) -> bytes:
        if not data or len(data) % _BLOCK:
            raise SCP03Error(SW_WRONG_LENGTH, "encrypted data is not a whole number of blocks")
        return unpad80(_aes_cbc(self.keys.s_enc, self._icv(counter, response), data, decrypt=True))

    def response_mac(self, data: bytes, sw: int) -> bytes:
        """R-MAC (§6.2.5): CMAC(S-RMAC, chaining value || response data || SW)."""
        return self._cmac(self._rmac_base, self.chain + data + sw.to_bytes(2, "big"))[: self.mac_len]


# --- sequence counter persistence -------------------------------------------------------


class SequenceCounterStore(Protocol):
    """Persistent sequence counters, one per key set (Amendment D §6.2.2.1).

    ``load`` returns the last counter value used with key version ``kvn`` (0 if none);
    ``store`` must make the new value durable before it returns, since the card answers
    INITIALIZE UPDATE only afterwards and a challenge must never repeat.
    """

    def load(self, kvn: int) -> int: ...

    def store(self, kvn: int, value: int) -> None: ...


class MemoryCounterStore:
    """In-memory :class:`SequenceCounterStore` (tests, transient hubs)."""

    def __init__(self, initial: Mapping[int, int] | None = None) -> None:
        self._values: dict[int, int] = dict(initial or {})

    def load(self, kvn: int) -> int:
        return self._values.get(kvn, 0)

    def store(self, kvn: int, value: int) -> None:
        self._values[kvn] = value
