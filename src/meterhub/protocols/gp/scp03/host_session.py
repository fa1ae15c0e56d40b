"""The host side of SCP03 (Amendment D §7): the off-card entity's session (the
utility's TSM, :class:`meterhub.protocols.gp.host.GPClient`, tests); sans-IO.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

from ..keys import StaticKeys
from .kdf import (
    _INS_EXTERNAL_AUTHENTICATE,
    _INS_INITIALIZE_UPDATE,
    _ZERO_BLOCK,
    C_DECRYPTION,
    C_MAC,
    I_PSEUDO_RANDOM,
    R_ENCRYPTION,
    R_MAC,
    SW_CONDITIONS_OF_USE,
    SW_INCORRECT_P1P2,
    SW_OK,
    SW_SECURITY_STATUS,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SCP03Error,
    SessionKeys,
    card_cryptogram,
    derive_session_keys,
    host_cryptogram,
    level_supported,
    pseudo_random_card_challenge,
)
from .messaging import _check_byte, _response_protected, _SecureMessaging, _with_sm

__all__ = [
    "SCP03HostSession",
]

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
        if not level_supported(security_level, self.i_param):
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
