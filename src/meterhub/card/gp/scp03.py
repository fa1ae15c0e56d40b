"""Secure Channel Protocol '03' (GlobalPlatform Card Specification v2.3.1 Amendment D).

Sans-IO implementation of both ends of an SCP03 secure channel:

* :class:`SCP03CardSession` - the security domain side (the hub's card manager feeds it
  INITIALIZE UPDATE, EXTERNAL AUTHENTICATE and every protected command of the session);
* :class:`SCP03HostSession` - the off-card entity side (the utility's TSM, tests).

Both work on plain bytes and small tuples; nothing here opens a socket or parses more of
ISO 7816-4 than the SCP03 wrapping needs. Section numbers refer to Amendment D v1.1.2
("Secure Channel Protocol '03'"); key derivation is NIST SP 800-108 counter mode with
AES-CMAC (NIST SP 800-38B) as PRF, exactly as §6.2.1 lays out the derivation data.

Choices made where the specification leaves room, kept identical on both sides:

* The encryption counter starts at 1 after EXTERNAL AUTHENTICATE and is incremented for
  *every* command of the session, with or without a data field (§6.2.6). An empty data
  field is not encrypted; a card nevertheless accepts one padded block ``80 00..00`` and
  treats it as empty data, because yubikit's SCP03 encrypts empty bodies.
* For the C-MAC the class byte is the secure-messaging class with the logical channel bits
  cleared (``(CLA & 0x80) | 0x04``), so the MAC does not depend on the channel number.
* Lc inside the MAC input is one byte up to 255 data bytes, else the 3-byte extended form.
* R-MAC and R-ENCRYPTION apply only to responses with SW '9000' or a warning '62xx'/'63xx';
  an error status word travels unprotected (§6.2.5).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from meterhub.card.gp.keys import StaticKeys

from ...errors import MeterhubError

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
    "MemoryCounterStore",
    "SCP03CardSession",
    "SCP03Error",
    "SCP03HostSession",
    "SequenceCounterStore",
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

    def command_mac(
        self, cla: int, ins: int, p1: int, p2: int, body: bytes, extended: bool = False
    ) -> bytes:
        """Full CMAC over chaining value || header || Lc || data (§6.2.4); Lc counts the MAC."""
        lc = _encode_lc(len(body) + self.mac_len, extended)
        return aes_cmac(
            self.keys.s_mac, self.chain + bytes([_mac_cla(cla), ins, p1, p2]) + lc + body
        )

    def _icv(self, counter: int, response: bool) -> bytes:
        # §6.2.6: ICV = AES(S-ENC, counter as 16 bytes); §6.2.7: response ICV has MSB '80'.
        block = (b"\x80" + counter.to_bytes(15, "big")) if response else counter.to_bytes(16, "big")
        return _aes_ecb_block(self.keys.s_enc, block)

    def encrypt(self, data: bytes, counter: int, *, response: bool) -> bytes:
        return _aes_cbc(self.keys.s_enc, self._icv(counter, response), pad80(data), decrypt=False)

    def decrypt(self, data: bytes, counter: int, *, response: bool) -> bytes:
        if not data or len(data) % _BLOCK:
            raise SCP03Error(SW_WRONG_LENGTH, "encrypted data is not a whole number of blocks")
        return unpad80(_aes_cbc(self.keys.s_enc, self._icv(counter, response), data, decrypt=True))

    def response_mac(self, data: bytes, sw: int) -> bytes:
        """R-MAC (§6.2.5): CMAC(S-RMAC, chaining value || response data || SW)."""
        return aes_cmac(self.keys.s_rmac, self.chain + data + sw.to_bytes(2, "big"))[: self.mac_len]


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


# --- the card side ----------------------------------------------------------------------


class _State(Enum):
    IDLE = "idle"
    INITIALIZED = "initialized"  # INITIALIZE UPDATE answered, EXTERNAL AUTHENTICATE due
    AUTHENTICATED = "authenticated"


def _check_i_param(i_param: int) -> None:
    if not 0 <= i_param <= 0xFF or i_param & ~_I_KNOWN_BITS:
        raise ValueError(f"unsupported SCP03 i parameter {i_param:#04x}")
    if i_param & I_R_ENCRYPTION and not i_param & I_R_MAC:
        raise ValueError("R-ENCRYPTION support requires R-MAC support (Table 5-1)")


def _level_supported(level: int, i_param: int) -> bool:
    if level not in SECURITY_LEVELS:
        return False
    if level & R_MAC and not i_param & I_R_MAC:
        return False
    return not (level & R_ENCRYPTION and not i_param & I_R_ENCRYPTION)


class SCP03CardSession:
    """Security-domain side of SCP03 (Amendment D §6, §7).

    ``keys`` is one key set or a mapping KVN -> key set (a live mapping, so PUT KEY made by
    the card manager is seen by the next INITIALIZE UPDATE). ``aid`` is the AID of the
    security domain, the context of the pseudo-random card challenge. ``counters`` keeps
    the sequence counters across sessions and restarts.

    Any failure of :meth:`external_authenticate` or :meth:`unwrap_command` closes the
    session (keys dropped, state idle) and raises :class:`SCP03Error`.
    """

    def __init__(
        self,
        keys: StaticKeys | Mapping[int, StaticKeys],
        *,
        aid: bytes,
        counters: SequenceCounterStore | None = None,
        i_param: int = 0x70,
        diversification_data: bytes = bytes(10),
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        _check_i_param(i_param)
        if not 5 <= len(aid) <= 16:
            raise ValueError("AID must be 5 to 16 bytes (ISO 7816-4)")
        if len(diversification_data) != 10:
            raise ValueError("key diversification data is 10 bytes (§7.1.1.6)")
        self._keys: Mapping[int, StaticKeys] = (
            {keys.kvn: keys} if isinstance(keys, StaticKeys) else keys
        )
        self.aid = bytes(aid)
        self.counters: SequenceCounterStore = (
            counters if counters is not None else MemoryCounterStore()
        )
        self.i_param = i_param
        self.diversification_data = bytes(diversification_data)
        self._random = random
        self._len = 16 if i_param & I_S16 else 8  # challenge, cryptogram and MAC length
        self._state = _State.IDLE
        self._sm: _SecureMessaging | None = None
        self._pending: tuple[SessionKeys, bytes, bytes] | None = None  # keys, host, card chal.
        #: Key set of the current session (its DEK protects PUT KEY data, §4.1.4 / GPC §11.8).
        self.key_set: StaticKeys | None = None

    # -- state -----------------------------------------------------------------------
    @property
    def is_authenticated(self) -> bool:
        """True between a successful EXTERNAL AUTHENTICATE and the session's end."""
        return self._state is _State.AUTHENTICATED

    @property
    def security_level(self) -> int | None:
        """Current security level, or None when no session is authenticated."""
        return self._sm.level if self._sm is not None else None

    def close(self) -> None:
        """End the session and drop its keys (GPC v2.3.1 §10.2.3, session termination)."""
        self._state = _State.IDLE
        self._sm = None
        self._pending = None
        self.key_set = None

    def _fail(self, sw: int, message: str) -> SCP03Error:
        self.close()
        return SCP03Error(sw, message)

    def _key_set(self, kvn: int) -> StaticKeys:
        if kvn == 0:  # '00': first available key set (§7.1.1.2)
            if not self._keys:
                raise SCP03Error(SW_REFERENCED_DATA_NOT_FOUND, "no key set")
            return self._keys[min(self._keys)]
        found = self._keys.get(kvn)
        if found is None:
            raise SCP03Error(SW_REFERENCED_DATA_NOT_FOUND, f"no key set with KVN {kvn:#04x}")
        return found

    # -- INITIALIZE UPDATE (§7.1.1) ------------------------------------------------------
    def initialize_update(self, cla: int, p1: int, p2: int, data: bytes) -> bytes:
        """Process INITIALIZE UPDATE; return the response data (SW '9000' is the caller's).

        P1 = key version ('00' = first available), P2 = '00', data = host challenge.
        Response = key diversification data (10) || key information (KVN, '03', i) ||
        card challenge || card cryptogram || sequence counter (3, pseudo-random mode only).
        A new INITIALIZE UPDATE always ends a session in progress.
        """
        self.close()
        for value, name in ((cla, "CLA"), (p1, "P1"), (p2, "P2")):
            _check_byte(value, name)
        data = bytes(data)
        if _has_sm(cla):
            raise SCP03Error(
                SW_CLA_NOT_SUPPORTED, "INITIALIZE UPDATE is sent without secure messaging"
            )
        if p2 != 0:
            raise SCP03Error(SW_INCORRECT_P1P2, "P2 must be '00'")
        if len(data) != self._len:
            raise SCP03Error(SW_WRONG_LENGTH, f"host challenge must be {self._len} bytes")
        keys = self._key_set(p1)
        if self.i_param & I_PSEUDO_RANDOM:
            counter = self.counters.load(keys.kvn) + 1
            if counter > SEQUENCE_COUNTER_MAX:
                raise SCP03Error(SW_CONDITIONS_OF_USE, "sequence counter exhausted")
            # Persist first: a lost write must never let a challenge be issued twice.
            self.counters.store(keys.kvn, counter)
            card_challenge = pseudo_random_card_challenge(keys.enc, counter, self.aid, self._len)
            tail = counter.to_bytes(3, "big")
        else:
            card_challenge = self._random(self._len)
            tail = b""
        session = derive_session_keys(keys, data, card_challenge)
        cryptogram = card_cryptogram(session.s_mac, data, card_challenge, self._len)
        self._pending = (session, data, card_challenge)
        self.key_set = keys
        self._state = _State.INITIALIZED
        key_info = bytes([keys.kvn, 0x03, self.i_param])
        return self.diversification_data + key_info + card_challenge + cryptogram + tail

    # -- EXTERNAL AUTHENTICATE (§7.1.2) --------------------------------------------------
    def external_authenticate(
        self, cla: int, p1: int, p2: int, data: bytes, *, extended: bool = False
    ) -> None:
        """Verify EXTERNAL AUTHENTICATE (host cryptogram || C-MAC); P1 = security level.

        On success the session is authenticated at level P1 and the caller answers '9000'.
        A wrong MAC or cryptogram raises '6982'; any failure closes the session.
        """
        if self._state is not _State.INITIALIZED or self._pending is None:
            raise self._fail(
                SW_CONDITIONS_OF_USE, "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE"
            )
        try:
            for value, name in ((cla, "CLA"), (p1, "P1"), (p2, "P2")):
                _check_byte(value, name)
        except SCP03Error as exc:
            raise self._fail(exc.sw, exc.message) from None
        data = bytes(data)
        session, host_chal, card_chal = self._pending
        if not _has_sm(cla):
            raise self._fail(SW_SECURITY_STATUS, "EXTERNAL AUTHENTICATE must carry a C-MAC")
        if p2 != 0 or not _level_supported(p1, self.i_param):
            raise self._fail(SW_INCORRECT_P1P2, f"security level {p1:#04x} not supported")
        if len(data) != 2 * self._len:
            raise self._fail(SW_WRONG_LENGTH, "expected host cryptogram and C-MAC")
        sm = _SecureMessaging(session, p1, self._len, _ZERO_BLOCK)  # §6.2.4: chain starts at 0
        body, mac = data[: self._len], data[self._len :]
        full = sm.command_mac(cla, _INS_EXTERNAL_AUTHENTICATE, p1, p2, body, extended)
        expected = host_cryptogram(session.s_mac, host_chal, card_chal, self._len)
        mac_ok = hmac.compare_digest(full[: self._len], mac)
        cryptogram_ok = hmac.compare_digest(expected, body)
        if not (mac_ok and cryptogram_ok):
            raise self._fail(SW_SECURITY_STATUS, "host cryptogram or C-MAC mismatch")
        sm.chain = full
        self._sm = sm
        self._pending = None
        self._state = _State.AUTHENTICATED

    # -- secure messaging (§6.2.4 - §6.2.7) -------------------------------------------------
    def unwrap_command(
        self, cla: int, ins: int, p1: int, p2: int, data: bytes, *, extended: bool = False
    ) -> tuple[int, int, int, int, bytes]:
        """Check and strip the protection of one command of the session.

        ``data`` is the command data field as received (including the C-MAC). Returns the
        command as it was before wrapping: (CLA without the SM bit, INS, P1, P2, plain
        data). Raises '6982' (and closes the session) on a wrong C-MAC - which is also what
        a replayed, reordered or dropped command produces, through the MAC chaining.
        """
        if self._sm is None:
            raise SCP03Error(SW_SECURITY_STATUS, "no authenticated secure channel")
        sm = self._sm
        try:
            for value, name in ((cla, "CLA"), (ins, "INS"), (p1, "P1"), (p2, "P2")):
                _check_byte(value, name)
        except SCP03Error as exc:
            raise self._fail(exc.sw, exc.message) from None
        data = bytes(data)
        # Every command of the session consumes one counter value, data or not (§6.2.6).
        counter = sm.counter
        sm.counter += 1
        sm.last_counter = counter
        if not sm.level & C_MAC:
            # Level '00': authentication only, commands travel as they are.
            if _has_sm(cla):
                raise self._fail(SW_SECURITY_STATUS, "secure messaging not expected at level 00")
            return cla, ins, p1, p2, data
        if not _has_sm(cla):
            raise self._fail(SW_SECURITY_STATUS, "command lacks secure messaging")
        if len(data) < sm.mac_len:
            raise self._fail(SW_SECURITY_STATUS, "C-MAC missing")
        body, mac = data[: -sm.mac_len], data[-sm.mac_len :]
        full = sm.command_mac(cla, ins, p1, p2, body, extended)
        if not hmac.compare_digest(full[: sm.mac_len], mac):
            raise self._fail(SW_SECURITY_STATUS, "C-MAC mismatch")
        sm.chain = full
        plain = body
        if sm.level & C_DECRYPTION and body:
            try:
                # One padded empty block '80 00..' decrypts to b"" (yubikit sends that).
                plain = sm.decrypt(body, counter, response=False)
            except SCP03Error as exc:
                raise self._fail(exc.sw, exc.message) from None
        return _without_sm(cla), ins, p1, p2, plain

    def wrap_response(self, data: bytes, sw: int) -> bytes:
        """Protect the response to the last unwrapped command; return the new data field.

        R-ENCRYPTION (level '33') encrypts non-empty data with ICV = AES(S-ENC, '80' ||
        counter); R-MAC (levels '11', '13', '33') appends CMAC(S-RMAC, chaining value ||
        data || SW). Errors (neither '9000' nor '62xx'/'63xx') are left unprotected.
        """
        data = bytes(data)
        sm = self._sm
        if sm is None or not sm.level & R_MAC or not _response_protected(sw):
            return data
        if sm.level & R_ENCRYPTION and data:
            data = sm.encrypt(data, sm.last_counter, response=True)
        return data + sm.response_mac(data, sw)


