"""Sans-IO DLMS/COSEM server: association state machine and request dispatch.

IEC 62056-5-3 (Green Book 1000-2 Ed. 9 §9.3, xDLMS services; §9.4.2, the
association state machine) for one logical device, the management logical
device (server SAP 1). ``ServerAssociation.handle(apdu) -> apdu`` is a pure
function of its state and the bytes: no sockets, no clocks except the data
source's, so tests drive it directly and the TCP server only frames bytes.

Two client associations are supported (Green Book §9.2.5, client SAPs):

* **public client** (SAP 16): LN referencing, no ciphering, no authentication;
* **management client** (SAP 1): LN referencing with ciphering (application
  context 3), HLS mechanism 5 (HLS-GMAC), security suite 0 with
  authenticated encryption of every xDLMS APDU - general-glo-ciphering (when
  general-protection was negotiated) or the service-specific glo-ciphering APDUs
  (glo-get-request [200] ...), answered in the same form - and the client's
  invocation counter checked against replay.

What each association may read is its object list (Blue Book §4.4.3, Association LN
``object_list`` and access rights): the public client sees only the objects in
:data:`PUBLIC_OBJECTS` (clock, device identity, logical device name, the association
and the invocation counter a head-end needs to synchronise); anything else is
``object-undefined`` to it. The management association sees every object.

The association's transitions are one table, :data:`~.state.TRANSITIONS`
(:mod:`.state`): :meth:`ServerAssociation.handle` classifies each APDU into an
event, looks up ``(state, event)``, runs the action and takes the next state from
the row; nothing else assigns the state.

Bad input never escapes as an exception: it becomes an ``ExceptionResponse``,
an AARE rejection, or a ``Data-Access-Result``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dlms_cosem import enumerations as enums
from dlms_cosem.protocol import acse, xdlms

from . import axdr
from .addressing import MANAGEMENT_CLIENT, MANAGEMENT_LOGICAL_DEVICE, PUBLIC_CLIENT
from .apdu import (
    Tag,
    encode_exception_response,
)
from .cosem import (
    ASSOCIATION_LN,
    CLOCK,
    DEVICE_ID,
    INVOCATION_COUNTER,
    LOGICAL_DEVICE_NAME,
    CosemObject,
    MeterDataSource,
    build_object_model,
)
from .get_service import GetService
from .initiate import (
    INITIATE_REQUEST,
    INITIATE_RESPONSE,
    Conformance,
    InitiateError,
    InitiateRequest,
    InitiateResponse,
    acse_user_information,
    parse_initiate_request,
)
from .security import (
    GLO_TAGS,
    PLAIN_TAGS,
    SC_AUTH_ENC,
    DecipherError,
    InvocationCounter,
    InvocationCounterError,
    ReplayGuard,
    Suite0Keys,
    decode_general_glo_cipher,
    decode_glo_cipher,
    decrypt,
    encode_general_glo_cipher,
    encode_glo_cipher,
    encrypt,
    hls_gmac_response,
    new_challenge,
    verify_hls_gmac,
)
from .state import TRANSITIONS, Action, AssociationState, Event, Outcome, classify

__all__ = [
    "PUBLIC_CLIENT",
    "MANAGEMENT_CLIENT",
    "MANAGEMENT_LOGICAL_DEVICE",
    "DlmsServer",
    "ServerAssociation",
    "SERVER_CONFORMANCE",
    "PUBLIC_OBJECTS",
]

LOG = logging.getLogger(__name__)

#: Smallest client receive PDU we accept: a block header plus cipher overhead must fit.
MIN_CLIENT_PDU = 64
#: general-glo-ciphering overhead: tag, title (1+8), length (<=3), SC, IC (4), GCM tag (12).
CIPHER_OVERHEAD = 30

#: What the server offers (Green Book §9.4.6.1, conformance block).
SERVER_CONFORMANCE = (
    Conformance.GENERAL_PROTECTION
    | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.MULTIPLE_REFERENCES
    | Conformance.DATA_NOTIFICATION
    | Conformance.GET
    | Conformance.SELECTIVE_ACCESS
    | Conformance.ACTION
)

#: The public client's object list: what a meter gives anyone on the network (docs/dlms.md
#: "What each association sees"). Readings, registers, profiles, commitments, batches and
#: openings need an authenticated association.
PUBLIC_OBJECTS: frozenset[bytes] = frozenset(
    {ASSOCIATION_LN, CLOCK, DEVICE_ID, LOGICAL_DEVICE_NAME, INVOCATION_COUNTER}
)
#: Glo-ciphering request tags a client may send in the data-transfer phase.
_GLO_REQUESTS = frozenset({0xC8, 0xC9, 0xCB})


class _Raw:
    """Already-encoded xDLMS bytes for ``dlms_cosem``'s ``UserInformation``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def to_bytes(self) -> bytes:
        return self.data


