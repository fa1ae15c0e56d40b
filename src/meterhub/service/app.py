"""The utility's HTTP service: a thin transport over :class:`~meterhub.utility.store.UtilityStore`.

Every delivery is checked by the store exactly as the CLI checks files
(docs/verification.md); this module only authenticates the caller, authorises the
delivery for its role (docs/service.md, "Authorisation"), bounds the request size and
maps outcomes to HTTP. Errors are ``application/problem+json`` (RFC 9457, section 3);
each refusal is logged on the ``meterhub.service`` logger with the party and reason.

Status codes: 200 stored (or an identical re-delivery), 400 malformed body, 401 no or
unknown key, 403 not this party's meter or role, 408 body too slow, 409 a re-delivery that conflicts with
stored data (never ignored), 413 body over the limit, 422 a delivery the verifier
refused, 429 an output delivery over the key's rate or rejected-output cap (:class:`OutputLimits`), 503 the database is unreachable (a delivery is committed whole or not at
all; retry it whole: identical re-deliveries are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..crypto import ecdsa
from ..errors import MeterhubError
from ..hub.proving import statement_from_json
from ..model import strictjson
from ..model.display import shown
from ..model.errors import FormatError
from ..model.formats.upload import DayUpload
from ..storage.sqlite import StoreError
from ..tariffs import TariffError, dump_tariff, load_tariff, verify_tariff
from ..utility.deliveries import (
    REF_KINDS,
    Deliveries,
    DeliveryError,
    TrustAnchors,
    parse_output,
)
from ..utility.store import UtilityStore
from .keys import ApiKeys, KeyError_, Party
from .push import OUTPUT_PATHS
from .tls import PEER_SUBJECT

__all__ = ["DEFAULT_MAX_BODY", "MAX_DAYS_PER_DELIVERY", "OutputLimits", "create_app"]

log = logging.getLogger("meterhub.service")

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: ~120 days of 15-minute uploads per delivery
DEFAULT_BODY_TIMEOUT = 30.0  # seconds for a whole body: 1 MiB at 35 KB/s
MAX_DAYS_PER_DELIVERY = 400
_PROBLEM = "tag:meterhub,2026:problem:"


class Problem(MeterhubError):
    """An RFC 9457 problem: ``status``, a short ``slug`` (the type) and a one-line ``detail``;
    ``retry_after`` (seconds) becomes a ``Retry-After`` header (RFC 9110, 10.2.3)."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str, *, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail, self.extra = (
            status,
            slug,
            title,
            detail,
            extra,
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class OutputLimits:
    """Per-key limits on output deliveries (docs/service.md, "Limits"): an authenticated
    key must not be able to fill the ``outputs`` history with distinct rejected outputs
    (each is recorded: the verdict history is append-only) nor keep the verifiers busy.

    ``rate``/``burst``: output deliveries per second per key, a token bucket (per service
    process). ``max_rejected``: rejected outputs recorded for one key within ``window``
    seconds (counted in the database, so across restarts and processes); at the cap the
    key's output deliveries are refused before verification until the oldest counted
    rejection leaves the window. Both answer 429 with ``Retry-After``."""

    rate: float = 50.0
    burst: int = 500
    max_rejected: int = 1000
    window: int = 86400


