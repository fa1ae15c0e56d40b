"""The home link over DLMS/COSEM: the hub reads each day's openings from its meter.

docs/architecture.md, data flow step 3: ``(i, m_i, r_i)`` go from meter to hub over
the home link, encrypted. Here the hub is a DLMS **management client** (client
SAP 1, Green Book 1000-2 Ed. 9 §9.2.5) of the meter's management logical
device: application context LN with ciphering, HLS-GMAC (mechanism 5,
§9.2.7.4) and security suite 0 (AES-GCM-128, general-glo-ciphering, §9.2.7.2)
under keys derived from the 16-byte meter-hub key
(:func:`~meterhub.meter.serve.home_link_suite0_keys`). It reads the openings
object 0.128.96.4.0.255 (Profile generic, docs/dlms.md) with a range selection
on its clock column for one local day, checks what it got and stores it in the
:class:`~meterhub.hub.store.HubStore`.

Sans-IO: :class:`DlmsLinkClient` talks to a ``transport(request) -> response``
callable. In the demo that callable is the meter's
:class:`~meterhub.protocols.dlms.server.ServerAssociation` itself
(:class:`InProcessHomeLink`); :func:`wrapper_transport` gives the same over TCP.
Both ends keep their invocation counters in their own databases, so a killed
run resumes without reusing an IV and a replayed APDU stays refused.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from dlms_cosem import enumerations as E  # noqa: N812
from dlms_cosem.cosem import CosemMethod, Obis
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.xdlms.conformance import Conformance
from dlms_cosem.security import SecurityControlField

from ..crypto.group import Q
from ..crypto.pedersen import Opening
from ..dlms_link import (
    StoredInvocationCounter,
    StoredReplayGuard,
    home_link_suite0_keys,
    hub_system_title,
)
from ..errors import MeterhubError
from ..exchange import DayUpload, SealedDay, open_sealed_openings
from ..meter.serve import StoreFeed, meter_dlms_server
from ..meter.timebase import day_starts
from ..protocols.dlms import axdr
from ..protocols.dlms.apdu import Tag
from ..protocols.dlms.cosem import CLOCK, IC_CLOCK, IC_PROFILE_GENERIC, OPENINGS, CaptureColumn
from ..protocols.dlms.security import (
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
from ..protocols.dlms.server import MANAGEMENT_CLIENT, MANAGEMENT_LOGICAL_DEVICE, PUBLIC_CLIENT
from ..protocols.dlms.wrapper import HEADER_LEN, WrapperDecoder, WrapperError, WrapperFrame
from .store import HubError, HubStore

__all__ = [
    "DlmsLinkError",
    "HomeLinkError",
    "DlmsLinkClient",
    "Transport",
    "wrapper_transport",
    "HubHomeLink",
    "InProcessHomeLink",
    "decode_openings",
]

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


class HomeLinkError(HubError):
    """The hub could not take a day's openings over the home link; says which and why."""


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


def _dar(raw: bytes) -> str:
    try:
        return E.DataAccessResult(raw[0]).name.lower().replace("_", "-")
    except (ValueError, IndexError):
        return "unknown data-access-result"


def _exception_text(apdu: bytes) -> str:
    state = _STATE_NAMES.get(apdu[1], "?") if len(apdu) > 1 else "?"
    service = _SERVICE_NAMES.get(apdu[2], "?") if len(apdu) > 2 else "?"
    text = f"refused by the peer: {state}, {service}"
    if service == "invocation-counter-error" and len(apdu) >= 7:
        text += f" (expects at least {int.from_bytes(apdu[3:7], 'big')})"
    return text


