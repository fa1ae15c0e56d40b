"""The card side of SCP03 (Amendment D §7): the session a security domain runs.

The hub's card manager (:mod:`meterhub.card.gp.sd`) feeds it INITIALIZE UPDATE,
EXTERNAL AUTHENTICATE and every protected command of the session; sans-IO.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Final

from ..keys import StaticKeys
from .kdf import (
    _INS_EXTERNAL_AUTHENTICATE,
    _ZERO_BLOCK,
    C_DECRYPTION,
    C_MAC,
    I_PSEUDO_RANDOM,
    I_S16,
    R_ENCRYPTION,
    R_MAC,
    SEQUENCE_COUNTER_MAX,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_OF_USE,
    SW_INCORRECT_P1P2,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS,
    SW_WRONG_LENGTH,
    SCP03Error,
    SessionKeys,
    card_cryptogram,
    check_i_param,
    derive_session_keys,
    host_cryptogram,
    level_supported,
    pseudo_random_card_challenge,
)
from .messaging import (
    MemoryCounterStore,
    SequenceCounterStore,
    _check_byte,
    _has_sm,
    _response_protected,
    _SecureMessaging,
    _without_sm,
)

__all__ = [
    "SCP03CardSession",
]

# --- the card side ----------------------------------------------------------------------


class SessionState(Enum):
    """The card side's session states (Amendment D §7.1, GPC v2.3.1 §10.2.3)."""

    IDLE = "idle"
    INITIALIZED = "initialized"  # INITIALIZE UPDATE answered, EXTERNAL AUTHENTICATE due
    AUTHENTICATED = "authenticated"


class SessionCommand(Enum):
    """What the security domain hands the session."""

    INITIALIZE_UPDATE = "initialize-update"
    EXTERNAL_AUTHENTICATE = "external-authenticate"
    PROTECTED_COMMAND = "protected-command"  # unwrap_command: any command of the session


_I, _N, _A = SessionState.IDLE, SessionState.INITIALIZED, SessionState.AUTHENTICATED
_IU, _EA, _PC = (
    SessionCommand.INITIALIZE_UPDATE,
    SessionCommand.EXTERNAL_AUTHENTICATE,
    SessionCommand.PROTECTED_COMMAND,
)