class _KeyBuckets:
    """Token buckets per party name (:class:`OutputLimits` ``rate``/``burst``); the
    parties are the keys file's, so the table is bounded by it."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, tuple[float, float]] = {}  # party -> (tokens, at)
        self.lock = threading.Lock()

    def take(self, party: str) -> float:
        """0 if a delivery may go now (a token taken), else the seconds until one may."""
        with self.lock:
            now = self.clock()
            tokens, at = self.buckets.get(party, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self.buckets[party] = (tokens - 1.0, now)
                return 0.0
            self.buckets[party] = (tokens, now)
            return (1.0 - tokens) / self.rate


class _LogBudget:
    """At most ``per_second`` refusal lines a second: a client flooding bad requests
    cannot flood the log (or the disk under it); the lines left out are counted and
    the count is logged with the next line that is written."""

    def __init__(self, per_second: int = 20) -> None:
        self.per_second, self.second, self.used, self.dropped = per_second, 0, 0, 0
        self.lock = threading.Lock()

    def take(self) -> tuple[bool, int]:
        import time

        with self.lock:
            now = int(time.monotonic())
            if now != self.second:
                self.second, self.used = now, 0
            if self.used >= self.per_second:
                self.dropped += 1
                return False, 0
            self.used += 1
            dropped, self.dropped = self.dropped, 0
            return True, dropped


_log_budget = _LogBudget()


def _problem_response(p: Problem, request: Request, party: Party | None) -> Response:
    who = shown(party.name) if party else "-"
    ok, dropped = _log_budget.take()
    if dropped:
        log.warning("%d refusals not logged (over %d a second)", dropped, _log_budget.per_second)
    if ok:
        log.warning(
            "refused %s %s from %s: %d %s: %s",
            request.method,
            shown(request.url.path),
            who,
            p.status,
            p.slug,
            shown(p.detail),
        )
    body = {
        "type": _PROBLEM + p.slug,
        "title": p.title,
        "status": p.status,
        "detail": p.detail,
        **p.extra,
    }
    headers: dict[str, str] = {"Retry-After": "1"} if p.status == 503 else {}
    if p.retry_after is not None:
        headers["Retry-After"] = str(max(1, p.retry_after))
    if p.status in (408, 413):  # the body was not read: do not wait for the rest of it
        headers["Connection"] = "close"
    return Response(json.dumps(body), p.status, headers, media_type="application/problem+json")


def _db_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError, StoreError)


class Service:
    """State of one service process: the store (one connection, one writer at a time), the keys."""

    def __init__(
        self,
        db: str,
        keys: ApiKeys,
        supplier_key: bytes | None,
        max_body: int,
        trust: TrustAnchors | None = None,
        limits: OutputLimits | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.db, self.keys, self.supplier_key, self.max_body = db, keys, supplier_key, max_body
        self.limits = limits or OutputLimits()
        self.clock = clock or time.time  # wall clock: the rejection window is compared with `at`
        self.output_buckets = _KeyBuckets(self.limits.rate, self.limits.burst, time.monotonic)
        self.trust = trust or TrustAnchors()
        self.body_timeout = DEFAULT_BODY_TIMEOUT
        self.lock = threading.Lock()
        self._store: UtilityStore | None = None
        self._deliveries: Deliveries | None = None
        self.db_errors = _db_errors()
        self.keys_path: Path | None = None
        self.keys_mtime: tuple[int, int, int] | None = None
        self.keys_lock = threading.Lock()  # not the store lock: never wait for a DB call here

    def reload_keys(self) -> None:
        """Re-read the keys file when its modification time changed (keys enrolled or
        revoked while the service runs); a malformed new file keeps the old keys and is logged."""
        if self.keys_path is None:
            return
        try:
            st = self.keys_path.stat()  # the inode too: atomic_write replaces the file
            mtime: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            mtime = None
        if mtime == self.keys_mtime:
            return
        with self.keys_lock:
            try:
                self.keys = ApiKeys.load(self.keys_path)
            except KeyError_ as exc:
                log.error("keys file not reloaded: %s", exc)
            self.keys_mtime = mtime

    def store(self) -> UtilityStore:
        if self._store is None:
            self._store = UtilityStore(self.db)
        return self._store

    def deliveries(self) -> Deliveries:
        if self._deliveries is None or self._deliveries.store is not self.store():
            self._deliveries = Deliveries(self.store(), self.trust)
        return self._deliveries

    def drop_store(self) -> None:
        """After a database error: reconnect on the next request (state re-read from the DB)."""
        self._deliveries = None
        if self._store is not None:
            try:
                self._store.close()
            except self.db_errors as exc:
                log.info("closing a failed store connection: %s", exc)
            self._store = None

    def close(self) -> None:
        with self.lock:
            self.drop_store()


def _party(svc: Service, request: Request) -> Party:
    svc.reload_keys()
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    subject = request.scope.get("state", {}).get(PEER_SUBJECT)
    if not auth and subject:  # mutual TLS: the verified client certificate names the party
        by_cert = svc.keys.party_of_subject(subject)
        if by_cert is None:
            raise Problem(401, "unauthenticated", "Unauthorized", f"no party for certificate subject {subject!r}")
        return by_cert
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(
            401,
            "unauthenticated",
            "Unauthorized",
            "an API key (Authorization: Bearer KEY) or a client certificate is required",
        )
    party = svc.keys.party(key.strip())
    if party is None:
        raise Problem(401, "unauthenticated", "Unauthorized", "unknown API key")
    return party


async def _body(svc: Service, request: Request) -> bytes:
    """The body, refused with 413 as soon as it exceeds the limit (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "malformed", "Bad Request", "Content-Length is not a number")
        if int(declared) > svc.max_body:
            raise Problem(413, "too-large", "Content Too Large", f"body over {svc.max_body} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(svc.body_timeout):  # a slow sender cannot hold the request
            async for chunk in request.stream():
                size += len(chunk)
                if size > svc.max_body:
                    raise Problem(413, "too-large", "Content Too Large", f"body over {svc.max_body} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(
            408, "timeout", "Request Timeout", f"body not received within {svc.body_timeout:g} s"
        ) from None
    return b"".join(chunks)


def _supplier_of(store: UtilityStore, meter_id: str) -> str | None:
    row = store.conn.execute("SELECT supplier FROM meters WHERE meter_id=?", (meter_id,)).fetchone()
    return None if row is None else row[0]


def _may_read(store: UtilityStore, party: Party, meter_id: str) -> bool:
    if party.role == "grid":
        return True
    if party.role == "meter":
        return meter_id in party.meters
    return _supplier_of(store, meter_id) == party.name


def _forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail)


