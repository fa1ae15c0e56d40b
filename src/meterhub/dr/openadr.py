"""OpenADR 2.0b transport for demand-response events, with ``openleadr`` (Apache-2.0).

The DR program operator runs a VTN (:class:`VTN`); each hub's host runs a VEN
(:class:`VEN`). Every OpenADR message is signed with an XML signature (OpenADR 2.0b
Profile Specification §10, "Security": XMLDSig over ``oadrSignedObject`` with a
ReplayProtect nonce and timestamp), the VEN pins the VTN certificate's OpenADR
fingerprint and the VTN each VEN's. Certificates are self-signed P-256 test
certificates made here with ``cryptography`` (:func:`self_signed`); nothing is fetched.

An ``oadrEvent`` carries its compact record for the card (:mod:`meterhub.dr.event`)
in ``eiEventDescriptor/vtnComment`` (free text in the schema)::

    meterhub-dr/1 price=<1e-8 EUR per Wh> baseline=<caiso-10-in-10|pjm-high-4-of-5>
                  days=<YYYY-MM-DD,...> sig=<base64 ECDSA>    (one line, single spaces)

Everything else of the record is read from the OpenADR fields themselves (event id,
modification number, market context, created time, active period start and
duration, the first signal's name and payload, the VEN-id targets; the baseline method
and the days, which OpenADR has no field for, from the comment), so the VTN's P-256
signature over the record covers exactly what the XML signature covered. A VEN that
cannot rebuild a record that verifies opts out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import ipaddress
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .event import METHOD_CAISO, METHOD_PJM, SIGNAL_LOAD_SHED, SIGNAL_PRICE, DREvent, EventError

__all__ = ["Certificate", "OptRules", "VEN", "VTN", "event_from_oadr", "fingerprint", "run_exchange", "self_signed"]

COMMENT_PREFIX = "meterhub-dr/1"
_SIGNAL = {SIGNAL_LOAD_SHED: ("SIMPLE", "level"), SIGNAL_PRICE: ("ELECTRICITY_PRICE", "price")}


def _quiet() -> None:
    logging.getLogger("openleadr").setLevel(logging.CRITICAL)  # after openleadr set its own level


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes
    key: ec.EllipticCurvePrivateKey

    def write(self, folder: Path, name: str) -> tuple[str, str]:
        c, k = folder / f"{name}.crt", folder / f"{name}.key"
        c.write_bytes(self.cert_pem)
        k.write_bytes(self.key_pem)
        return str(c), str(k)


def self_signed(common_name: str, key: ec.EllipticCurvePrivateKey | None = None) -> Certificate:
    """A self-signed P-256 certificate for a test or demo VTN/VEN (valid one year)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    kp = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return Certificate(pem, kp, key)


def fingerprint(cert_pem: bytes) -> str:
    """The OpenADR certificate fingerprint (the last 10 bytes of SHA-256 over the DER)."""
    from openleadr.utils import certificate_fingerprint

    return str(certificate_fingerprint(cert_pem))


_METHOD_NAMES = {METHOD_CAISO: "caiso-10-in-10", METHOD_PJM: "pjm-high-4-of-5"}


def _comment(ev: DREvent) -> str:
    days = ",".join(d.isoformat() for d in ev.baseline_days)
    method = _METHOD_NAMES[ev.method]
    return f"{COMMENT_PREFIX} price={ev.price} baseline={method} days={days} sig={base64.b64encode(ev.signature).decode()}"


