"""Who is asking and what they may read: the caller's party (API key or client
certificate, docs/service.md, "Authorisation"), the bounded request body, and the
meter-ownership checks every handler applies."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from ..utility.store import UtilityStore
from .keys import Party
from .problems import Problem
from .state import Service
from .tls import PEER_SUBJECT


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