# --- the host side ----------------------------------------------------------------------


def _encode_apdu(cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
    """ISO 7816-4 §5.1 encoding, short when possible, extended when data or Le need it."""
    extended = len(data) > 0xFF or (le is not None and le > 0x100)
    out = bytes([cla, ins, p1, p2])
    if extended:
        if data:
            out += b"\x00" + len(data).to_bytes(2, "big") + data
        if le is not None:
            le_bytes = (le % 0x10000).to_bytes(2, "big")  # 65536 encodes as '0000'
            out += le_bytes if data else b"\x00" + le_bytes
        return out
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        out += bytes([le % 0x100])  # 256 (or 0) encodes as '00'
    return out


class SCP03HostSession:
    """Off-card side of SCP03: builds and protects commands, checks responses.

    ``aid`` (optional) is the AID of the security domain being addressed; when given and
    the card uses pseudo-random challenges, the host also checks the card challenge
    against the sequence counter (§6.2.2.1).
    """

    def __init__(
        self,
        keys: StaticKeys,
        *,
        aid: bytes | None = None,
        s16: bool = False,
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.keys = keys
        self.aid = bytes(aid) if aid is not None else None
        self._len = 16 if s16 else 8
        self._random = random
        self._host_challenge: bytes | None = None
        self._kvn_requested = 0
        self._session: SessionKeys | None = None
        self._card_challenge = b""
        self._sm: _SecureMessaging | None = None
        self.i_param: int | None = None
        self.sequence_counter: int | None = None
        self.diversification_data: bytes | None = None

    @property
    def is_authenticated(self) -> bool:
        return self._sm is not None

    @property
    def security_level(self) -> int | None:
        return self._sm.level if self._sm is not None else None

    @property
    def session_keys(self) -> SessionKeys | None:
        """Session keys after a verified INITIALIZE UPDATE response (for key-set tools)."""
        return self._session

    def close(self) -> None:
        """Forget the session (keys, chaining value, counter)."""
        self._sm = None
        self._session = None
        self._host_challenge = None

    # -- INITIALIZE UPDATE (§7.1.1) ------------------------------------------------------
    def initialize_update(
        self, *, kvn: int | None = None, host_challenge: bytes | None = None, cla: int = 0x80
    ) -> bytes:
        """Build INITIALIZE UPDATE: CLA '50' KVN '00' Lc host-challenge Le='00'."""
        self.close()
        kvn = self.keys.kvn if kvn is None else kvn
        _check_byte(kvn, "KVN")
        challenge = self._random(self._len) if host_challenge is None else bytes(host_challenge)
        if len(challenge) != self._len:
            raise SCP03Error(SW_WRONG_LENGTH, f"host challenge must be {self._len} bytes")
        self._host_challenge = challenge
        self._kvn_requested = kvn
        return _encode_apdu(cla, _INS_INITIALIZE_UPDATE, kvn, 0x00, challenge, 0)

    def process_initialize_update_response(self, rapdu: bytes) -> None:
        """Parse the INITIALIZE UPDATE response (data || SW) and verify the card cryptogram."""
        if self._host_challenge is None:
            raise SCP03Error(SW_CONDITIONS_OF_USE, "no INITIALIZE UPDATE outstanding")
        rapdu = bytes(rapdu)
        if len(rapdu) < 2:
            raise SCP03Error(SW_WRONG_LENGTH, "response shorter than a status word")
        data, sw = rapdu[:-2], int.from_bytes(rapdu[-2:], "big")
        if sw != SW_OK:
            self.close()
            raise SCP03Error(sw, "INITIALIZE UPDATE refused")
        n = self._len
        if len(data) < 13:
            raise self._fail(SW_WRONG_LENGTH, "INITIALIZE UPDATE response too short")
        kvn, scp, i_param = data[10], data[11], data[12]
        if scp != 0x03:
            raise self._fail(SW_WRONG_DATA, f"card answered SCP{scp:02X}, not SCP03")
        if self._kvn_requested and kvn != self._kvn_requested:
            raise self._fail(SW_WRONG_DATA, "card used another key version")
        counter_len = 3 if i_param & I_PSEUDO_RANDOM else 0
        # Some cards append the counter even in random mode; tolerate 3 extra bytes.
        if len(data) not in (13 + 2 * n + counter_len, 13 + 2 * n + 3):
            raise self._fail(SW_WRONG_LENGTH, "INITIALIZE UPDATE response has the wrong length")
        card_chal = data[13 : 13 + n]
        cryptogram = data[13 + n : 13 + 2 * n]
        counter_bytes = data[13 + 2 * n :]
        host_chal = self._host_challenge
        if i_param & I_PSEUDO_RANDOM and self.aid is not None:
            counter = int.from_bytes(counter_bytes, "big")
            expected_chal = pseudo_random_card_challenge(self.keys.enc, counter, self.aid, n)
            if not hmac.compare_digest(expected_chal, card_chal):
                raise self._fail(SW_SECURITY_STATUS, "card challenge does not match the counter")
        session = derive_session_keys(self.keys, host_chal, card_chal)
        if not hmac.compare_digest(
            card_cryptogram(session.s_mac, host_chal, card_chal, n), cryptogram
        ):
            raise self._fail(SW_SECURITY_STATUS, "card cryptogram mismatch")
        self._session = session
        self._card_challenge = card_chal
        self.i_param = i_param
        self.sequence_counter = int.from_bytes(counter_bytes, "big") if counter_bytes else None
        self.diversification_data = data[:10]

    # -- EXTERNAL AUTHENTICATE (§7.1.2) --------------------------------------------------
    def external_authenticate(self, security_level: int = C_MAC, *, cla: int = 0x80) -> bytes:
        """Build EXTERNAL AUTHENTICATE ('84 82' level '00' host cryptogram || C-MAC).

        The session becomes authenticated on the host side as the command is built; the
        caller closes it if the card does not answer '9000'.
        """
        if self._session is None or self._host_challenge is None or self.i_param is None:
            raise SCP03Error(SW_CONDITIONS_OF_USE, "card cryptogram not verified yet")
        if not _level_supported(security_level, self.i_param):
            raise SCP03Error(
                SW_INCORRECT_P1P2, f"security level {security_level:#04x} not offered by the card"
            )
        n = self._len
        body = host_cryptogram(self._session.s_mac, self._host_challenge, self._card_challenge, n)
        sm = _SecureMessaging(self._session, security_level, n, _ZERO_BLOCK)
        sm_cla = _with_sm(cla)
        full = sm.command_mac(sm_cla, _INS_EXTERNAL_AUTHENTICATE, security_level, 0x00, body)
        sm.chain = full
        self._sm = sm
        return _encode_apdu(
            sm_cla, _INS_EXTERNAL_AUTHENTICATE, security_level, 0x00, body + full[:n], None
        )

    # -- secure messaging (§6.2.4 - §6.2.7) -------------------------------------------------
    def wrap_command(
        self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
    ) -> bytes:
        """Protect one command and return the encoded C-APDU.

        ``le`` is Ne: None for no Le field, 256 (or 0) for short '00', up to 65536.
        C-DECRYPTION encrypts non-empty data only; the counter advances for every command.
        """
        if self._sm is None:
            raise SCP03Error(SW_SECURITY_STATUS, "no authenticated secure channel")
        for value, name in ((cla, "CLA"), (ins, "INS"), (p1, "P1"), (p2, "P2")):
            _check_byte(value, name)
        if le is not None and not 0 <= le <= 0x10000:
            raise SCP03Error(SW_WRONG_LENGTH, "Le out of range")
        sm = self._sm
        data = bytes(data)
        counter = sm.counter
        sm.counter += 1
        sm.last_counter = counter
        if not sm.level & C_MAC:
            return _encode_apdu(cla, ins, p1, p2, data, le)
        if sm.level & C_DECRYPTION and data:
            data = sm.encrypt(data, counter, response=False)
        if len(data) + sm.mac_len > 0xFFFF:
            raise SCP03Error(SW_WRONG_LENGTH, "command data too long")
        sm_cla = _with_sm(cla)
        # The MAC covers Lc as it will be sent: extended when the protected data or
        # Le need it (§6.2.4 and ISO/IEC 7816-4 §5.1).
        extended = len(data) + sm.mac_len > 0xFF or (le is not None and le > 0x100)
        full = sm.command_mac(sm_cla, ins, p1, p2, data, extended)
        sm.chain = full
        return _encode_apdu(sm_cla, ins, p1, p2, data + full[: sm.mac_len], le)

    def unwrap_response(self, rapdu: bytes) -> tuple[bytes, int]:
        """Verify the R-MAC and decrypt the response (data || SW); return (data, SW)."""
        rapdu = bytes(rapdu)
        if len(rapdu) < 2:
            raise SCP03Error(SW_WRONG_LENGTH, "response shorter than a status word")
        data, sw = rapdu[:-2], int.from_bytes(rapdu[-2:], "big")
        sm = self._sm
        if sm is None or not sm.level & R_MAC or not _response_protected(sw):
            return data, sw
        if len(data) < sm.mac_len:
            raise self._fail(SW_SECURITY_STATUS, "R-MAC missing")
        body, mac = data[: -sm.mac_len], data[-sm.mac_len :]
        if not hmac.compare_digest(sm.response_mac(body, sw), mac):
            raise self._fail(SW_SECURITY_STATUS, "R-MAC mismatch")
        if sm.level & R_ENCRYPTION and body:
            try:
                body = sm.decrypt(body, sm.last_counter, response=True)
            except SCP03Error as exc:
                raise self._fail(exc.sw, exc.message) from None
        return body, sw

    def _fail(self, sw: int, message: str) -> SCP03Error:
        self.close()
        return SCP03Error(sw, message)
