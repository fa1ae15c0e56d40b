"""The SCP03 card session's transition table (protocols/gp/scp03/card_session.py), every row.

For every session state times every command, a real card session (driven by the host
session) is brought into the state and handed a well-formed command and a broken one;
the state afterwards, the status word of a refusal and whether the session keys are
dropped are checked against a literal table written from Amendment D §7 and GPC v2.3.1
§10.2.3 (it does not consult SESSION_TRANSITIONS), and the module's table must agree."""

from __future__ import annotations

import itertools

import pytest

from meterhub.protocols.gp.keys import StaticKeys
from meterhub.protocols.gp.scp03 import C_MAC, SCP03CardSession, SCP03Error, SCP03HostSession
from meterhub.protocols.gp.scp03.card_session import (
    SESSION_TRANSITIONS,
    SessionCommand,
    SessionState,
)

KEYS = StaticKeys(0x30, bytes(range(0x40, 0x50)), bytes(range(0x50, 0x60)), bytes(range(0x60, 0x70)))
AID = bytes.fromhex("A0000006472F0001")
S, C = SessionState, SessionCommand

#: (state, command) -> (state after a good command | refusal SW, state after a bad one).
EXPECTED = {
    (S.IDLE, C.INITIALIZE_UPDATE): (S.INITIALIZED, S.IDLE),
    (S.INITIALIZED, C.INITIALIZE_UPDATE): (S.INITIALIZED, S.IDLE),
    (S.AUTHENTICATED, C.INITIALIZE_UPDATE): (S.INITIALIZED, S.IDLE),
    (S.IDLE, C.EXTERNAL_AUTHENTICATE): (0x6985, S.IDLE),
    (S.INITIALIZED, C.EXTERNAL_AUTHENTICATE): (S.AUTHENTICATED, S.IDLE),
    (S.AUTHENTICATED, C.EXTERNAL_AUTHENTICATE): (0x6985, S.IDLE),
    (S.IDLE, C.PROTECTED_COMMAND): (0x6982, S.IDLE),
    (S.INITIALIZED, C.PROTECTED_COMMAND): (0x6982, S.INITIALIZED),
    (S.AUTHENTICATED, C.PROTECTED_COMMAND): (S.AUTHENTICATED, S.IDLE),
}


def split(apdu: bytes) -> tuple[int, int, int, int, bytes]:
    return apdu[0], apdu[1], apdu[2], apdu[3], apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""


class Pair:
    def __init__(self) -> None:
        self.card = SCP03CardSession(KEYS, aid=AID)
        self.host = SCP03HostSession(KEYS, aid=AID)
        self.ext_auth: bytes | None = None

    def initialize(self) -> None:
        cla, _, p1, p2, data = split(self.host.initialize_update())
        rdata = self.card.initialize_update(cla, p1, p2, data)
        self.host.process_initialize_update_response(rdata + b"\x90\x00")
        self.ext_auth = self.host.external_authenticate(C_MAC)

    def authenticate(self) -> None:
        self.initialize()
        assert self.ext_auth is not None
        cla, _, p1, p2, data = split(self.ext_auth)
        self.card.external_authenticate(cla, p1, p2, data)


def reach(state: SessionState) -> Pair:
    pair = Pair()
    if state is S.INITIALIZED:
        pair.initialize()
    elif state is S.AUTHENTICATED:
        pair.authenticate()
    assert pair.card.state is state
    return pair


def send(pair: Pair, command: SessionCommand, *, good: bool) -> None:
    card = pair.card
    if command is C.INITIALIZE_UPDATE:
        cla, _, p1, p2, data = split(SCP03HostSession(KEYS, aid=AID).initialize_update())
        card.initialize_update(cla, p1, p2, data if good else data[:-1])  # short host challenge
    elif command is C.EXTERNAL_AUTHENTICATE:
        if pair.ext_auth is None:  # nothing initialized: any well-formed EXTERNAL AUTHENTICATE
            card.external_authenticate(0x84, C_MAC, 0x00, bytes(16))
        else:
            cla, _, p1, p2, data = split(pair.ext_auth)
            card.external_authenticate(cla, p1, p2, data if good else bytes(len(data)))
    else:
        wrapped = (
            pair.host.wrap_command(0x80, 0xF2, 0x40, 0x02, b"\x4f\x00", 0)
            if pair.host.is_authenticated
            else bytes([0x84, 0xF2, 0x40, 0x02, 0x0A, 0x4F, 0x00]) + bytes(8)
        )
        cla, ins, p1, p2, data = split(wrapped)
        card.unwrap_command(cla, ins, p1, p2, data if good else data[:-1] + bytes([data[-1] ^ 1]))


def test_the_table_is_total_and_matches_the_literal():
    assert set(SESSION_TRANSITIONS) == set(itertools.product(SessionState, SessionCommand))
    for key, (after_good, after_bad) in EXPECTED.items():
        success, failure = SESSION_TRANSITIONS[key]
        assert failure is after_bad
        assert success is (after_good if isinstance(after_good, SessionState) else None)


@pytest.mark.parametrize(("state", "command"), sorted(EXPECTED, key=str), ids=str)
@pytest.mark.parametrize("good", [True, False], ids=["good", "bad"])
def test_every_row_is_what_the_session_does(state, command, good):
    pair = reach(state)
    after_good, after_bad = EXPECTED[(state, command)]
    refused = not isinstance(after_good, SessionState)
    try:
        send(pair, command, good=good)
        raised = None
    except SCP03Error as exc:
        raised = exc.sw
    if good and not refused:
        assert raised is None and pair.card.state is after_good
    else:
        assert raised is not None
        if refused:
            assert raised == after_good
        assert pair.card.state is after_bad
    if pair.card.state is S.IDLE:
        assert pair.card.key_set is None and pair.card.security_level is None
    else:
        assert pair.card.key_set is not None
