"""The DLMS/COSEM client association, sans-IO (Green Book 1000-2 Ed. 9 §9.3, §9.4).

:class:`DlmsLinkClient` is the client-side mirror of
:class:`~meterhub.protocols.dlms.server.ServerAssociation`: one application
association, LN referencing, either as the public client (SAP 16, no security) or as
the management client (SAP 1): application context LN with ciphering, HLS-GMAC
(mechanism 5, §9.2.7.4) and security suite 0 (AES-GCM-128, general-glo-ciphering,
§9.2.7.2). It covers COSEM-OPEN (AARQ/AARE and HLS passes 3 and 4), GET normal with
selective access and block transfer (§9.3.6), and COSEM-RELEASE.

Sans-IO: it talks to a ``transport(request) -> response`` callable and never opens a
socket. The hub's home link (:mod:`meterhub.hub.homelink`) gives it the meter's server
core in process or a TCP wrapper transport (:mod:`meterhub.protocols.dlms.tcp`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from dlms_cosem import enumerations as E  # noqa: N812
from dlms_cosem.cosem import CosemMethod, Obis
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.xdlms.conformance import Conformance
from dlms_cosem.security import SecurityControlField

from ...errors import MeterhubError
from ..endpoint import parse_endpoint
from . import axdr
from .access import CaptureColumn
from .addressing import MANAGEMENT_CLIENT, PUBLIC_CLIENT
from .apdu import Tag
from .cosem import CLOCK, IC_CLOCK
from .security import (
    SC_AUTH_ENC,
    DecipherError,
    InvocationCounter,
    ReplayGuard,
    SecurityError,
    Suite0Keys,
    decode_general_glo_cipher,
    decrypt,
    encode_general_glo_cipher,
    encrypt,
    hls_gmac_response,
    verify_hls_gmac,
)

__all__ = ["CLIENT_CONFORMANCE", "DlmsLinkClient", "DlmsLinkError", "Transport", "clock_range"]

Transport = Callable[[bytes], bytes]

#: Invoke-Id-And-Priority of every request: invoke id 1, confirmed, high priority (§9.3.2).
INVOKE = 0xC1
#: What the client proposes (Green Book §9.4.6.1); the meter answers with the intersection.
CLIENT_CONFORMANCE = Conformance(
    general_protection=True,
    block_transfer_with_get_or_read=True,
    multiple_references=True,
    get=True,
    selective_access=True,
    action=True,
)
_ASSOCIATION_LN = CosemMethod(E.CosemInterface.ASSOCIATION_LN, Obis(0, 0, 40, 0, 0), 1)
_SERVICE_NAMES = {e.value: e.name.lower().replace("_", "-") for e in E.ServiceException}
_STATE_NAMES = {e.value: e.name.lower().replace("_", "-") for e in E.StateException}


class DlmsLinkError(MeterhubError):
    """The peer refused, answered with an error, or sent something that fails a check."""


def parse_host_port(text: str, default_port: int = 4059) -> tuple[str, int]:
    """``"host:port"`` or ``"host"`` → ``(host, port)`` (:func:`meterhub.protocols.endpoint.parse_endpoint`)."""
    return parse_endpoint(text, default_port=default_port)


def _sc() -> SecurityControlField:
    return SecurityControlField.from_bytes(bytes([SC_AUTH_ENC]))


class DlmsLinkClient:
    """A sans-IO DLMS client for one association, LN referencing (Green Book §9.3).

    Without ``keys`` it is the public client (SAP 16, no security); with ``keys``
    the management client (SAP 1): HLS-GMAC and every xDLMS APDU under suite 0
    with our ``counter``; the server's counters are checked with ``peer_guard``
    (an answer whose counter is not above the last accepted one is refused).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        keys: Suite0Keys | None = None,
        system_title: bytes = b"MHHCLI01",
        counter: InvocationCounter | None = None,
        peer_guard: ReplayGuard | None = None,
        max_pdu_size: int = 1024,
        max_blocks: int = 4096,
    ) -> None:
        if len(system_title) != 8:
            raise ValueError("system title is 8 bytes")
        self.transport = transport
        self.keys = keys
        self.system_title = system_title
        self.counter = counter or InvocationCounter()
        self.peer_guard = peer_guard or ReplayGuard()
        self.max_pdu_size = max_pdu_size
        self.max_blocks = max_blocks
        self.server_title: bytes | None = None
        self.associated = False

    @property
    def client_sap(self) -> int:
        return PUBLIC_CLIENT if self.keys is None else MANAGEMENT_CLIENT

    # -------------------------------------------------------------- protection
    def _protect(self, plain: bytes) -> bytes:
        if self.keys is None:
            return plain
        ic = self.counter.next()
        return encode_general_glo_cipher(
            self.system_title, SC_AUTH_ENC, ic, encrypt(self.keys, self.system_title, ic, plain)
        )

    def _unprotect(self, apdu: bytes) -> bytes:
        if not apdu:
            raise DlmsLinkError("empty answer")
        if apdu[0] == Tag.EXCEPTION_RESPONSE:
            raise DlmsLinkError(_exception_text(apdu))
        if self.keys is None:
            return apdu
        try:
            title, sc, ic, text = decode_general_glo_cipher(apdu)
        except DecipherError as exc:
            raise DlmsLinkError(f"answer is not protected as agreed: {exc}") from None
        if title != self.server_title:
            raise DlmsLinkError("answer carries another system title")
        return self._open(title, sc, ic, text)

    def _open(self, title: bytes, sc: int, ic: int, text: bytes) -> bytes:
        assert self.keys is not None
        try:
            self.peer_guard.check(title, ic)
            plain = decrypt(self.keys, title, ic, sc, text)
        except SecurityError as exc:
            raise DlmsLinkError(f"answer refused: {exc}") from None
        self.peer_guard.accept(title, ic)
        return plain

    def _request(self, plain: bytes) -> bytes:
        return self._unprotect(self.transport(self._protect(plain)))

    # --------------------------------------------------------------- ACSE
    def associate(self) -> None:
        """AARQ → AARE (Green Book §9.4.4); with keys, HLS-GMAC passes 3 and 4 (§9.2.7.4)."""
        initiate = xdlms.InitiateRequest(
            proposed_conformance=CLIENT_CONFORMANCE, client_max_receive_pdu_size=self.max_pdu_size
        )
        if self.keys is None:
            aarq = acse.ApplicationAssociationRequest(
                ciphered=False,
                authentication=None,
                user_information=acse.UserInformation(content=initiate),
            )
            self._aare(self.transport(aarq.to_bytes()), ctos=b"")
            self.associated = True
            return
        ctos = secrets.token_bytes(32)
        ic = self.counter.next()
        aarq = acse.ApplicationAssociationRequest(
            ciphered=True,
            system_title=self.system_title,
            authentication=E.AuthenticationMechanism.HLS_GMAC,
            authentication_value=ctos,
            user_information=acse.UserInformation(
                content=xdlms.GlobalCipherInitiateRequest(
                    _sc(), ic, encrypt(self.keys, self.system_title, ic, initiate.to_bytes())
                )
            ),
        )
        stoc = self._aare(self.transport(aarq.to_bytes()), ctos)
        # Pass 3: f(StoC) = SC || IC || GMAC(SC || AK || StoC) with the IC of the carrying APDU.
        ic = self.counter.next()
        reply = hls_gmac_response(self.keys, self.system_title, ic, stoc)
        action = xdlms.ActionRequestNormal(
            cosem_method=_ASSOCIATION_LN,
            data=axdr.octet_string(reply),
            invoke_id_and_priority=xdlms.InvokeIdAndPriority.from_bytes(bytes([INVOKE])),
        ).to_bytes()
        apdu = encode_general_glo_cipher(
            self.system_title, SC_AUTH_ENC, ic, encrypt(self.keys, self.system_title, ic, action)
        )
        plain = self._unprotect(self.transport(apdu))
        try:
            resp = xdlms.ActionResponseNormalWithData.from_bytes(plain)
            answer = axdr.decode(bytes(resp.data))
        except Exception:
            raise DlmsLinkError("meter refused HLS authentication (wrong key?)") from None
        assert self.server_title is not None
        if not isinstance(answer, bytes) or not verify_hls_gmac(self.keys, self.server_title, ctos, answer):
            raise DlmsLinkError("meter failed HLS pass 4: it does not hold the home-link key")
        self.associated = True

    def _aare(self, raw: bytes, ctos: bytes) -> bytes:
        if not raw or raw[0] != Tag.AARE:
            if raw and raw[0] == Tag.EXCEPTION_RESPONSE:
                raise DlmsLinkError(_exception_text(raw))
            raise DlmsLinkError("no AARE in answer to the AARQ")
        try:
            aare = acse.ApplicationAssociationResponse.from_bytes(raw)
        except Exception:
            raise DlmsLinkError("malformed AARE") from None
        content = aare.user_information.content if aare.user_information else None
        if aare.result != E.AssociationResult.ACCEPTED:
            diag = str(getattr(aare.result_source_diagnostics, "name", aare.result_source_diagnostics)).lower()
            if isinstance(content, xdlms.ConfirmedServiceError):
                # e.g. initiateError / deciphering-error: wrong key or a reused invocation counter
                diag += "; " + str(getattr(content.error, "name", content.error)).lower().replace("_", "-")
            raise DlmsLinkError(f"association refused ({diag})")
        if self.keys is None:
            if not isinstance(content, xdlms.InitiateResponse):
                raise DlmsLinkError("AARE without an InitiateResponse")
            return b""
        title, stoc = aare.system_title, aare.authentication_value
        if not title or len(title) != 8 or not stoc or not isinstance(content, xdlms.GlobalCipherInitiateResponse):
            raise DlmsLinkError("AARE lacks the meter's system title, challenge or ciphered InitiateResponse")
        self.server_title = bytes(title)
        plain = self._open(
            self.server_title, content.security_control.to_bytes()[0], content.invocation_counter, content.ciphered_text
        )
        try:
            xdlms.InitiateResponse.from_bytes(plain)
        except Exception:
            raise DlmsLinkError("malformed InitiateResponse") from None
        return bytes(stoc)

    def release(self) -> None:
        """RLRQ → RLRE (Green Book §9.4.5); ciphered associations send a protected InitiateRequest."""
        if not self.associated:
            return
        self.associated = False
        initiate = xdlms.InitiateRequest(
            proposed_conformance=CLIENT_CONFORMANCE, client_max_receive_pdu_size=self.max_pdu_size
        )
        if self.keys is None:
            content: object = initiate
        else:
            ic = self.counter.next()
            content = xdlms.GlobalCipherInitiateRequest(
                _sc(), ic, encrypt(self.keys, self.system_title, ic, initiate.to_bytes())
            )
        rlrq = acse.ReleaseRequest(
            reason=E.ReleaseRequestReason.NORMAL, user_information=acse.UserInformation(content=content)
        )
        raw = self.transport(rlrq.to_bytes())
        if not raw or raw[0] != Tag.RLRE:
            raise DlmsLinkError("no RLRE in answer to the RLRQ")

    # ---------------------------------------------------------------- GET
    def get(
        self, class_id: int, logical_name: bytes, attribute: int, access: tuple[int, bytes] | None = None
    ) -> bytes:
        """GET one attribute (Green Book §9.3.6), following block transfer; returns the
        A-XDR ``Data``. ``access`` is ``(selector, encoded parameters)``."""
        if not self.associated:
            raise DlmsLinkError("not associated")
        request = bytes([Tag.GET_REQUEST, 1, INVOKE]) + class_id.to_bytes(2, "big") + logical_name
        request += bytes([attribute & 0xFF])
        request += b"\x00" if access is None else b"\x01" + bytes([access[0]]) + access[1]
        resp = self._request(request)
        out = bytearray()
        for expected in range(1, self.max_blocks + 1):
            if len(resp) < 4 or resp[0] != Tag.GET_RESPONSE:
                raise DlmsLinkError("answer is not a Get-Response")
            if resp[1] == 1:  # Get-Response-Normal
                if resp[3] == 0:
                    return resp[4:]
                raise DlmsLinkError(f"GET refused: {_dar(resp[4:5])}")
            if resp[1] != 2 or len(resp) < 9:
                raise DlmsLinkError("unexpected Get-Response choice")
            last, block = resp[3], int.from_bytes(resp[4:8], "big")
            if block != expected:
                raise DlmsLinkError(f"block {block} where {expected} was due")
            if resp[8] != 0:
                raise DlmsLinkError(f"GET refused: {_dar(resp[9:10])}")
            try:
                n, pos = axdr.decode_length(resp, 9)
            except axdr.AxdrError as exc:
                raise DlmsLinkError(f"bad data block: {exc}") from None
            if pos + n != len(resp):
                raise DlmsLinkError("data block length does not match")
            out += resp[pos:]
            if last:
                return bytes(out)
            resp = self._request(bytes([Tag.GET_REQUEST, 2, INVOKE]) + block.to_bytes(4, "big"))
        raise DlmsLinkError(f"more than {self.max_blocks} blocks")


