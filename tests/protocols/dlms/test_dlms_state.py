"""The DLMS server association's transition table (protocols/dlms/state.py), every row.

The table must be total, and each of its rows must be what the real
:class:`ServerAssociation` does: for every state times every event, the association
is driven into the state (public or management association, the latter under suite 0
and HLS-GMAC), sent a representative APDU of the event, and its answer and next state
are checked against the row. Illegal events must be answered with the protocol's own
refusal (ExceptionResponse, AARE rejected-transient, a refused ACTION), never raise."""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime

import pytest
from dlms_cosem import enumerations as E  # noqa: N812
from dlms_cosem.cosem import CosemMethod, Obis
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.security import SecurityControlField
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.client import CLIENT_CONFORMANCE
from meterhub.protocols.dlms.cosem import CLOCK, InMemoryDataSource
from meterhub.protocols.dlms.security import (
    SC_AUTH_ENC,
    Suite0Keys,
    decode_general_glo_cipher,
    decrypt,
    encode_general_glo_cipher,
    encrypt,
    hls_gmac_response,
)
from meterhub.protocols.dlms.server import DlmsServer, ServerAssociation
from meterhub.protocols.dlms.state import (
    TRANSITIONS,
    Action,
    AssociationState,
    Event,
    Outcome,
    classify,
)

KEYS = Suite0Keys(bytes(range(16)), bytes(range(16, 32)))
TITLE = b"STATE001"
NOW = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)
S = AssociationState


class Peer:
    """One client end with just enough of the protocol to reach every state."""

    def __init__(self, managed: bool) -> None:
        self.server = DlmsServer(InMemoryDataSource(clock=lambda: NOW, energy_wh=7), keys=KEYS)
        self.managed = managed
        self.assoc: ServerAssociation = self.server.association(1 if managed else 16)
        self.ic = 1
        self.stoc = b""
        self.server_title = b""

    def _next_ic(self) -> int:
        ic, self.ic = self.ic, self.ic + 1
        return ic

    def aarq(self) -> bytes:
        initiate = xdlms.InitiateRequest(proposed_conformance=CLIENT_CONFORMANCE, client_max_receive_pdu_size=1024)
        if not self.managed:
            return acse.ApplicationAssociationRequest(
                ciphered=False, authentication=None, user_information=acse.UserInformation(content=initiate)
            ).to_bytes()
        ic = self._next_ic()
        return acse.ApplicationAssociationRequest(
            ciphered=True,
            system_title=TITLE,
            authentication=E.AuthenticationMechanism.HLS_GMAC,
            authentication_value=secrets.token_bytes(32),
            user_information=acse.UserInformation(
                content=xdlms.GlobalCipherInitiateRequest(
                    SecurityControlField.from_bytes(bytes([SC_AUTH_ENC])),
                    ic,
                    encrypt(KEYS, TITLE, ic, initiate.to_bytes()),
                )
            ),
        ).to_bytes()

    def open(self) -> bytes:
        """Send the AARQ; keep StoC and the server's title from an accepting AARE."""
        raw = self.assoc.handle(self.aarq())
        aare = acse.ApplicationAssociationResponse.from_bytes(raw)
        if self.managed and aare.result == E.AssociationResult.ACCEPTED:
            self.stoc, self.server_title = bytes(aare.authentication_value), bytes(aare.system_title)
        return raw

    def hls_reply(self, correct: bool = True) -> bytes:
        ic = self.ic  # the carrying APDU's counter (as dlms-cosem and our client do)
        reply = hls_gmac_response(KEYS, TITLE, ic, self.stoc) if correct else bytes(17)
        method = CosemMethod(E.CosemInterface.ASSOCIATION_LN, Obis(0, 0, 40, 0, 0), 1)
        return xdlms.ActionRequestNormal(
            cosem_method=method,
            data=axdr.octet_string(reply),
            invoke_id_and_priority=xdlms.InvokeIdAndPriority.from_bytes(b"\xc1"),
        ).to_bytes()

    def send(self, plain: bytes, *, protect: bool) -> bytes:
        """Send a service APDU, under general-glo-ciphering in a ciphered association;
        returns the plain answer (an ExceptionResponse travels in clear)."""
        if not protect:
            return self.assoc.handle(plain)
        ic = self._next_ic()
        raw = self.assoc.handle(encode_general_glo_cipher(TITLE, SC_AUTH_ENC, ic, encrypt(KEYS, TITLE, ic, plain)))
        if raw[:1] != b"\xdb":
            return raw
        title, sc, sic, text = decode_general_glo_cipher(raw)
        return decrypt(KEYS, title, sic, sc, text)


def reach(state: AssociationState, managed: bool) -> Peer:
    peer = Peer(managed)
    if state is S.IDLE:
        return peer
    peer.open()
    if state is S.ASSOCIATED and managed:
        answer = peer.send(peer.hls_reply(), protect=True)
        assert answer[:1] == b"\xc7"
    assert peer.assoc.state is state
    return peer