# -- handlers (run in a worker thread under the store lock) ------------------------------
def _post_days(svc: Service, party: Party, body: bytes) -> Response:
    if party.role != "meter":
        raise _forbidden(f"role {party.role} may not deliver meter uploads")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "malformed", "Bad Request", "body is not UTF-8") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise Problem(400, "malformed", "Bad Request", "no day uploads in the body")
    if len(lines) > MAX_DAYS_PER_DELIVERY:
        raise Problem(
            413,
            "too-large",
            "Content Too Large",
            f"over {MAX_DAYS_PER_DELIVERY} days in one delivery",
        )
    uploads = []
    for n, line in enumerate(lines, 1):
        try:
            uploads.append(DayUpload.from_json(line))
        except FormatError as exc:
            raise Problem(400, "malformed", "Bad Request", f"line {n}: {exc}") from None
    for u in uploads:  # authorise every day before storing any
        if u.batch.batch.meter_id not in party.meters:
            raise _forbidden(
                f"key of {party.name} may not deliver for meter {u.batch.batch.meter_id!r}"
            )
    results = svc.store().ingest_days(uploads)
    out = [
        {
            "meter_id": u.batch.batch.meter_id,
            "day": u.batch.batch.day.isoformat(),
            "status": ("duplicate" if r.duplicate else "stored") if r.accepted else "rejected",
            **({"reason": r.reason} if not r.accepted else {}),
        }
        for u, r in zip(uploads, results, strict=True)
    ]
    bad = [r for r in results if not r.accepted]
    if not bad:
        return JSONResponse({"results": out})
    if any(r.conflict for r in bad):
        raise Problem(409, "conflict", "Conflict", bad[0].reason, results=out)
    raise Problem(422, "rejected", "Unprocessable Content", bad[0].reason, results=out)


def _post_statement(svc: Service, party: Party, body: bytes) -> Response:
    if party.role != "supplier":
        raise _forbidden(f"role {party.role} may not deliver bill statements")
    try:
        st = statement_from_json(body)
    except FormatError as exc:
        raise Problem(400, "malformed", "Bad Request", str(exc)) from None
    store = svc.store()
    if _supplier_of(store, st.meter_id) != party.name:
        raise _forbidden(f"meter {st.meter_id!r} is not a customer of {party.name}")
    text = st.to_json()
    row = store.conn.execute(
        "SELECT verified, reason FROM bills WHERE meter_id=? AND statement=? AND verified IS NOT NULL "
        "ORDER BY rowid LIMIT 1",
        (st.meter_id, text),
    ).fetchone()
    if row is not None:  # an identical re-delivery: the verdict already on record
        return JSONResponse(
            {"meter_id": st.meter_id, "verified": bool(row[0]), "reason": row[1], "duplicate": True}
        )
    v = store.verify_statement(st)
    if not v.ok and v.reason.startswith("overlaps verified bill"):
        raise Problem(409, "conflict", "Conflict", v.reason, meter_id=st.meter_id, verified=False)
    return JSONResponse(
        {"meter_id": st.meter_id, "verified": v.ok, "reason": v.reason, "duplicate": False}
    )