def _dt(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    raise EventError("not a timestamp")


def event_from_oadr(event: dict[str, Any]) -> DREvent:
    """Rebuild the signed compact record from a parsed ``oadrEvent`` (module docstring);
    raises :class:`EventError` on anything missing or malformed."""
    try:
        desc = event["event_descriptor"]
        comment = str(desc.get("vtn_comment") or "")
        parts = comment.split(" ")
        if len(parts) != 5 or parts[0] != COMMENT_PREFIX:
            raise EventError("no meterhub record in vtnComment")
        kv = dict(p.split("=", 1) for p in parts[1:])
        method = {v: k for k, v in _METHOD_NAMES.items()}.get(kv["baseline"])
        if method is None:
            raise EventError("unknown baseline method in vtnComment")
        signal = event["event_signals"][0]
        kind = {v[0]: k for k, v in _SIGNAL.items()}.get(signal["signal_name"])
        if kind is None:
            raise EventError("unknown signal")
        payload = signal["intervals"][0]["signal_payload"]
        active = event["active_period"]
        targets = tuple(str(t["ven_id"]) for t in event.get("targets", []) if "ven_id" in t) or ("*",)
        return DREvent(
            str(desc["event_id"]), int(desc["modification_number"]), str(desc["market_context"]),
            _dt(desc["created_date_time"]), _dt(active["dtstart"]),
            int(active["duration"].total_seconds() // 60), kind, int(round(float(payload))), int(kv["price"]),
            targets, tuple(date.fromisoformat(d) for d in kv["days"].split(",") if d),
            base64.b64decode(kv["sig"], validate=True), method,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, EventError):
            raise
        raise EventError(f"oadrEvent does not carry a usable record ({type(exc).__name__})") from None


def oadr_event(ev: DREvent) -> Any:
    """The ``oadrEvent`` (openleadr objects) for a signed record."""
    from openleadr import objects

    name, _ = _SIGNAL[ev.signal]
    desc = objects.EventDescriptor(
        event_id=ev.event_id, modification_number=ev.modification, market_context=ev.program,
        event_status="far", created_date_time=ev.created, vtn_comment=_comment(ev),
    )
    interval = objects.Interval(dtstart=ev.start, duration=timedelta(minutes=ev.duration_minutes),
                                signal_payload=float(ev.level))
    signal = objects.EventSignal(intervals=[interval], signal_name=name, signal_type=_SIGNAL[ev.signal][1],
                                 signal_id=f"{ev.event_id}-s0")
    active = objects.ActivePeriod(dtstart=ev.start, duration=timedelta(minutes=ev.duration_minutes))
    targets = [objects.Target(ven_id=t) for t in ev.targets if t != "*"]
    return objects.Event(event_descriptor=desc, active_period=active, event_signals=[signal],
                         targets=targets or [objects.Target(group_id="all")], response_required="always")


@dataclass(frozen=True)
class OptRules:
    """The customer's rules the VEN applies: events at most ``max_minutes`` long, at
    least ``min_price`` (1e-8 EUR/Wh), not on weekends unless allowed, at most
    ``max_events`` per calendar month."""

    participate: bool = True
    max_minutes: int = 240
    min_price: int = 0
    weekends: bool = False
    max_events: int = 8

    def decide(self, ev: DREvent, accepted_this_month: int) -> bool:
        return (
            self.participate and ev.duration_minutes <= self.max_minutes and ev.price >= self.min_price
            and (self.weekends or ev.start.weekday() < 5) and accepted_this_month < self.max_events
        )


@dataclass
class VEN:
    """One hub host's VEN: ``deliver(event, record bytes, opt_in) -> bool`` hands the record
    to the card (False if the card refused it, then the VEN opts out)."""

    ven_id: str
    rules: OptRules
    deliver: Callable[[DREvent, bytes, bool], bool]
    cert: Certificate | None = None
    received: list[str] = field(default_factory=list)
    decisions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cert is None:  # distinct subjects: the VTN's trust store holds them all
            self.cert = self_signed(f"ven {self.ven_id}")

    @property
    def certificate(self) -> Certificate:
        assert self.cert is not None  # set in __post_init__
        return self.cert

    def on_event(self, event: dict[str, Any]) -> str:
        try:
            ev = event_from_oadr(event)
        except EventError:
            self.decisions[str(event.get("event_descriptor", {}).get("event_id"))] = "optOut"
            return "optOut"
        self.received.append(ev.event_id)
        month = sum(1 for k, v in self.decisions.items() if v == "optIn" and k != ev.event_id)
        opt = self.rules.decide(ev, month)
        ok = self.deliver(ev, ev.to_bytes(), opt)
        res = "optIn" if opt and ok else "optOut"
        self.decisions[ev.event_id] = res
        return res


class VTN:
    """The DR program operator's VTN on 127.0.0.1 at an ephemeral port."""

    def __init__(self, cert: Certificate, ven_certs: dict[str, bytes], *, vtn_id: str = "METERHUB-VTN") -> None:
        self.cert = cert
        self.vtn_id = vtn_id
        self.ven_certs = dict(ven_certs)
        self.ven_fingerprints = {v: fingerprint(c) for v, c in ven_certs.items()}
        self.opts: dict[tuple[str, str], str] = {}
        self.server: Any = None
        self.port = 0

    def _lookup(self, ven_id: str) -> dict[str, str]:
        fp = self.ven_fingerprints.get(ven_id)
        return {} if fp is None else {"ven_id": ven_id, "ven_name": ven_id, "fingerprint": fp,
                                      "registration_id": f"reg-{ven_id}"}

    async def _register(self, info: dict[str, Any]) -> tuple[str, str] | bool:
        name = str(info.get("ven_name"))
        return (name, f"reg-{name}") if name in self.ven_fingerprints else False

    async def start(self, folder: Path) -> None:
        from openleadr import OpenADRServer

        cert, key = self.cert.write(folder, "vtn")
        ca = folder / "vens.pem"  # mutual TLS: each VEN's self-signed certificate is its own anchor
        ca.write_bytes(b"".join(self.ven_certs.values()))
        with contextlib.redirect_stdout(io.StringIO()):
            self.server = OpenADRServer(vtn_id=self.vtn_id, cert=cert, key=key, http_port=0, http_host="127.0.0.1",
                                        http_cert=cert, http_key=key, http_ca_file=str(ca),
                                        ven_lookup=self._lookup, show_fingerprint=False,
                                        requested_poll_freq=timedelta(seconds=60))
            self.server.add_handler("on_create_party_registration", self._register)
            await self.server.run()
        self.port = self.server.app_runner.addresses[0][1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    def publish(self, ev: DREvent, ven_ids: Sequence[str]) -> None:
        oe = oadr_event(ev)
        for v in ven_ids:
            self.server.add_raw_event(v, oe, callback=self._created)

    def _created(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts[(ven_id, event_id)] = opt_type
        # openleadr 0.5 keeps one callback per event id and drops it after the first
        # VEN's oadrCreatedEvent; put it back for the other VENs of the same event.
        svc = self.server.services["event_service"]
        for e in svc.events.get(ven_id, []):
            if e.event_descriptor.event_id == event_id:
                svc.event_callbacks[event_id] = (e, self._created)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


async def _session(client: Any) -> None:
    """One VEN's pull-mode session, OpenADR 2.0b Profile Specification §8 (registration),
    §9 (EiEvent): ``oadrCreatePartyRegistration``, ``oadrRegisterReport`` (the VEN's
    report metadata, mandatory after registration), ``oadrRequestEvent`` (the VTN answers
    ``oadrDistributeEvent``) and ``oadrCreatedEvent`` with the opt decisions; each message
    XML-signed and checked. ``OpenADRClient.run`` sends two more round trips we do not
    need in a one-shot exchange: the optional ``oadrQueryRegistration`` first and an
    ``oadrPoll`` after the event sync (the events were just fetched), and then keeps
    polling; the demo's exchange ends once the VTN has every answer."""
    await client.create_party_registration(ven_id=client.ven_id)
    if not client.registration_id:
        return  # refused, or the VTN's answer failed the pinned fingerprint: no events, no answer
    await client.register_reports(client.reports)
    await client.sync_events()


async def _exchange(vtn_cert: Certificate, events: Sequence[tuple[DREvent, Sequence[str]]], vens: Sequence[VEN],
                    pinned: str | None, timeout: float) -> dict[tuple[str, str], str]:
    from openleadr import OpenADRClient

    _quiet()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vtn = VTN(vtn_cert, {v.ven_id: v.certificate.cert_pem for v in vens})
        await vtn.start(folder)
        clients: list[Any] = []
        try:
            for ev, targets in events:
                vtn.publish(ev, targets)
            for v in vens:
                c, k = v.certificate.write(folder, f"ven-{len(clients)}")
                with contextlib.redirect_stdout(io.StringIO()):
                    client = OpenADRClient(ven_name=v.ven_id, vtn_url=vtn.url, cert=c, key=k, ven_id=v.ven_id,
                                           ca_file=str(folder / "vtn.crt"),
                                           vtn_fingerprint=pinned or fingerprint(vtn_cert.cert_pem),
                                           show_fingerprint=False, allow_jitter=False)
                client.add_handler("on_event", v.on_event)
                clients.append(client)
            with contextlib.redirect_stdout(io.StringIO()):
                await asyncio.gather(*(_session(c) for c in clients))
            wanted = {(t, ev.event_id) for ev, ts in events for t in ts if t in {v.ven_id for v in vens}}
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while not wanted <= set(vtn.opts) and loop.time() < end:
                await asyncio.sleep(0.02)
            return dict(vtn.opts)
        finally:
            with contextlib.redirect_stdout(io.StringIO()):
                for c in clients:
                    if c.client_session is not None:  # None if it never connected
                        await c.stop()
                await vtn.stop()


def run_exchange(vtn_cert: Certificate, events: Sequence[tuple[DREvent, Sequence[str]]], vens: Sequence[VEN], *,
                 pinned: str | None = None, timeout: float = 10.0) -> dict[tuple[str, str], str]:
    """Start a VTN and the VENs in this process over localhost, publish ``events`` (each to
    its VEN ids), let every VEN register and poll once, and return the opt responses the
    VTN received, ``{(ven id, event id): "optIn" | "optOut"}``. ``pinned`` overrides the
    VTN fingerprint the VENs pin (a test of a wrong pin)."""
    return asyncio.run(_exchange(vtn_cert, events, vens, pinned, timeout))