def clock_range(since: datetime, until: datetime) -> tuple[int, bytes]:
    """Selective access by ``range_descriptor`` (selector 1, Blue Book §4.3.6) on the
    clock column, as ``get(..., access=)`` takes it: rows whose clock lies in
    ``since .. until``, all columns."""
    params = axdr.structure(
        [
            CaptureColumn(IC_CLOCK, CLOCK, 2).encode(),
            axdr.octet_string(axdr.encode_datetime(since)),
            axdr.octet_string(axdr.encode_datetime(until)),
            axdr.array([]),
        ]
    )
    return 1, params


def _dar(raw: bytes) -> str:
    try:
        name: str = E.DataAccessResult(raw[0]).name  # dlms_cosem ships no type information
        return name.lower().replace("_", "-")
    except (ValueError, IndexError):
        return "unknown data-access-result"


def _exception_text(apdu: bytes) -> str:
    state = _STATE_NAMES.get(apdu[1], "?") if len(apdu) > 1 else "?"
    service = _SERVICE_NAMES.get(apdu[2], "?") if len(apdu) > 2 else "?"
    text = f"refused by the peer: {state}, {service}"
    if service == "invocation-counter-error" and len(apdu) >= 7:
        text += f" (expects at least {int.from_bytes(apdu[3:7], 'big')})"
    return text