def _post_meter(svc: Service, party: Party, body: bytes) -> Response:
    if party.role != "grid":
        raise _forbidden(f"role {party.role} may not register meters")
    try:
        o = strictjson.loads(body, "meter registration")
        if not isinstance(o, dict) or set(o) != {
            "meter_id",
            "public_key",
            "tz",
            "interval_minutes",
            "tariff",
            "supplier",
        }:
            raise ValueError(
                "needs exactly meter_id, public_key, tz, interval_minutes, tariff, supplier"
            )
        meter_id, tz, minutes, supplier = (
            o["meter_id"],
            o["tz"],
            o["interval_minutes"],
            o["supplier"],
        )
        if (
            not all(isinstance(x, str) and x for x in (meter_id, tz, supplier))
            or type(minutes) is not int
        ):
            raise ValueError("meter_id, tz, supplier must be text, interval_minutes an integer")
        public_key = strictjson.hex_bytes(o["public_key"], "public_key")
        ecdsa.load_verifying_key(public_key)
        raw_tariff = o["tariff"].encode() if isinstance(o["tariff"], str) else b""
        signed = load_tariff(raw_tariff)
    except (ValueError, TypeError, TariffError) as exc:
        raise Problem(
            400, "malformed", "Bad Request", str(exc).splitlines()[0] if str(exc) else "malformed"
        ) from None
    if svc.supplier_key is None:
        raise Problem(
            403,
            "forbidden",
            "Forbidden",
            "this service has no tariff key configured (--supplier-key)",
        )
    try:
        verify_tariff(signed, svc.supplier_key)
    except TariffError as exc:
        raise Problem(422, "rejected", "Unprocessable Content", f"tariff: {exc}") from None
    store = svc.store()
    store.add_tariff(signed, dump_tariff(signed))
    try:
        store.register_meter(meter_id, public_key, tz, minutes, tariff=signed, supplier=supplier)
    except ValueError as exc:
        raise Problem(409, "conflict", "Conflict", str(exc)) from None
    return JSONResponse({"meter_id": meter_id, "registered": True})


def _get_coverage(svc: Service, party: Party, meter_id: str) -> Response:
    store = svc.store()
    if not _may_read(store, party, meter_id):
        raise _forbidden(f"{party.name} may not read meter {meter_id!r}")
    c = store.coverage(meter_id)
    return JSONResponse(
        {
            "meter_id": meter_id,
            "uploaded": [d.isoformat() for d in c.uploaded],
            "billed": [d.isoformat() for d in c.billed],
            "unbilled": [d.isoformat() for d in c.unbilled],
        }
    )


def _get_verdicts(svc: Service, party: Party, meter_id: str) -> Response:
    store = svc.store()
    if not _may_read(store, party, meter_id):
        raise _forbidden(f"{party.name} may not read meter {meter_id!r}")
    rows = store.conn.execute(
        "SELECT period_from, period_to, verified, reason, checked_at FROM bills WHERE meter_id=? "
        "ORDER BY period_from, rowid",
        (meter_id,),
    ).fetchall()
    return JSONResponse(
        {
            "meter_id": meter_id,
            "verdicts": [
                {
                    "period_from": r[0],
                    "period_to": r[1],
                    "verified": None if r[2] is None else bool(r[2]),
                    "reason": r[3],
                    "checked_at": r[4],
                }
                for r in rows
            ],
        }
    )