#: confirmedServiceError: initiateError [1], ServiceError application-reference [0],
#: deciphering-error (6) (Green Book §9.5): the glo-initiateRequest was not accepted.
INITIATE_DECIPHERING_ERROR = bytes([Tag.CONFIRMED_SERVICE_ERROR, 0x01, 0x00, 0x06])


class DlmsServer:
    """The meter's management logical device, shared by all its associations.

    Holds the object model, the suite-0 keys, our system title, the sending
    invocation counter and the replay guard; these must be shared across
    connections so that no IV repeats and no replay succeeds on another socket.
    """

    def __init__(
        self,
        source: MeterDataSource,
        *,
        system_title: bytes = b"MHB\x00\x00\x00\x00\x01",
        keys: Suite0Keys | None = None,
        max_pdu_size: int = 1024,
        public_objects: frozenset[bytes] = PUBLIC_OBJECTS,
    ) -> None:
        if len(system_title) != 8:
            raise ValueError("system title is 8 bytes")
        if not MIN_CLIENT_PDU <= max_pdu_size <= 0xFFFF:
            raise ValueError("max_pdu_size out of range")
        self.source = source
        self.objects: dict[bytes, CosemObject] = build_object_model(
            source, invocation_counter=lambda: self.highest_client_counter()
        )
        self.system_title = system_title
        self.keys = keys
        self.max_pdu_size = max_pdu_size
        self.counter = InvocationCounter()
        self.replay = ReplayGuard()
        self.public_objects = public_objects

    def highest_client_counter(self) -> int:
        """The invocation counter object's value (0.0.43.1.0.255): the highest counter
        accepted from any management client, so a head-end that starts above it is
        never refused as a replay (Blue Book §4.4.7 / DLMS UA 1000-1, "Invocation counter")."""
        return max(self.replay.last.values(), default=0)

    def association(self, client_sap: int) -> ServerAssociation:
        """A fresh association endpoint for one transport connection from ``client_sap``."""
        return ServerAssociation(self, client_sap)

    # Shared by associations and by the push path.
    def protect(self, plain: bytes) -> bytes:
        """Cipher an APDU under suite 0 with our title and the next invocation counter."""
        if self.keys is None:
            raise DecipherError("no suite 0 keys configured")
        ic = self.counter.next()
        return encode_general_glo_cipher(
            self.system_title, SC_AUTH_ENC, ic, encrypt(self.keys, self.system_title, ic, plain)
        )


