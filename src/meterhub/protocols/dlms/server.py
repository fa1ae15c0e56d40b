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
  authenticated encryption of every xDLMS APDU (general-glo-ciphering) and the
  client's invocation counter checked against replay.

Bad input never escapes as an exception: it becomes an ``ExceptionResponse``,
an AARE rejection, or a ``Data-Access-Result``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from dlms_cosem import enumerations as enums
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.xdlms.conformance import Conformance
from dlms_cosem.security import SecurityControlField

from . import axdr
from .apdu import (
    ApduError,
    AttributeRequest,
    Tag,
    encode_block_error,
    encode_exception_response,
    encode_get_response_block,
    encode_get_response_error,
    encode_get_response_normal,
    encode_list_results,
    parse_get_request,
)
from .cosem import (
    ASSOCIATION_LN,
    CosemObject,
    DataAccessError,
    MeterDataSource,
    build_object_model,
    parse_selection,
)
from .security import (
    SC_AUTH_ENC,
    DecipherError,
    InvocationCounter,
    InvocationCounterError,
    ReplayGuard,
    Suite0Keys,
    decode_general_glo_cipher,
    decrypt,
    encode_general_glo_cipher,
    encrypt,
    hls_gmac_response,
    new_challenge,
    verify_hls_gmac,
)

__all__ = [
    "PUBLIC_CLIENT",
    "MANAGEMENT_CLIENT",
    "MANAGEMENT_LOGICAL_DEVICE",
    "AssociationState",
    "DlmsServer",
    "ServerAssociation",
    "SERVER_CONFORMANCE",
]

LOG = logging.getLogger(__name__)

PUBLIC_CLIENT = 16
MANAGEMENT_CLIENT = 1
MANAGEMENT_LOGICAL_DEVICE = 1
#: Smallest client receive PDU we accept: a block header plus cipher overhead must fit.
MIN_CLIENT_PDU = 64
#: general-glo-ciphering overhead: tag, title (1+8), length (<=3), SC, IC (4), GCM tag (12).
CIPHER_OVERHEAD = 30
#: Get-Response-With-Datablock header: tag, choice, invoke, last, block (4), choice, length (<=3).
BLOCK_HEADER = 12

#: What the server offers (Green Book §9.4.6.1, conformance block).
SERVER_CONFORMANCE = Conformance(
    general_protection=True,
    block_transfer_with_get_or_read=True,
    multiple_references=True,
    data_notification=True,
    get=True,
    selective_access=True,
    action=True,
)


class AssociationState(enum.Enum):
    """Green Book §9.4.2 server side, collapsed to what a meter needs."""

    IDLE = "idle"  # no application association
    AWAITING_HLS = "awaiting-hls"  # AARE sent; only reply_to_HLS_authentication allowed
    ASSOCIATED = "associated"


def _negotiate(proposed: Conformance) -> Conformance:
    fields = [f for f in Conformance.conformance_bit_position]
    return Conformance(
        **{f: bool(getattr(proposed, f)) and bool(getattr(SERVER_CONFORMANCE, f)) for f in fields}
    )


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
    ) -> None:
        if len(system_title) != 8:
            raise ValueError("system title is 8 bytes")
        if not MIN_CLIENT_PDU <= max_pdu_size <= 0xFFFF:
            raise ValueError("max_pdu_size out of range")
        self.source = source
        self.objects: dict[bytes, CosemObject] = build_object_model(source)
        self.system_title = system_title
        self.keys = keys
        self.max_pdu_size = max_pdu_size
        self.counter = InvocationCounter()
        self.replay = ReplayGuard()

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


@dataclass
class _LongGet:
    """A GET answered with block transfer (Green Book §9.3.6, "GET with block transfer")."""

    invoke: int
    raw: bytes
    offset: int = 0
    block: int = 0