# -- outputs and reference data (docs/service.md, "Outputs") ------------------------------
# Who may deliver each output: the party the hub releases it to (its security domain).
OUTPUT_ROLES = {
    "settlement": "supplier",  # the settlement applet answers the supplier's domain
    "scores": "grid",  # profiling and DR applets answer the grid operator's domain
    "samples": "grid",
    "dr-release": "grid",
    "feeder-day": "grid",
}
_DELIVERY_STATUS = {
    "malformed": (400, "malformed", "Bad Request"),
    "forbidden": (403, "forbidden", "Forbidden"),
    "conflict": (409, "conflict", "Conflict"),
    "unverifiable": (422, "unverifiable", "Unprocessable Content"),
}


def _delivery_problem(exc: DeliveryError) -> Problem:
    status, slug, title = _DELIVERY_STATUS[exc.kind]
    return Problem(status, slug, title, exc.detail)


def _too_many(detail: str, retry_after: float) -> Problem:
    return Problem(429, "too-many-requests", "Too Many Requests", detail, retry_after=int(retry_after + 0.999))


def _check_output_limits(svc: Service, party: Party) -> None:
    """:class:`OutputLimits` for one output delivery of ``party``: 429 over the rate, or
    at the cap of rejected outputs recorded for the key in the window."""
    lim = svc.limits
    wait = svc.output_buckets.take(party.name)
    if wait:
        raise _too_many(f"over {lim.rate:g} output deliveries a second for key of {party.name}", wait)
    now = datetime.fromtimestamp(svc.clock(), UTC)
    since = (now - timedelta(seconds=lim.window)).isoformat(timespec="seconds")
    ats = svc.deliveries().recent_rejections(party.name, since, lim.max_rejected)
    if len(ats) >= lim.max_rejected:
        oldest = datetime.fromisoformat(ats[-1])
        wait_s = (oldest + timedelta(seconds=lim.window) - now).total_seconds()
        raise _too_many(
            f"{party.name} has {len(ats)} rejected outputs on record in the last {lim.window} s "
            f"(at most {lim.max_rejected}); output deliveries are refused until the oldest leaves the window",
            max(1.0, wait_s),
        )


def _post_output(kind: str) -> Callable[..., Response]:
    def handler(svc: Service, party: Party, body: bytes) -> Response:
        role = OUTPUT_ROLES[kind]
        if party.role != role:
            raise _forbidden(f"role {party.role} may not deliver {kind} outputs (role {role} only)")
        _check_output_limits(svc, party)
        try:
            d = parse_output(kind, body)
            store = svc.store()
            if role == "supplier":  # a supplier delivers for its own customers only
                for m in sorted(d.meters):
                    if _supplier_of(store, m) != party.name:
                        raise _forbidden(f"meter {m!r} is not a customer of {party.name}")
            v = svc.deliveries().deliver(d, party.name)
        except DeliveryError as exc:
            raise _delivery_problem(exc) from None
        return JSONResponse(v.to_dict())

    return handler


def _post_reference(svc: Service, party: Party, body: bytes, kind: str) -> Response:
    if kind not in REF_KINDS:
        raise Problem(404, "not-found", "Not Found", f"no reference kind {kind!r} ({', '.join(REF_KINDS)})")
    if party.role != "grid":
        raise _forbidden(f"role {party.role} may not deliver reference data")
    try:
        return JSONResponse(svc.deliveries().add_reference(kind, body, party.name))
    except DeliveryError as exc:
        raise _delivery_problem(exc) from None


def _get_outputs(svc: Service, party: Party, meter_id: str) -> Response:
    if not _may_read(svc.store(), party, meter_id):
        raise _forbidden(f"{party.name} may not read meter {meter_id!r}")
    return JSONResponse({"subject": meter_id, "outputs": svc.deliveries().verdicts(meter_id)})


def _get_forecast(svc: Service, party: Party, meter_id: str) -> Response:
    if not _may_read(svc.store(), party, meter_id):
        raise _forbidden(f"{party.name} may not read meter {meter_id!r}")
    try:
        periods = svc.deliveries().forecast(meter_id)
    except KeyError:
        raise Problem(404, "not-found", "Not Found", f"meter {meter_id!r} is not registered") from None
    except DeliveryError as exc:
        raise _delivery_problem(exc) from None
    return JSONResponse({"meter_id": meter_id, "periods": periods})


