"""SCP03 constants, key derivation and cryptograms (GPC v2.3.1 Amendment D §6.2).

NIST SP 800-108 counter-mode KDF with AES-CMAC (SP 800-38B) as PRF, laid out as §6.2.1
says; session keys, card and host cryptograms, the pseudo-random card challenge and the
``80 00..`` padding. All primitives come from ``cryptography``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ....errors import MeterhubError
from ..keys import StaticKeys

__all__ = [
    "C_DECRYPTION",
    "C_MAC",
    "DDC_CARD_CHALLENGE",
    "DDC_CARD_CRYPTOGRAM",
    "DDC_HOST_CRYPTOGRAM",
    "DDC_S_ENC",
    "DDC_S_MAC",
    "DDC_S_RMAC",
    "I_PSEUDO_RANDOM",
    "I_R_ENCRYPTION",
    "I_R_MAC",
    "I_S16",
    "NO_SECURE_MESSAGING",
    "R_ENCRYPTION",
    "R_MAC",
    "SECURITY_LEVELS",
    "SEQUENCE_COUNTER_MAX",
    "SCP03Error",
    "SessionKeys",
    "aes_cmac",
    "card_cryptogram",
    "derive_session_keys",
    "host_cryptogram",
    "kdf_counter_cmac",
    "pad80",
    "pseudo_random_card_challenge",
    "scp03_kdf",
    "unpad80",
]

# --- status words (ISO 7816-4 §5.6, GPC v2.3.1 §11.1.3) --------------------------------
SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_CONDITIONS_OF_USE = 0x6985
SW_WRONG_DATA = 0x6A80
SW_INCORRECT_P1P2 = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_CLA_NOT_SUPPORTED = 0x6E00

# --- data derivation constants (Amendment D §6.2.1, Table 6-1) --------------------------
DDC_CARD_CRYPTOGRAM = 0x00
DDC_HOST_CRYPTOGRAM = 0x01
DDC_CARD_CHALLENGE = 0x02
DDC_S_ENC = 0x04
DDC_S_MAC = 0x06
DDC_S_RMAC = 0x07

# --- security level bits (Amendment D §5.1 / EXTERNAL AUTHENTICATE P1, §7.1.2) ----------
NO_SECURE_MESSAGING = 0x00
C_MAC = 0x01
C_DECRYPTION = 0x02
R_MAC = 0x10
R_ENCRYPTION = 0x20
#: Levels a host may request: C-DEC needs C-MAC, R-ENC needs C-DEC and R-MAC.
SECURITY_LEVELS: frozenset[int] = frozenset({0x00, 0x01, 0x03, 0x11, 0x13, 0x33})

# --- "i" implementation option bits (Amendment D §5.1, Table 5-1) -----------------------
# S16 mode only exists since Amendment D v1.2; its bit (b4) is taken from a secondary
# source, not checked against the v1.2 text, so the host never relies on it: it is told
# S8/S16 by its caller (as pySim does) and checks the response length instead.
I_S16 = 0x08  # b4: S16 mode (16-byte challenges, cryptograms and MACs) instead of S8
I_PSEUDO_RANDOM = 0x10  # b5: pseudo-random card challenge with a sequence counter
I_R_MAC = 0x20  # b6: R-MAC support
I_R_ENCRYPTION = 0x40  # b7: R-ENCRYPTION support (only together with R-MAC)
_I_KNOWN_BITS = I_S16 | I_PSEUDO_RANDOM | I_R_MAC | I_R_ENCRYPTION

#: The sequence counter is 3 bytes (§6.2.2.1); once it reaches this value no new session opens.
SEQUENCE_COUNTER_MAX = 0xFFFFFF

_BLOCK = 16
_ZERO_BLOCK = bytes(_BLOCK)
_INS_INITIALIZE_UPDATE = 0x50
_INS_EXTERNAL_AUTHENTICATE = 0x82


class SCP03Error(MeterhubError):
    """A secure channel failure, carrying the status word the card answers with.

    ``sw`` is '6982' for a MAC or cryptogram mismatch (the session is closed), '6985'
    when the sequence counter is exhausted or a command comes out of order, and
    '6700', '6A80', '6A86', '6A88', '6E00' for malformed input.
    """

    def __init__(self, sw: int, message: str) -> None:
        super().__init__(f"{sw:04X}: {message}")
        self.sw = sw
        self.message = message


# --- primitives (all from `cryptography`; nothing hand-rolled) ---------------------------


def _aes_ecb_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _aes_cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-CMAC of ``data`` (NIST SP 800-38B)."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def kdf_counter_cmac(key: bytes, prefix: bytes, suffix: bytes, length: int) -> bytes:
    """NIST SP 800-108 §5.1 KDF in counter mode, PRF = AES-CMAC, 8-bit counter.

    Each block is ``CMAC(key, prefix || i || suffix)`` for i = 1, 2, ...; the output is
    truncated to ``length`` bytes. Amendment D §6.2.1 places the counter between the fixed
    "label || 00 || L" part and the context, which is what ``prefix`` and ``suffix`` are.
    """
    if length <= 0 or length > 255 * _BLOCK:
        raise ValueError("KDF output length out of range")
    out = bytearray()
    i = 1
    while len(out) < length:
        out += aes_cmac(key, prefix + bytes([i]) + suffix)
        i += 1
    return bytes(out[:length])


def scp03_kdf(key: bytes, constant: int, context: bytes, length_bits: int) -> bytes:
    """SCP03 data derivation (Amendment D §6.2.1).

    Derivation data = 11 bytes '00' (label) || derivation constant (1 byte) ||
    separation indicator '00' || L (2 bytes, output length in bits) || i (1 byte counter)
    || context.
    """
    if length_bits <= 0 or length_bits % 8 or length_bits > 0xFFFF:
        raise ValueError("L must be a positive multiple of 8 below 65536")
    prefix = bytes(11) + bytes([constant]) + b"\x00" + length_bits.to_bytes(2, "big")
    return kdf_counter_cmac(key, prefix, context, length_bits // 8)


@dataclass(frozen=True, repr=False)
class SessionKeys:
    """S-ENC, S-MAC, S-RMAC of one session (Amendment D §6.2.1), plus the static DEK."""

    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes
    dek: bytes

    def __repr__(self) -> str:  # never print session keys
        return "SessionKeys(<redacted>)"


def derive_session_keys(
    keys: StaticKeys, host_challenge: bytes, card_challenge: bytes
) -> SessionKeys:
    """Derive the session keys (Amendment D §6.2.1).

    Context = host challenge || card challenge; L = the static key length in bits.
    S-ENC comes from Key-ENC (constant '04'), S-MAC and S-RMAC from Key-MAC ('06', '07').
    """
    context = host_challenge + card_challenge
    bits = keys.key_length * 8
    return SessionKeys(
        s_enc=scp03_kdf(keys.enc, DDC_S_ENC, context, bits),
        s_mac=scp03_kdf(keys.mac, DDC_S_MAC, context, bits),
        s_rmac=scp03_kdf(keys.mac, DDC_S_RMAC, context, bits),
        dek=keys.dek,
    )


def card_cryptogram(
    s_mac: bytes, host_challenge: bytes, card_challenge: bytes, length: int = 8
) -> bytes:
    """Card cryptogram (Amendment D §6.2.2.2): KDF(S-MAC, '00', host || card challenge)."""
    return scp03_kdf(s_mac, DDC_CARD_CRYPTOGRAM, host_challenge + card_challenge, length * 8)


def host_cryptogram(
    s_mac: bytes, host_challenge: bytes, card_challenge: bytes, length: int = 8
) -> bytes:
    """Host cryptogram (Amendment D §6.2.2.3): KDF(S-MAC, '01', host || card challenge)."""
    return scp03_kdf(s_mac, DDC_HOST_CRYPTOGRAM, host_challenge + card_challenge, length * 8)


def pseudo_random_card_challenge(
    key_enc: bytes, sequence_counter: int, aid: bytes, length: int = 8
) -> bytes:
    """Pseudo-random card challenge (Amendment D §6.2.2.1).

    KDF(Key-ENC, '02', context = sequence counter (3 bytes) || AID of the invoking
    security domain), L = 64 bits in S8 mode, 128 in S16 mode.
    """
    if not 0 <= sequence_counter <= SEQUENCE_COUNTER_MAX:
        raise ValueError("sequence counter is 3 bytes")
    context = sequence_counter.to_bytes(3, "big") + bytes(aid)
    return scp03_kdf(key_enc, DDC_CARD_CHALLENGE, context, length * 8)


def pad80(data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2 padding to the AES block (Amendment D §6.2.6: '80' then '00'*)."""
    return data + b"\x80" + bytes(-(len(data) + 1) % _BLOCK)