def wrapper_transport(
    host: str, port: int, client_sap: int, *, timeout: float = 10.0, max_apdu: int = 0xFFFF
) -> tuple[Transport, Callable[[], None]]:
    """A blocking IEC 62056-47 wrapper transport over TCP (Green Book §7.3.3) and its closer.

    ``timeout`` bounds each request and its whole answer (not each ``recv``, which a
    peer trickling bytes could renew for ever); a missed deadline raises
    :class:`DlmsLinkError`."""
    sock = socket.create_connection((host, port), timeout=timeout)
    decoder = WrapperDecoder(max_apdu=max_apdu)
    pending: list[WrapperFrame] = []

    def send(apdu: bytes) -> bytes:
        deadline = time.monotonic() + timeout
        sock.settimeout(timeout)
        sock.sendall(WrapperFrame(client_sap, MANAGEMENT_LOGICAL_DEVICE, apdu).to_bytes())
        while not pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DlmsLinkError(f"no complete answer from the meter within {timeout:g} s")
            sock.settimeout(left)
            try:
                data = sock.recv(max(4096, HEADER_LEN))
            except TimeoutError:
                raise DlmsLinkError(f"no complete answer from the meter within {timeout:g} s") from None
            if not data:
                raise DlmsLinkError("the meter closed the connection")
            try:
                pending.extend(decoder.feed(data))
            except WrapperError as exc:
                raise DlmsLinkError(str(exc)) from None
        return pending.pop(0).apdu

    return send, sock.close


# ------------------------------------------------------------------- openings


def _range(day: date, tz: str, interval_minutes: int) -> tuple[int, bytes]:
    """Selector 1, ``range_descriptor`` on the clock column (Blue Book §4.3.6): the
    interval ends of local ``day``, i.e. (midnight + interval) .. next midnight."""
    starts = day_starts(day, tz, interval_minutes)
    step = timedelta(minutes=interval_minutes)
    params = axdr.structure(
        [
            CaptureColumn(IC_CLOCK, CLOCK, 2).encode(),
            axdr.octet_string(axdr.encode_datetime(starts[0] + step)),
            axdr.octet_string(axdr.encode_datetime(starts[-1] + step)),
            axdr.array([]),
        ]
    )
    return 1, params


def decode_openings(
    raw: bytes, day: date, tz: str, interval_minutes: int
) -> tuple[int, list[Opening]]:
    """Check and decode a day's openings buffer; returns ``(first index, openings)``.

    Rows are ``{date-time interval end, long64-unsigned i, long64-unsigned m_i,
    octet-string(32) r_i}`` (docs/dlms.md). Every interval of the local day must be
    there exactly once, in order, with contiguous indices, ``m < 2^32`` and ``r < Q``.
    """
    try:
        rows = axdr.decode(raw)
    except axdr.AxdrError as exc:
        raise HomeLinkError(f"day {day}: openings are not A-XDR: {exc}") from None
    starts = day_starts(day, tz, interval_minutes)
    step = timedelta(minutes=interval_minutes)
    if not isinstance(rows, list) or len(rows) != len(starts):
        got = len(rows) if isinstance(rows, list) else "no"
        raise HomeLinkError(f"day {day}: {got} openings for {len(starts)} intervals")
    out: list[Opening] = []
    first = None
    for k, (row, start) in enumerate(zip(rows, starts, strict=True)):
        if (
            not isinstance(row, list)
            or len(row) != 4
            or not isinstance(row[0], bytes)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in row[1:3])
            or not isinstance(row[3], bytes)
            or len(row[3]) != 32
        ):
            raise HomeLinkError(f"day {day}: opening {k} has the wrong shape")
        try:
            end = axdr.decode_datetime(row[0])
        except axdr.AxdrError as exc:
            raise HomeLinkError(f"day {day}: opening {k}: {exc}") from None
        if end.tzinfo is None or end != start + step:
            raise HomeLinkError(f"day {day}: opening {k} is for {end.isoformat()}, not {(start + step).isoformat()}")
        if first is None:
            first = row[1]
        if row[1] != first + k:
            raise HomeLinkError(f"day {day}: interval index {row[1]} where {first + k} was due")
        r = int.from_bytes(row[3], "big")
        if not 0 <= row[2] <= 0xFFFFFFFF or r >= Q:
            raise HomeLinkError(f"day {day}: opening {k} out of range")
        out.append(Opening(row[2], r))
    assert first is not None
    return first, out