def _get_shares(svc: Service, party: Party) -> Response:
    if party.role not in ("grid", "supplier"):
        raise _forbidden(f"role {party.role} may not read settlement shares")
    shares = svc.deliveries().shares()
    if party.role == "supplier":  # a supplier learns its own share, not its competitors' figures
        shares = [s for s in shares if s["supplier"] == party.name]
    return JSONResponse({"shares": shares})


def _grid_only(party: Party, what: str) -> None:
    if party.role != "grid":
        raise _forbidden(f"role {party.role} may not read {what}")


def _get_dr_settlement(svc: Service, party: Party, event_id: str) -> Response:
    _grid_only(party, "DR settlements")
    return JSONResponse(svc.deliveries().dr_settlement(event_id))


def _get_feeder_days(svc: Service, party: Party, group_id: str) -> Response:
    _grid_only(party, "feeder sums")
    return JSONResponse({"group_id": group_id, "days": svc.deliveries().feeder_days(group_id)})


# -- the ASGI application -----------------------------------------------------------------
_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "meterhub utility service", "version": "1"},
    "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
    "security": [{"apiKey": []}],
    "paths": {
        "/v1/meters": {
            "post": {
                "summary": "register a meter and its customer's signed tariff (role grid)",
                "requestBody": {"content": {"application/json": {}}},
            }
        },
        "/v1/days": {
            "post": {
                "summary": "deliver day uploads, one per line (role meter, own meters only)",
                "requestBody": {"content": {"application/x-ndjson": {}}},
            }
        },
        "/v1/statements": {
            "post": {
                "summary": "deliver a bill statement, v1 or v2 (role supplier, own customers)",
                "requestBody": {"content": {"application/json": {}}},
            }
        },
        "/v1/meters/{meter_id}/coverage": {
            "get": {"summary": "days uploaded, billed and unbilled (V22)"}
        },
        "/v1/meters/{meter_id}/verdicts": {"get": {"summary": "the meter's verdict history (V21)"}},
        "/v1/settlement-statements": {
            "post": {
                "summary": "deliver a settlement statement (role supplier, own customers); "
                "verified with the price index on record",
                "requestBody": {"content": {"application/json": {}}},
            }
        },
        "/v1/profile-scores": {
            "post": {
                "summary": "deliver profile scores (role grid); verified with the load profiles on record",
                "requestBody": {"content": {"application/json": {}}},
            }
        },
        "/v1/samples": {
            "post": {
                "summary": "deliver a sample release (role grid); verified with the coin toss on record",
                "requestBody": {"content": {"application/json": {}}},
            }
        },
        "/v1/dr-releases": {
            "post": {
                "summary": "deliver a demand-response release, its binary record (role grid)",
                "requestBody": {"content": {"application/octet-stream": {}}},
            }
        },
        "/v1/feeder-days": {
            "post": {
                "summary": "deliver a feeder day: the group's masked and recovery releases (role grid)",
                "requestBody": {"content": {"application/json": {}}},
            }
        },
        "/v1/references/{kind}": {
            "post": {
                "summary": "deliver reference data (role grid): price-index, load-profile (signed "
                "series), dr-event (VTN-signed record), aggregation-group (signed), coin-toss",
                "parameters": [
                    {"name": "kind", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": list(REF_KINDS)}}
                ],
                "requestBody": {"content": {"application/json": {}, "application/octet-stream": {}}},
            }
        },
        "/v1/meters/{meter_id}/outputs": {
            "get": {"summary": "the meter's output verdicts: settlement, scores, samples, DR"}
        },
        "/v1/meters/{meter_id}/forecast": {
            "get": {"summary": "the meter's class per period, from verified scores and samples"}
        },
        "/v1/shares": {
            "get": {"summary": "settlement shares per supplier (grid: all; a supplier: its own)"}
        },
        "/v1/dr-events/{event_id}/settlement": {
            "get": {"summary": "verified reductions per feeder and payments of one event (grid)"}
        },
        "/v1/groups/{group_id}/feeder-days": {
            "get": {"summary": "the verified hourly sums of an aggregation group (grid)"}
        },
    },
}
for _item in _OPENAPI["paths"].values():
    for _op in _item.values():
        _op["responses"] = {
            str(c): {"description": d}
            for c, d in (
                (200, "done"),
                (400, "malformed"),
                (401, "no or unknown key"),
                (403, "not allowed"),
                (404, "no such reference kind or meter"),
                (408, "body not received in time"),
                (409, "conflicting re-delivery"),
                (413, "too large"),
                (422, "rejected"),
                (429, "over the key's output rate or rejected-output cap (outputs; Retry-After)"),
                (503, "database unavailable; retry"),
            )
        }