def unpad80(data: bytes) -> bytes:
    """Strip '80 00..' padding; at most one block of padding, else '6A80'."""
    if not data or len(data) % _BLOCK:
        raise SCP03Error(SW_WRONG_LENGTH, "encrypted data is not a whole number of blocks")
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= _BLOCK:
        raise SCP03Error(SW_WRONG_DATA, "bad '80 00..' padding")
    return stripped[:-1]


def check_i_param(i_param: int) -> None:
    """Refuse an ``i`` parameter with unknown bits or R-ENC without R-MAC (Table 5-1)."""
    if not 0 <= i_param <= 0xFF or i_param & ~_I_KNOWN_BITS:
        raise ValueError(f"unsupported SCP03 i parameter {i_param:#04x}")
    if i_param & I_R_ENCRYPTION and not i_param & I_R_MAC:
        raise ValueError("R-ENCRYPTION support requires R-MAC support (Table 5-1)")


def level_supported(level: int, i_param: int) -> bool:
    """Is ``level`` a valid security level that a card with ``i_param`` supports (§5.1)?"""
    if level not in SECURITY_LEVELS:
        return False
    if level & R_MAC and not i_param & I_R_MAC:
        return False
    return not (level & R_ENCRYPTION and not i_param & I_R_ENCRYPTION)