GET_CLOCK = bytes([0xC0, 0x01, 0xC1, 0x00, 0x08]) + CLOCK + b"\x02\x00"
CLOCK_METHOD = xdlms.ActionRequestNormal(
    cosem_method=CosemMethod(E.CosemInterface.CLOCK, Obis(0, 0, 1, 0, 0), 1),
    data=axdr.integer(0),
    invoke_id_and_priority=xdlms.InvokeIdAndPriority.from_bytes(b"\xc1"),
).to_bytes()
RLRQ = acse.ReleaseRequest(reason=E.ReleaseRequestReason.NORMAL).to_bytes()


def event_apdu(peer: Peer, event: Event) -> tuple[bytes, bool]:
    """A representative APDU of ``event`` for this peer; and whether it goes protected."""
    ciphered = peer.assoc.ciphered
    if event is Event.AARQ:
        return peer.aarq(), False
    if event is Event.RLRQ:
        return RLRQ, False
    if event is Event.GET:
        return GET_CLOCK, ciphered
    if event is Event.HLS_REPLY:
        return peer.hls_reply(), ciphered
    if event is Event.ACTION:
        return CLOCK_METHOD, ciphered
    if event is Event.BAD_ACTION:
        return b"\xc3\x01", ciphered
    if event is Event.MISPLACED:
        # inside protection an ACSE APDU; in clear a ciphered one
        return (RLRQ, True) if ciphered else (b"\xdb\x08" + bytes(8) + b"\x00", False)
    return b"\x42\x00", ciphered  # UNKNOWN


def check_answer(action: Action, answer: bytes) -> Outcome:
    """The answer matches the row's action; returns the outcome it shows."""
    assert answer, "no answer"
    if action is Action.OPEN:
        aare = acse.ApplicationAssociationResponse.from_bytes(answer)
        assert aare.result == E.AssociationResult.ACCEPTED
        needs = aare.result_source_diagnostics == E.AcseServiceUserDiagnostics.AUTHENTICATION_REQUIRED
        return Outcome.NEEDS_HLS if needs else Outcome.DONE
    if action is Action.REJECT_BUSY:
        aare = acse.ApplicationAssociationResponse.from_bytes(answer)
        assert aare.result == E.AssociationResult.REJECTED_TRANSIENT
        return Outcome.REFUSED
    if action is Action.RELEASE:
        assert answer[0] == 0x63  # RLRE
        return Outcome.DONE
    if action is Action.GET:
        assert answer[:4] == b"\xc4\x01\xc1\x00"  # Get-Response-Normal with data
        return Outcome.DONE
    if action is Action.CHECK_HLS:
        resp = xdlms.ActionResponseNormalWithData.from_bytes(answer)
        assert resp.status == E.ActionResultStatus.SUCCESS
        return Outcome.DONE
    if action is Action.DENY_ACTION:
        resp = xdlms.ActionResponseNormal.from_bytes(answer)
        assert resp.status == E.ActionResultStatus.READ_WRITE_DENIED
        return Outcome.DONE
    expected = {
        Action.REFUSE_MALFORMED: (E.StateException.SERVICE_NOT_ALLOWED, E.ServiceException.OTHER_REASON),
        Action.NOT_ALLOWED: (E.StateException.SERVICE_NOT_ALLOWED, E.ServiceException.OPERATION_NOT_POSSIBLE),
        Action.NOT_SUPPORTED: (E.StateException.SERVICE_UNKNOWN, E.ServiceException.SERVICE_NOT_SUPPORTED),
    }[action]
    assert answer[0] == 0xD8 and (answer[1], answer[2]) == (expected[0].value, expected[1].value)
    return Outcome.REFUSED


# What the association answered and where it went before the table existed (read off
# the guards in server.py at 3fbd59e), for a well-formed APDU of each event. The
# table and the code must both agree with this literal; it does not consult TRANSITIONS.
A = Action
ANSWER: dict = {
    (S.IDLE, Event.AARQ): (A.OPEN, {False: S.ASSOCIATED, True: S.AWAITING_HLS}),
    (S.IDLE, Event.RLRQ): (A.NOT_ALLOWED, S.IDLE),
    (S.IDLE, Event.GET): (A.NOT_ALLOWED, S.IDLE),
    (S.IDLE, Event.HLS_REPLY): (A.NOT_ALLOWED, S.IDLE),
    (S.IDLE, Event.ACTION): (A.NOT_ALLOWED, S.IDLE),
    (S.IDLE, Event.BAD_ACTION): (A.NOT_ALLOWED, S.IDLE),
    (S.IDLE, Event.MISPLACED): (A.NOT_ALLOWED, S.IDLE),
    (S.IDLE, Event.UNKNOWN): (A.NOT_ALLOWED, S.IDLE),
    (S.AWAITING_HLS, Event.AARQ): (A.REJECT_BUSY, S.AWAITING_HLS),
    (S.AWAITING_HLS, Event.RLRQ): (A.RELEASE, S.IDLE),
    (S.AWAITING_HLS, Event.GET): (A.NOT_ALLOWED, S.AWAITING_HLS),
    (S.AWAITING_HLS, Event.HLS_REPLY): (A.CHECK_HLS, S.ASSOCIATED),
    (S.AWAITING_HLS, Event.ACTION): (A.DENY_ACTION, S.IDLE),
    (S.AWAITING_HLS, Event.BAD_ACTION): (A.REFUSE_MALFORMED, S.AWAITING_HLS),
    (S.AWAITING_HLS, Event.MISPLACED): (A.NOT_ALLOWED, S.AWAITING_HLS),
    (S.AWAITING_HLS, Event.UNKNOWN): (A.NOT_ALLOWED, S.AWAITING_HLS),
    (S.ASSOCIATED, Event.AARQ): (A.REJECT_BUSY, S.ASSOCIATED),
    (S.ASSOCIATED, Event.RLRQ): (A.RELEASE, S.IDLE),
    (S.ASSOCIATED, Event.GET): (A.GET, S.ASSOCIATED),
    (S.ASSOCIATED, Event.HLS_REPLY): (A.DENY_ACTION, S.ASSOCIATED),
    (S.ASSOCIATED, Event.ACTION): (A.DENY_ACTION, S.ASSOCIATED),
    (S.ASSOCIATED, Event.BAD_ACTION): (A.REFUSE_MALFORMED, S.ASSOCIATED),
    (S.ASSOCIATED, Event.MISPLACED): (A.NOT_ALLOWED, S.ASSOCIATED),
    (S.ASSOCIATED, Event.UNKNOWN): (A.NOT_SUPPORTED, S.ASSOCIATED),
}