def create_app(
    db: str,
    keys: ApiKeys | str | Path,
    *,
    supplier_key: bytes | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    trust: TrustAnchors | None = None,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    limits: OutputLimits | None = None,
    clock: Callable[[], float] | None = None,
) -> Starlette:
    """The service as an ASGI app (``uvicorn`` runs it; tests drive it in-process).
    ``keys``: the keys, or the keys file's path (then re-read whenever it changes).
    ``trust``: the keys reference data is checked under (none: reference data refused).
    ``limits``: per-key limits on output deliveries (:class:`OutputLimits`); ``clock``:
    the wall clock (seconds since the epoch) the rejection window is measured with."""
    if isinstance(keys, ApiKeys):
        svc = Service(db, keys, supplier_key, max_body, trust, limits, clock)
    else:
        svc = Service(db, ApiKeys({}), supplier_key, max_body, trust, limits, clock)
        svc.keys_path = Path(keys)
        svc.reload_keys()
    svc.body_timeout = body_timeout

    def endpoint(handler: Callable[..., Response], *, body: bool) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            party = None
            try:
                party = _party(svc, request)
                args: list[Any] = [party]
                if body:
                    args.append(await _body(svc, request))
                args.extend(request.path_params.values())

                def locked() -> Response:
                    with svc.lock:
                        try:
                            return handler(svc, *args)
                        except svc.db_errors as exc:
                            svc.drop_store()
                            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                            raise Problem(
                                503,
                                "unavailable",
                                "Service Unavailable",
                                f"database unavailable ({first}); the delivery may not be "
                                "committed: retry it (re-delivery is idempotent)",
                            ) from None

                return await run_in_threadpool(locked)
            except Problem as p:
                return _problem_response(p, request, party)

        return run

    async def openapi(request: Request) -> Response:
        return JSONResponse(_OPENAPI)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        svc.close()

    async def http_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _problem_response(
            Problem(exc.status_code, "http", str(exc.detail), str(exc.detail)), request, None
        )

    app = Starlette(
        routes=[
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/v1/meters", endpoint(_post_meter, body=True), methods=["POST"]),
            Route("/v1/days", endpoint(_post_days, body=True), methods=["POST"]),
            Route("/v1/statements", endpoint(_post_statement, body=True), methods=["POST"]),
            Route(
                "/v1/meters/{meter_id}/coverage",
                endpoint(_get_coverage, body=False),
                methods=["GET"],
            ),
            Route(
                "/v1/meters/{meter_id}/verdicts",
                endpoint(_get_verdicts, body=False),
                methods=["GET"],
            ),
            *[
                Route(path, endpoint(_post_output(kind), body=True), methods=["POST"])
                for path, kind in OUTPUT_PATHS.items()
            ],
            Route("/v1/references/{kind}", endpoint(_post_reference, body=True), methods=["POST"]),
            Route("/v1/meters/{meter_id}/outputs", endpoint(_get_outputs, body=False), methods=["GET"]),
            Route("/v1/meters/{meter_id}/forecast", endpoint(_get_forecast, body=False), methods=["GET"]),
            Route("/v1/shares", endpoint(_get_shares, body=False), methods=["GET"]),
            Route(
                "/v1/dr-events/{event_id}/settlement",
                endpoint(_get_dr_settlement, body=False),
                methods=["GET"],
            ),
            Route(
                "/v1/groups/{group_id}/feeder-days",
                endpoint(_get_feeder_days, body=False),
                methods=["GET"],
            ),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_problem},
    )
    from starlette.routing import Mount

    from ..web.utility import create_dashboard  # the utility's dashboard (docs/dashboards.md)

    app.router.routes.append(Mount("/dashboard", create_dashboard(svc, None if "://" in db else Path(db).parent)))
    app.state.service = svc
    return app