class ServerAssociation:
    """One client's view of the server: the state machine for one transport connection."""

    def __init__(self, server: DlmsServer, client_sap: int) -> None:
        self.server = server
        self.client_sap = client_sap
        self.state = AssociationState.IDLE
        self.ciphered = False
        self.client_title: bytes | None = None
        self.conformance = Conformance(0)
        self.client_max_pdu = server.max_pdu_size
        self._stoc = b""
        self._ctos = b""
        self.gets = GetService(self)

    # ------------------------------------------------------------------ entry
    def handle(self, apdu: bytes) -> bytes:
        """Process one request APDU and return the response APDU. Never raises."""
        try:
            return self._handle(bytes(apdu))
        except Exception:  # a bug must cost one request, not the meter
            LOG.exception("internal error handling a DLMS APDU")
            return encode_exception_response(
                enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON
            )

    @property
    def max_send(self) -> int:
        """Largest plain APDU we may send (negotiated PDU size less cipher overhead)."""
        size = min(self.client_max_pdu, self.server.max_pdu_size)
        return size - CIPHER_OVERHEAD if self.ciphered else size

    def _handle(self, apdu: bytes) -> bytes:
        if not apdu:
            return _exc(enums.StateException.SERVICE_UNKNOWN, enums.ServiceException.OTHER_REASON)
        tag = apdu[0]
        if tag in (Tag.AARQ, Tag.RLRQ) or self.state is AssociationState.IDLE or not self.ciphered:
            return self._step(apdu, classify(apdu))
        # The security layer of a ciphered association (Green Book §9.2.7.2), below the table.
        if tag == Tag.GENERAL_GLO_CIPHERING:
            if Conformance.GENERAL_PROTECTION not in self.conformance:
                # general-glo-ciphering needs general-protection (Green Book §9.4.6.1).
                return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.SERVICE_NOT_SUPPORTED)
        elif tag not in _GLO_REQUESTS:
            # Security policy: the management association accepts only protected APDUs.
            return _not_allowed()
        try:
            plain = self._unprotect(apdu)
        except InvocationCounterError as exc:
            return self._counter_error(exc)
        except DecipherError as exc:
            LOG.warning("DLMS client SAP %d: deciphering error: %s", self.client_sap, exc)
            return _exc(
                enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.DECIPHERING_ERROR
            )
        if tag != Tag.GENERAL_GLO_CIPHERING and (not plain or plain[0] != PLAIN_TAGS[tag]):
            return _not_allowed()  # a glo-get-request must carry a get-request, and so on
        response = self._step(plain, classify(plain, protected=True))
        if tag == Tag.GENERAL_GLO_CIPHERING:
            return self.server.protect(response)
        return self._protect_glo(response)

    def _step(self, apdu: bytes, event: Event) -> bytes:
        """One transition of :data:`~.state.TRANSITIONS`: the only place the state changes."""
        transition = TRANSITIONS[(self.state, event)]
        response, outcome = self._ACTIONS[transition.action](self, apdu)
        following = transition.next[outcome]
        if following is AssociationState.IDLE and self.state is not AssociationState.IDLE:
            self._reset()
        self.state = following
        return response

    def _protect_glo(self, plain: bytes) -> bytes:
        """Answer a service-specific glo request in kind (glo-get-response ...); an
        ExceptionResponse has no ciphered form and goes in clear (Green Book §9.5)."""
        glo = GLO_TAGS.get(plain[0]) if plain else None
        if glo is None:
            return plain
        keys = self.server.keys
        assert keys is not None
        ic = self.server.counter.next()
        return encode_glo_cipher(glo, SC_AUTH_ENC, ic, encrypt(keys, self.server.system_title, ic, plain))

    def _counter_error(self, exc: InvocationCounterError, title: bytes | None = None) -> bytes:
        """A reused invocation counter (Green Book §9.2.7.2.4.2): logged, and answered with
        ExceptionResponse(service-not-allowed, invocation-counter-error, expected counter)."""
        LOG.warning(
            "DLMS client %s reused invocation counter %d (expected at least %d); refused",
            (title or self.client_title or b"").hex(),
            exc.received,
            exc.expected_at_least,
        )
        return encode_exception_response(
            enums.StateException.SERVICE_NOT_ALLOWED,
            enums.ServiceException.INVOCATION_COUNTER_ERROR,
            exc.expected_at_least,
        )

    def _unprotect(self, apdu: bytes) -> bytes:
        keys = self.server.keys
        assert keys is not None and self.client_title is not None
        if apdu[0] == Tag.GENERAL_GLO_CIPHERING:
            title, sc, ic, text = decode_general_glo_cipher(apdu)
            if title != self.client_title:
                raise DecipherError("system title differs from the one in the AARQ")
        else:
            # Service-specific glo-ciphering: the title is the AARQ's calling-AP-title.
            title = self.client_title
            _, sc, ic, text = decode_glo_cipher(apdu)
        self.server.replay.check(title, ic)
        plain = decrypt(keys, title, ic, sc, text)
        self.server.replay.accept(title, ic)
        return plain

    # ------------------------------------------------------------------ ACSE
    def _aare_reject(
        self,
        diagnostic: enums.AcseServiceUserDiagnostics,
        user_information: bytes | None = None,
        result: enums.AssociationResult = enums.AssociationResult.REJECTED_PERMANENT,
    ) -> bytes:
        """AARE refusing the association; ``user_information`` is an encoded
        confirmedServiceError (Green Book §9.4.4), sent in clear."""
        aare: bytes = acse.ApplicationAssociationResponse(# dlms_cosem ships no type information
            result=result,
            result_source_diagnostics=diagnostic,
            user_information=acse.UserInformation(_Raw(user_information)) if user_information else None,
        ).to_bytes()
        return aare

    def _reject_busy(self, apdu: bytes) -> tuple[bytes, Outcome]:
        """An AARQ while an association is open or opening: AARE rejected-transient."""
        return self._aare_reject(
            enums.AcseServiceUserDiagnostics.NO_REASON_GIVEN, result=enums.AssociationResult.REJECTED_TRANSIENT
        ), Outcome.REFUSED

    def _aarq(self, apdu: bytes) -> tuple[bytes, Outcome]:
        """AARQ → AARE (Green Book §9.4.4 COSEM-OPEN; §9.2.7.4 HLS pass 1 and 2).
        The outcome says whether the association is open or waits for HLS pass 3."""
        D = enums.AcseServiceUserDiagnostics  # noqa: N806
        try:
            # dlms_cosem reads the ACSE fields; the xDLMS APDU in user-information we
            # parse ourselves (its InitiateRequest loses the first conformance octet).
            aarq = acse.ApplicationAssociationRequest.from_bytes(apdu)
            user_information = acse_user_information(apdu)
        except Exception:  # dlms_cosem raises ValueError/IndexError/KeyError on bad BER
            return self._aare_reject(D.NO_REASON_GIVEN), Outcome.REFUSED
        if user_information is None:
            return self._aare_reject(D.NO_REASON_GIVEN), Outcome.REFUSED
        if self.client_sap == PUBLIC_CLIENT:
            if aarq.ciphered:
                return self._aare_reject(D.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED), Outcome.REFUSED
            if aarq.authentication not in (None, enums.AuthenticationMechanism.NONE):
                return self._aare_reject(D.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED), Outcome.REFUSED
            try:
                initiate = parse_initiate_request(user_information)
            except InitiateError:
                return self._aare_reject(D.NO_REASON_GIVEN), Outcome.REFUSED
            error = self._initiate(initiate)
            if error is not None:
                return self._aare_reject(D.NO_REASON_GIVEN, error), Outcome.REFUSED
            self.ciphered = False
            return acse.ApplicationAssociationResponse(
                result=enums.AssociationResult.ACCEPTED,
                result_source_diagnostics=D.NULL,
                user_information=acse.UserInformation(_Raw(self._initiate_response().to_bytes())),
            ).to_bytes(), Outcome.DONE
        if self.client_sap != MANAGEMENT_CLIENT or self.server.keys is None:
            return self._aare_reject(D.NO_REASON_GIVEN), Outcome.REFUSED
        # Management client: ciphered context + HLS-GMAC, nothing less.
        if not aarq.ciphered:
            return self._aare_reject(D.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED), Outcome.REFUSED
        if aarq.authentication is None:
            return self._aare_reject(D.AUTHENTICATION_MECHANISM_NAME_REQUIRED), Outcome.REFUSED
        if aarq.authentication != enums.AuthenticationMechanism.HLS_GMAC:
            return self._aare_reject(D.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED), Outcome.REFUSED
        title = aarq.system_title
        if not title or len(title) != 8:
            return self._aare_reject(D.CALLING_AP_TITLE_NOT_RECOGNIZED), Outcome.REFUSED
        title = bytes(title)
        ctos = aarq.authentication_value or b""
        if not 8 <= len(ctos) <= 64:
            return self._aare_reject(D.AUTHENTICATION_FAILED), Outcome.REFUSED
        if user_information[:1] != bytes([GLO_TAGS[INITIATE_REQUEST]]):
            return self._aare_reject(D.NO_REASON_GIVEN), Outcome.REFUSED  # a ciphered context needs glo-initiateRequest
        try:
            _, sc, ic, text = decode_glo_cipher(user_information)
            self.server.replay.check(title, ic)
            plain = decrypt(self.server.keys, title, ic, sc, text)
        except InvocationCounterError as exc:
            self._counter_error(exc, title)  # logged; the AARE carries the initiate error
            return self._aare_reject(D.NO_REASON_GIVEN, INITIATE_DECIPHERING_ERROR), Outcome.REFUSED
        except DecipherError as exc:
            LOG.warning("DLMS AARQ from %s: glo-initiateRequest not accepted: %s", title.hex(), exc)
            return self._aare_reject(D.NO_REASON_GIVEN, INITIATE_DECIPHERING_ERROR), Outcome.REFUSED
        self.server.replay.accept(title, ic)
        try:
            initiate = parse_initiate_request(plain)
        except InitiateError:
            return self._aare_reject(D.NO_REASON_GIVEN), Outcome.REFUSED
        error = self._initiate(initiate)
        if error is not None:
            return self._aare_reject(D.NO_REASON_GIVEN, error), Outcome.REFUSED
        self.client_title, self._ctos, self._stoc = title, bytes(ctos), new_challenge()
        self.ciphered = True
        return acse.ApplicationAssociationResponse(
            result=enums.AssociationResult.ACCEPTED,
            result_source_diagnostics=D.AUTHENTICATION_REQUIRED,
            ciphered=True,
            authentication=enums.AuthenticationMechanism.HLS_GMAC,
            system_title=self.server.system_title,
            authentication_value=self._stoc,
            user_information=acse.UserInformation(_Raw(self._glo_initiate_response())),
        ).to_bytes(), Outcome.NEEDS_HLS

    def _initiate(self, req: InitiateRequest) -> bytes | None:
        """Check the proposed xDLMS context (Green Book §9.4.6.1); record what was agreed.
        Returns the confirmedServiceError (initiateError) to send back, if any."""
        if req.proposed_dlms_version_number < 6:
            return _initiate_error(enums.InitiateError.DLMS_VERSION_TOO_LOW)
        if req.client_max_receive_pdu_size != 0 and req.client_max_receive_pdu_size < MIN_CLIENT_PDU:
            return _initiate_error(enums.InitiateError.PDU_SIZE_TOO_SHORT)
        negotiated = req.proposed_conformance & SERVER_CONFORMANCE
        if not negotiated & (Conformance.GET | Conformance.ACTION):
            # Nothing this server does would be usable (Green Book: incompatible-conformance).
            return _initiate_error(enums.InitiateError.INCOMPATIBLE_CONFORMANCE)
        self.conformance = negotiated
        # 0 means "no limit" (Green Book §9.4.6.1); our own PDU size then bounds responses.
        self.client_max_pdu = req.client_max_receive_pdu_size or 0xFFFF
        return None

    def _initiate_response(self) -> InitiateResponse:
        return InitiateResponse(
            negotiated_conformance=self.conformance,
            server_max_receive_pdu_size=self.server.max_pdu_size,
        )

    def _glo_initiate_response(self) -> bytes:
        """glo-initiateResponse [40]: the InitiateResponse under suite 0 with our title."""
        keys = self.server.keys
        assert keys is not None
        ic = self.server.counter.next()
        text = encrypt(keys, self.server.system_title, ic, self._initiate_response().to_bytes())
        return encode_glo_cipher(GLO_TAGS[INITIATE_RESPONSE], SC_AUTH_ENC, ic, text)

    def _rlrq(self, apdu: bytes) -> tuple[bytes, Outcome]:
        """RLRQ → RLRE (Green Book §9.4.5 COSEM-RELEASE).

        A plain RLRQ (no user-information) is answered with a plain RLRE, reason normal,
        in every association: the association lives on this one transport connection,
        so only its own peer can release it. If the RLRQ carries user-information, the
        RLRE carries an InitiateResponse - ciphered (glo-initiateResponse) when the
        association is, after the client's glo-initiateRequest deciphered and passed the
        replay check.
        """
        try:
            acse.ReleaseRequest.from_bytes(apdu)
            user_information = acse_user_information(apdu)
        except Exception:  # dlms_cosem raises ValueError/IndexError/KeyError on bad BER
            return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON), Outcome.REFUSED
        user_info = None
        if user_information is not None and self.ciphered:
            keys, title = self.server.keys, self.client_title
            assert keys is not None and title is not None
            if user_information[:1] != bytes([GLO_TAGS[INITIATE_REQUEST]]):
                return _not_allowed(), Outcome.REFUSED  # a ciphered association releases ciphered
            try:
                _, sc, ic, text = decode_glo_cipher(user_information)
                self.server.replay.check(title, ic)
                decrypt(keys, title, ic, sc, text)
                self.server.replay.accept(title, ic)
            except InvocationCounterError as exc:
                return self._counter_error(exc), Outcome.REFUSED
            except DecipherError as exc:
                LOG.warning("DLMS RLRQ from %s: deciphering error: %s", title.hex(), exc)
                return _exc(
                    enums.StateException.SERVICE_NOT_ALLOWED,
                    enums.ServiceException.DECIPHERING_ERROR,
                ), Outcome.REFUSED
            user_info = acse.UserInformation(_Raw(self._glo_initiate_response()))
        elif user_information is not None:
            user_info = acse.UserInformation(_Raw(self._initiate_response().to_bytes()))
        return acse.ReleaseResponse(
            reason=enums.ReleaseResponseReason.NORMAL, user_information=user_info
        ).to_bytes(), Outcome.DONE

    def _reset(self) -> None:
        """Forget the association's context when the table goes back to IDLE."""
        self.ciphered = False
        self.client_title = None
        self.gets.abandon()
        self._stoc = self._ctos = b""

    # ---------------------------------------------------------------- ACTION
    def _deny_action(self, plain: bytes) -> tuple[bytes, Outcome]:
        """Only ``reply_to_HLS_authentication`` is a method here, and only while HLS is
        pending (Blue Book §4.4.3): any other ACTION is read-write-denied."""
        iip = xdlms.ActionRequestFactory.from_bytes(plain).invoke_id_and_priority
        return xdlms.ActionResponseNormal(enums.ActionResultStatus.READ_WRITE_DENIED, iip).to_bytes(), Outcome.DONE

    def _check_hls(self, plain: bytes) -> tuple[bytes, Outcome]:
        """HLS pass 3 and 4 (Green Book §9.2.7.4): check f(StoC), answer f(CtoS)."""
        req = xdlms.ActionRequestFactory.from_bytes(plain)
        iip = req.invoke_id_and_priority
        keys, title = self.server.keys, self.client_title
        assert keys is not None and title is not None
        try:
            reply = axdr.decode(bytes(req.data or b""))
        except axdr.AxdrError:
            reply = None
        # The IC inside f(StoC) is not replay-checked: dlms-cosem (like other clients) uses
        # the same counter as the ciphered APDU carrying it, and StoC is fresh per
        # association, so a replayed f(StoC) cannot match anyway.
        if not isinstance(reply, bytes) or not verify_hls_gmac(keys, title, self._stoc, reply):
            # HLS pass 3 failed: no association (the table goes back to IDLE).
            return xdlms.ActionResponseNormal(enums.ActionResultStatus.OTHER_REASON, iip).to_bytes(), Outcome.REFUSED
        answer = hls_gmac_response(keys, self.server.system_title, self.server.counter.next(), self._ctos)
        return xdlms.ActionResponseNormalWithData(
            enums.ActionResultStatus.SUCCESS, axdr.octet_string(answer), iip
        ).to_bytes(), Outcome.DONE

    def _do_get(self, plain: bytes) -> tuple[bytes, Outcome]:
        return self.gets.handle(plain), Outcome.DONE

    _ACTIONS: dict[Action, Callable[[ServerAssociation, bytes], tuple[bytes, Outcome]]] = {
        Action.OPEN: _aarq,
        Action.REJECT_BUSY: _reject_busy,
        Action.RELEASE: _rlrq,
        Action.GET: _do_get,
        Action.CHECK_HLS: _check_hls,
        Action.DENY_ACTION: _deny_action,
        Action.REFUSE_MALFORMED: lambda self, apdu: (
            _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON),
            Outcome.REFUSED,
        ),
        Action.NOT_ALLOWED: lambda self, apdu: (_not_allowed(), Outcome.REFUSED),
        Action.NOT_SUPPORTED: lambda self, apdu: (
            _exc(enums.StateException.SERVICE_UNKNOWN, enums.ServiceException.SERVICE_NOT_SUPPORTED),
            Outcome.REFUSED,
        ),
    }


def _exc(state: enums.StateException, service: enums.ServiceException) -> bytes:
    return encode_exception_response(state, service)


def _not_allowed() -> bytes:
    return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OPERATION_NOT_POSSIBLE)



def _initiate_error(error: enums.InitiateError) -> bytes:
    """A confirmedServiceError carrying initiateError ``error`` (Green Book §9.4.6.1)."""
    out: bytes = xdlms.ConfirmedServiceError(error).to_bytes()  # dlms_cosem ships no type information
    return out