def test_the_table_is_total_and_every_outcome_has_a_state():
    assert set(TRANSITIONS) == set(itertools.product(AssociationState, Event))
    for (state, _), row in TRANSITIONS.items():
        assert set(row.next) >= {Outcome.DONE, Outcome.REFUSED}
        if row.action is Action.OPEN:
            assert set(row.next) == set(Outcome) and state is S.IDLE
    # Only an AARQ leaves IDLE, only HLS pass 3 reaches ASSOCIATED from AWAITING_HLS.
    for (state, event), row in TRANSITIONS.items():
        if state is S.IDLE and event is not Event.AARQ:
            assert set(row.next.values()) == {S.IDLE}
        if state is S.AWAITING_HLS and S.ASSOCIATED in row.next.values():
            assert event is Event.HLS_REPLY


# Public associations never reach AWAITING_HLS (no HLS); management ones reach all three.
CASES = [
    (state, event, managed)
    for state, event in itertools.product(AssociationState, Event)
    for managed in (False, True)
    if not (state is S.AWAITING_HLS and not managed)
]


@pytest.mark.parametrize(("state", "event", "managed"), CASES, ids=lambda v: getattr(v, "value", str(v)))
def test_every_row_is_what_the_association_does(state, event, managed):
    peer = reach(state, managed)
    apdu, protect = event_apdu(peer, event)
    assert classify(apdu, protected=protect) is event
    row = TRANSITIONS[(state, event)]
    action, after = ANSWER[(state, event)]
    expected_state = after[managed] if isinstance(after, dict) else after
    assert row.action is action
    answer = peer.send(apdu, protect=protect)
    outcome = check_answer(action, answer)  # checks the bytes against the expected action
    assert peer.assoc.state is expected_state
    assert row.next[outcome] is expected_state
    if peer.assoc.state is S.IDLE:
        assert peer.assoc.client_title is None and not peer.assoc.ciphered


def test_failed_hls_pass_3_takes_the_refused_branch():
    peer = reach(S.AWAITING_HLS, managed=True)
    answer = peer.send(peer.hls_reply(correct=False), protect=True)
    resp = xdlms.ActionResponseNormal.from_bytes(answer)
    assert resp.status == E.ActionResultStatus.OTHER_REASON
    assert peer.assoc.state is TRANSITIONS[(S.AWAITING_HLS, Event.HLS_REPLY)].next[Outcome.REFUSED] is S.IDLE


def test_refused_aarq_stays_idle_and_refused_release_keeps_the_association():
    peer = Peer(managed=False)
    raw = peer.assoc.handle(b"\x60\x03\xa1\x01\x00")  # an AARQ that does not parse
    assert acse.ApplicationAssociationResponse.from_bytes(raw).result == E.AssociationResult.REJECTED_PERMANENT
    assert peer.assoc.state is S.IDLE
    peer = reach(S.ASSOCIATED, managed=False)
    answer = peer.assoc.handle(b"\x62\x01")  # an RLRQ that does not parse
    assert answer[0] == 0xD8 and peer.assoc.state is S.ASSOCIATED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from([s for s in AssociationState]), st.booleans())
def test_any_bytes_in_any_state_follow_the_table(data, state, managed):
    if state is S.AWAITING_HLS and not managed:
        managed = True
    peer = reach(state, managed)
    ciphered = peer.assoc.ciphered
    answer = peer.assoc.handle(data)  # in a ciphered state: clear bytes hit the security layer
    assert isinstance(answer, bytes) and answer
    if data and (not ciphered or data[:1] in (b"\x60", b"\x62")):
        allowed = set(TRANSITIONS[(state, classify(data))].next.values())
        assert peer.assoc.state in allowed
    elif data:
        assert peer.assoc.state is state  # refused by the security layer: no transition