class HubHomeLink:
    """The hub's end of one meter's home link: fetch a day's openings, check, store.

    ``connect()`` returns a fresh transport to the meter's management logical
    device; the association is opened on first use and reused for later days.
    The hub's sending counter and the meter's last counter are kept in
    ``hub.sqlite`` (table ``dlms_counters``).
    """

    def __init__(self, hub: HubStore, meter_id: str, connect: Callable[[], Transport], *, max_pdu_size: int = 1024) -> None:
        self.hub = hub
        self.meter_id = meter_id
        key, self.tz, self.interval_minutes = hub.meter(meter_id)
        self.keys = home_link_suite0_keys(key)
        self.title = hub_system_title(meter_id)
        owner = f"hub:{meter_id}"
        self.counter = StoredInvocationCounter(hub.conn, owner, self.title)
        self.guard = StoredReplayGuard(hub.conn, owner)
        self._connect = connect
        self.max_pdu_size = max_pdu_size
        self.client: DlmsLinkClient | None = None

    def has_day(self, day: date) -> bool:
        return (
            self.hub.conn.execute(
                "SELECT 1 FROM openings WHERE meter_id=? AND day=?", (self.meter_id, day.isoformat())
            ).fetchone()
            is not None
        )

    def _open(self) -> DlmsLinkClient:
        if self.client is None:
            client = DlmsLinkClient(
                self._connect(),
                keys=self.keys,
                system_title=self.title,
                counter=self.counter,
                peer_guard=self.guard,
                max_pdu_size=self.max_pdu_size,
            )
            try:
                client.associate()
            except DlmsLinkError as exc:
                raise HomeLinkError(f"meter {self.meter_id}: {exc}") from None
            self.client = client
        return self.client

    def fetch_day(self, day: date) -> bool:
        """Read ``day``'s openings unless the hub has them; True if newly stored."""
        if self.has_day(day):
            return False
        client = self._open()
        try:
            raw = client.get(IC_PROFILE_GENERIC, OPENINGS, 2, _range(day, self.tz, self.interval_minutes))
        except DlmsLinkError as exc:
            self.client = None  # the association is no longer trusted; open a new one next time
            raise HomeLinkError(f"meter {self.meter_id}, day {day}: {exc}") from None
        finally:
            self.guard.save()
        first, openings = decode_openings(raw, day, self.tz, self.interval_minutes)
        self._check_follows(day, first)
        return self.hub.store_openings(self.meter_id, day, first, openings)

    def _check_follows(self, day: date, first: int) -> None:
        prev = self.hub.conn.execute(
            "SELECT first_index, count FROM openings WHERE meter_id=? AND day=?",
            (self.meter_id, (day - timedelta(days=1)).isoformat()),
        ).fetchone()
        if prev is not None and prev[0] + prev[1] != first:
            raise HomeLinkError(f"day {day}: first index {first} does not follow on from {prev[0] + prev[1]}")

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.release()
            except DlmsLinkError:
                pass  # the meter forgets the association anyway when the transport goes
            finally:
                self.client = None
                self.guard.save()


@dataclass
class _MeterEnd:
    feed: StoreFeed
    home_link_key: bytes


class InProcessHomeLink:
    """Meter and hub on one machine (the demo): the hub's client calls the meter's
    DLMS server core directly, APDU for APDU, with no socket in between.

    The meter publishes each recorded day (its own copy of the openings, which it
    keeps sealed under the home-link key in its outbox); the hub then reads that
    day through DLMS. The meter's counters live in ``meter.sqlite``.
    """

    def __init__(self, meters, hub: HubStore, meter_id: str, *, max_pdu_size: int = 1024) -> None:
        info = meters.info(meter_id)
        feed = StoreFeed(
            meter_id=meter_id,
            public_key=info.public_key,
            tz=info.tz,
            interval_minutes=info.interval_minutes,
        )
        self._meter = _MeterEnd(feed, info.home_link_key)
        self.server = meter_dlms_server(feed, info.home_link_key, meters.conn, max_pdu_size=max_pdu_size)
        self.hub_link = HubHomeLink(
            hub, meter_id, lambda: self.server.association(MANAGEMENT_CLIENT).handle, max_pdu_size=max_pdu_size
        )

    def deliver(self, upload: DayUpload, sealed: SealedDay) -> bool:
        """Publish one recorded day on the meter and let the hub read it; True if new to the hub."""
        day = upload.batch.batch.day
        if self.hub_link.has_day(day):
            return False
        feed = self._meter.feed
        feed.clear()  # the meter's link buffer holds the day being delivered
        feed.add_day(upload, open_sealed_openings(self._meter.home_link_key, sealed))
        try:
            return self.hub_link.fetch_day(day)
        finally:
            self.server.replay.save()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.hub_link.close()
        self.server.replay.save()  # type: ignore[attr-defined]