#: (state, command) -> (state after success, or None when the command is refused in this
#: state; state after a failure or refusal). A new INITIALIZE UPDATE always ends a session
#: in progress; EXTERNAL AUTHENTICATE only follows INITIALIZE UPDATE ('6985' otherwise, and
#: the session ends); protected commands need an authenticated session ('6982'; a session
#: still waiting for EXTERNAL AUTHENTICATE keeps waiting); any failed check ends the session.
SESSION_TRANSITIONS: Final[Mapping[tuple[SessionState, SessionCommand], tuple[SessionState | None, SessionState]]] = {
    (_I, _IU): (_N, _I),
    (_N, _IU): (_N, _I),
    (_A, _IU): (_N, _I),
    (_I, _EA): (None, _I),
    (_N, _EA): (_A, _I),
    (_A, _EA): (None, _I),
    (_I, _PC): (None, _I),
    (_N, _PC): (None, _N),
    (_A, _PC): (_A, _I),
}


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
        check_i_param(i_param)
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
        self._state = SessionState.IDLE
        self._sm: _SecureMessaging | None = None
        self._pending: tuple[SessionKeys, bytes, bytes] | None = None  # keys, host, card chal.
        #: Key set of the current session (its DEK protects PUT KEY data, §4.1.4 / GPC §11.8).
        self.key_set: StaticKeys | None = None

    # -- state -----------------------------------------------------------------------
    @property
    def is_authenticated(self) -> bool:
        """True between a successful EXTERNAL AUTHENTICATE and the session's end."""
        return self._state is SessionState.AUTHENTICATED

    @property
    def state(self) -> SessionState:
        """Where the session is in :data:`SESSION_TRANSITIONS`."""
        return self._state

    @property
    def security_level(self) -> int | None:
        """Current security level, or None when no session is authenticated."""
        return self._sm.level if self._sm is not None else None

    def close(self) -> None:
        """End the session and drop its keys (GPC v2.3.1 §10.2.3, session termination)."""
        self._state = SessionState.IDLE
        self._drop()

    def _drop(self) -> None:
        self._sm = None
        self._pending = None
        self.key_set = None

    def _allowed(self, command: SessionCommand) -> bool:
        return SESSION_TRANSITIONS[(self._state, command)][0] is not None

    def _succeed(self, command: SessionCommand) -> None:
        following = SESSION_TRANSITIONS[(self._state, command)][0]
        assert following is not None  # callers check _allowed first
        self._state = following

    def _fall_back(self, command: SessionCommand) -> None:
        """Take the table's failure state; reaching IDLE ends the session and drops its keys."""
        self._state = SESSION_TRANSITIONS[(self._state, command)][1]
        if self._state is SessionState.IDLE:
            self._drop()

    def _fail_in(self, command: SessionCommand, sw: int, message: str) -> SCP03Error:
        """The command failed or was refused: fall back, and return the error to raise."""
        self._fall_back(command)
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
        self._fall_back(_IU)  # until it succeeds, whatever session came before has ended
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
        self._succeed(_IU)
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
        if not self._allowed(_EA) or self._pending is None:
            raise self._fail_in(_EA, SW_CONDITIONS_OF_USE, "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE")
        try:
            for value, name in ((cla, "CLA"), (p1, "P1"), (p2, "P2")):
                _check_byte(value, name)
        except SCP03Error as exc:
            raise self._fail_in(_EA, exc.sw, exc.message) from None
        data = bytes(data)
        session, host_chal, card_chal = self._pending
        if not _has_sm(cla):
            raise self._fail_in(_EA, SW_SECURITY_STATUS, "EXTERNAL AUTHENTICATE must carry a C-MAC")
        if p2 != 0 or not level_supported(p1, self.i_param):
            raise self._fail_in(_EA, SW_INCORRECT_P1P2, f"security level {p1:#04x} not supported")
        if len(data) != 2 * self._len:
            raise self._fail_in(_EA, SW_WRONG_LENGTH, "expected host cryptogram and C-MAC")
        sm = _SecureMessaging(session, p1, self._len, _ZERO_BLOCK)  # §6.2.4: chain starts at 0
        body, mac = data[: self._len], data[self._len :]
        full = sm.command_mac(cla, _INS_EXTERNAL_AUTHENTICATE, p1, p2, body, extended)
        expected = host_cryptogram(session.s_mac, host_chal, card_chal, self._len)
        mac_ok = hmac.compare_digest(full[: self._len], mac)
        cryptogram_ok = hmac.compare_digest(expected, body)
        if not (mac_ok and cryptogram_ok):
            raise self._fail_in(_EA, SW_SECURITY_STATUS, "host cryptogram or C-MAC mismatch")
        sm.chain = full
        self._sm = sm
        self._pending = None
        self._succeed(_EA)

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
        if not self._allowed(_PC) or self._sm is None:
            raise self._fail_in(_PC, SW_SECURITY_STATUS, "no authenticated secure channel")
        sm = self._sm
        try:
            for value, name in ((cla, "CLA"), (ins, "INS"), (p1, "P1"), (p2, "P2")):
                _check_byte(value, name)
        except SCP03Error as exc:
            raise self._fail_in(_PC, exc.sw, exc.message) from None
        data = bytes(data)
        # Every command of the session consumes one counter value, data or not (§6.2.6).
        counter = sm.counter
        sm.counter += 1
        sm.last_counter = counter
        if not sm.level & C_MAC:
            # Level '00': authentication only, commands travel as they are.
            if _has_sm(cla):
                raise self._fail_in(_PC, SW_SECURITY_STATUS, "secure messaging not expected at level 00")
            return cla, ins, p1, p2, data
        if not _has_sm(cla):
            raise self._fail_in(_PC, SW_SECURITY_STATUS, "command lacks secure messaging")
        if len(data) < sm.mac_len:
            raise self._fail_in(_PC, SW_SECURITY_STATUS, "C-MAC missing")
        body, mac = data[: -sm.mac_len], data[-sm.mac_len :]
        full = sm.command_mac(cla, ins, p1, p2, body, extended)
        if not hmac.compare_digest(full[: sm.mac_len], mac):
            raise self._fail_in(_PC, SW_SECURITY_STATUS, "C-MAC mismatch")
        sm.chain = full
        plain = body
        if sm.level & C_DECRYPTION and body:
            try:
                # One padded empty block '80 00..' decrypts to b"" (yubikit sends that).
                plain = sm.decrypt(body, counter, response=False)
            except SCP03Error as exc:
                raise self._fail_in(_PC, exc.sw, exc.message) from None
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