class ServerAssociation:
    """One client's view of the server: the state machine for one transport connection."""

    def __init__(self, server: DlmsServer, client_sap: int) -> None:
        self.server = server
        self.client_sap = client_sap
        self.state = AssociationState.IDLE
        self.ciphered = False
        self.client_title: bytes | None = None
        self.conformance = Conformance()
        self.client_max_pdu = server.max_pdu_size
        self._stoc = b""
        self._ctos = b""
        self._long_get: _LongGet | None = None

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
        if tag == Tag.AARQ:
            return self._aarq(apdu)
        if tag == Tag.RLRQ:
            return self._rlrq(apdu)
        if self.state is AssociationState.IDLE:
            return _not_allowed()
        if not self.ciphered:
            return self._dispatch(apdu)
        if tag != Tag.GENERAL_GLO_CIPHERING:
            # Security policy: the management association accepts only protected APDUs.
            return _not_allowed()
        try:
            plain = self._unprotect(apdu)
        except InvocationCounterError as exc:
            return encode_exception_response(
                enums.StateException.SERVICE_NOT_ALLOWED,
                enums.ServiceException.INVOCATION_COUNTER_ERROR,
                exc.expected_at_least,
            )
        except DecipherError:
            return _exc(
                enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.DECIPHERING_ERROR
            )
        return self.server.protect(self._dispatch(plain))

    def _unprotect(self, apdu: bytes) -> bytes:
        keys = self.server.keys
        assert keys is not None and self.client_title is not None
        title, sc, ic, text = decode_general_glo_cipher(apdu)
        if title != self.client_title:
            raise DecipherError("system title differs from the one in the AARQ")
        self.server.replay.check(title, ic)
        plain = decrypt(keys, title, ic, sc, text)
        self.server.replay.accept(title, ic)
        return plain

    def _dispatch(self, plain: bytes) -> bytes:
        tag = plain[0] if plain else -1
        if self.state is AssociationState.AWAITING_HLS and tag != Tag.ACTION_REQUEST:
            return _not_allowed()
        if tag == Tag.GET_REQUEST:
            return self._get(plain)
        if tag == Tag.ACTION_REQUEST:
            return self._action(plain)
        if tag in (Tag.AARQ, Tag.RLRQ, Tag.GENERAL_GLO_CIPHERING):
            return _not_allowed()  # not valid inside a ciphered envelope
        return _exc(enums.StateException.SERVICE_UNKNOWN, enums.ServiceException.SERVICE_NOT_SUPPORTED)

    # ------------------------------------------------------------------ ACSE
    def _aare_reject(
        self,
        diagnostic: enums.AcseServiceUserDiagnostics,
        user_information: object | None = None,
        result: enums.AssociationResult = enums.AssociationResult.REJECTED_PERMANENT,
    ) -> bytes:
        return acse.ApplicationAssociationResponse(
            result=result,
            result_source_diagnostics=diagnostic,
            user_information=acse.UserInformation(user_information) if user_information else None,
        ).to_bytes()

    def _aarq(self, apdu: bytes) -> bytes:
        """AARQ → AARE (Green Book §9.4.4 COSEM-OPEN; §9.2.7.4 HLS pass 1 and 2)."""
        D = enums.AcseServiceUserDiagnostics  # noqa: N806
        if self.state is not AssociationState.IDLE:
            return self._aare_reject(D.NO_REASON_GIVEN, result=enums.AssociationResult.REJECTED_TRANSIENT)
        try:
            aarq = acse.ApplicationAssociationRequest.from_bytes(apdu)
        except Exception:  # dlms_cosem raises ValueError/IndexError/KeyError on bad BER
            return self._aare_reject(D.NO_REASON_GIVEN)
        if self.client_sap == PUBLIC_CLIENT:
            if aarq.ciphered:
                return self._aare_reject(D.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
            if aarq.authentication not in (None, enums.AuthenticationMechanism.NONE):
                return self._aare_reject(D.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED)
            content = aarq.user_information.content
            if not isinstance(content, xdlms.InitiateRequest):
                return self._aare_reject(D.NO_REASON_GIVEN)
            error = self._initiate(content)
            if error is not None:
                return self._aare_reject(D.NO_REASON_GIVEN, error)
            self.state, self.ciphered = AssociationState.ASSOCIATED, False
            return acse.ApplicationAssociationResponse(
                result=enums.AssociationResult.ACCEPTED,
                result_source_diagnostics=D.NULL,
                user_information=acse.UserInformation(self._initiate_response()),
            ).to_bytes()
        if self.client_sap != MANAGEMENT_CLIENT or self.server.keys is None:
            return self._aare_reject(D.NO_REASON_GIVEN)
        # Management client: ciphered context + HLS-GMAC, nothing less.
        if not aarq.ciphered:
            return self._aare_reject(D.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
        if aarq.authentication is None:
            return self._aare_reject(D.AUTHENTICATION_MECHANISM_NAME_REQUIRED)
        if aarq.authentication != enums.AuthenticationMechanism.HLS_GMAC:
            return self._aare_reject(D.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED)
        title = aarq.system_title
        if not title or len(title) != 8:
            return self._aare_reject(D.CALLING_AP_TITLE_NOT_RECOGNIZED)
        ctos = aarq.authentication_value or b""
        if not 8 <= len(ctos) <= 64:
            return self._aare_reject(D.AUTHENTICATION_FAILED)
        content = aarq.user_information.content
        if not isinstance(content, xdlms.GlobalCipherInitiateRequest):
            return self._aare_reject(D.NO_REASON_GIVEN)
        try:
            self.server.replay.check(bytes(title), content.invocation_counter)
            plain = decrypt(
                self.server.keys,
                bytes(title),
                content.invocation_counter,
                content.security_control.to_bytes()[0],
                content.ciphered_text,
            )
            self.server.replay.accept(bytes(title), content.invocation_counter)
            initiate = xdlms.InitiateRequest.from_bytes(plain)
        except Exception:  # decipher, replay or a malformed InitiateRequest
            return self._aare_reject(D.NO_REASON_GIVEN)
        error = self._initiate(initiate)
        if error is not None:
            return self._aare_reject(D.NO_REASON_GIVEN, error)
        self.client_title, self._ctos, self._stoc = bytes(title), bytes(ctos), new_challenge()
        self.state, self.ciphered = AssociationState.AWAITING_HLS, True
        ic = self.server.counter.next()
        response = xdlms.GlobalCipherInitiateResponse(
            security_control=_sc0(),
            invocation_counter=ic,
            ciphered_text=encrypt(
                self.server.keys, self.server.system_title, ic, self._initiate_response().to_bytes()
            ),
        )
        return acse.ApplicationAssociationResponse(
            result=enums.AssociationResult.ACCEPTED,
            result_source_diagnostics=D.AUTHENTICATION_REQUIRED,
            ciphered=True,
            authentication=enums.AuthenticationMechanism.HLS_GMAC,
            system_title=self.server.system_title,
            authentication_value=self._stoc,
            user_information=acse.UserInformation(response),
        ).to_bytes()

    def _initiate(self, req: xdlms.InitiateRequest) -> xdlms.ConfirmedServiceError | None:
        """Check the proposed xDLMS context (Green Book §9.4.6.1); record what was agreed."""
        if req.proposed_dlms_version_number < 6:
            return xdlms.ConfirmedServiceError(enums.InitiateError.DLMS_VERSION_TOO_LOW)
        if req.client_max_receive_pdu_size < MIN_CLIENT_PDU:
            return xdlms.ConfirmedServiceError(enums.InitiateError.PDU_SIZE_TOO_SHORT)
        self.conformance = _negotiate(req.proposed_conformance)
        self.client_max_pdu = req.client_max_receive_pdu_size
        return None

    def _initiate_response(self) -> xdlms.InitiateResponse:
        return xdlms.InitiateResponse(
            negotiated_conformance=self.conformance,
            server_max_receive_pdu_size=self.server.max_pdu_size,
        )

    def _rlrq(self, apdu: bytes) -> bytes:
        """RLRQ → RLRE (Green Book §9.4.5 COSEM-RELEASE)."""
        if self.state is AssociationState.IDLE:
            return _not_allowed()
        try:
            rlrq = acse.ReleaseRequest.from_bytes(apdu)
        except Exception:
            return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON)
        user_info = None
        content = rlrq.user_information.content if rlrq.user_information else None
        if self.ciphered:
            # The RLRQ of a ciphered association must carry a protected InitiateRequest,
            # or anyone could tear the association down.
            if not isinstance(content, xdlms.GlobalCipherInitiateRequest):
                return _not_allowed()
            keys, title = self.server.keys, self.client_title
            assert keys is not None and title is not None
            try:
                self.server.replay.check(title, content.invocation_counter)
                decrypt(
                    keys,
                    title,
                    content.invocation_counter,
                    content.security_control.to_bytes()[0],
                    content.ciphered_text,
                )
                self.server.replay.accept(title, content.invocation_counter)
            except InvocationCounterError as exc:
                return encode_exception_response(
                    enums.StateException.SERVICE_NOT_ALLOWED,
                    enums.ServiceException.INVOCATION_COUNTER_ERROR,
                    exc.expected_at_least,
                )
            except DecipherError:
                return _exc(
                    enums.StateException.SERVICE_NOT_ALLOWED,
                    enums.ServiceException.DECIPHERING_ERROR,
                )
            ic = self.server.counter.next()
            user_info = acse.UserInformation(
                xdlms.GlobalCipherInitiateResponse(
                    security_control=_sc0(),
                    invocation_counter=ic,
                    ciphered_text=encrypt(
                        keys, self.server.system_title, ic, self._initiate_response().to_bytes()
                    ),
                )
            )
        elif content is not None:
            user_info = acse.UserInformation(self._initiate_response())
        self._reset()
        return acse.ReleaseResponse(
            reason=enums.ReleaseResponseReason.NORMAL, user_information=user_info
        ).to_bytes()

    def _reset(self) -> None:
        self.state = AssociationState.IDLE
        self.ciphered = False
        self.client_title = None
        self._long_get = None
        self._stoc = self._ctos = b""

    # ---------------------------------------------------------------- ACTION
    def _action(self, plain: bytes) -> bytes:
        """Only ``reply_to_HLS_authentication`` (IC 15 method 1, Blue Book §4.4.3)."""
        try:
            req = xdlms.ActionRequestFactory.from_bytes(plain)
        except Exception:
            return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON)
        m = req.cosem_method
        iip = req.invoke_id_and_priority
        is_hls = (
            m.interface == enums.CosemInterface.ASSOCIATION_LN
            and m.instance.to_bytes() == ASSOCIATION_LN
            and m.method == 1
        )
        if not is_hls or self.state is not AssociationState.AWAITING_HLS:
            if self.state is AssociationState.AWAITING_HLS:
                self._reset()
            return xdlms.ActionResponseNormal(
                enums.ActionResultStatus.READ_WRITE_DENIED, iip
            ).to_bytes()
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
            self._reset()  # HLS pass 3 failed: no association (Green Book §9.2.7.4)
            return xdlms.ActionResponseNormal(enums.ActionResultStatus.OTHER_REASON, iip).to_bytes()
        self.state = AssociationState.ASSOCIATED
        answer = hls_gmac_response(keys, self.server.system_title, self.server.counter.next(), self._ctos)
        return xdlms.ActionResponseNormalWithData(
            enums.ActionResultStatus.SUCCESS, axdr.octet_string(answer), iip
        ).to_bytes()

    # ------------------------------------------------------------------- GET
    def _read(self, item: AttributeRequest) -> bytes | enums.DataAccessResult:
        obj = self.server.objects.get(item.logical_name)
        if obj is None:
            return enums.DataAccessResult.OBJECT_UNDEFINED
        if obj.class_id != item.class_id:
            return enums.DataAccessResult.OBJECT_CLASS_INCONSISTENT
        if obj.confidential and not self.ciphered:
            return enums.DataAccessResult.READ_WRITE_DENIED
        try:
            selection = None
            if item.selector is not None:
                if not self.conformance.selective_access:
                    return enums.DataAccessResult.READ_WRITE_DENIED
                selection = parse_selection(item.selector, item.parameters)
            return obj.get(item.attribute, selection)
        except DataAccessError as exc:
            return exc.result
        except Exception:  # the data source failed; the meter keeps answering
            LOG.exception("data source failed reading %s", item)
            return enums.DataAccessResult.HARDWARE_FAULT

    def _get(self, plain: bytes) -> bytes:
        """GET normal / next / with-list (Green Book §9.3.6), with block transfer."""
        if not self.conformance.get:
            return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.SERVICE_NOT_SUPPORTED)
        try:
            req = parse_get_request(plain)
        except ApduError:
            return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON)
        if req.kind == 2:
            return self._get_next(req.invoke, req.block_number)
        self._long_get = None  # a new GET abandons a long GET in progress
        if req.kind == 3:
            if not self.conformance.multiple_references:
                return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.SERVICE_NOT_SUPPORTED)
            raw = encode_list_results([self._read(i) for i in req.items])
            if 3 + len(raw) <= self.max_send:
                return bytes([Tag.GET_RESPONSE, 3, req.invoke]) + raw
            return self._start_long_get(req.invoke, raw)
        result = self._read(req.items[0])
        if isinstance(result, enums.DataAccessResult):
            return encode_get_response_error(req.invoke, result)
        if 4 + len(result) <= self.max_send:
            return encode_get_response_normal(req.invoke, result)
        return self._start_long_get(req.invoke, result)

    def _start_long_get(self, invoke: int, raw: bytes) -> bytes:
        if not self.conformance.block_transfer_with_get_or_read:
            return encode_get_response_error(invoke, enums.DataAccessResult.OTHER_REASON)
        self._long_get = _LongGet(invoke, raw)
        return self._next_block()

    def _get_next(self, invoke: int, block_number: int) -> bytes:
        lg = self._long_get
        if lg is None:
            return encode_block_error(invoke, block_number, enums.DataAccessResult.NO_LONG_GET_IN_PROGRESS)
        if block_number != lg.block:
            self._long_get = None
            return encode_block_error(invoke, block_number, enums.DataAccessResult.DATA_BLOCK_NUMBER_INVALID)
        return self._next_block()

    def _next_block(self) -> bytes:
        lg = self._long_get
        assert lg is not None
        size = self.max_send - BLOCK_HEADER
        chunk = lg.raw[lg.offset : lg.offset + size]
        lg.offset += len(chunk)
        lg.block += 1
        last = lg.offset >= len(lg.raw)
        if last:
            self._long_get = None
        return encode_get_response_block(lg.invoke, lg.block, chunk, last)


def _sc0() -> SecurityControlField:
    return SecurityControlField.from_bytes(bytes([SC_AUTH_ENC]))


def _exc(state: enums.StateException, service: enums.ServiceException) -> bytes:
    return encode_exception_response(state, service)


def _not_allowed() -> bytes:
    return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OPERATION_NOT_POSSIBLE)

