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

The pieces: :mod:`.state` (the process state and the output limits), :mod:`.auth` (the
caller, the bounded body, meter ownership), :mod:`.problems` (RFC 9457 problems),
:mod:`.meter_routes` and :mod:`.output_routes` (the handlers); this module writes the
refusals, the OpenAPI description and the ASGI application, and re-exports the names
callers import from here.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..model.display import shown
from ..utility.deliveries import REF_KINDS, TrustAnchors
from .auth import _body, _party
from .keys import ApiKeys, Party
from .meter_routes import (
    MAX_DAYS_PER_DELIVERY,
    _get_coverage,
    _get_verdicts,
    _post_days,
    _post_meter,
    _post_statement,
)
from .output_routes import OUTPUT_ROLES as OUTPUT_ROLES  # re-exported, as before the split
from .output_routes import (
    _get_dr_settlement,
    _get_feeder_days,
    _get_forecast,
    _get_outputs,
    _get_shares,
    _post_output,
    _post_reference,
)
from .problems import _PROBLEM, Problem, _LogBudget
from .push import OUTPUT_PATHS
from .state import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY, OutputLimits, Service

__all__ = ["DEFAULT_MAX_BODY", "MAX_DAYS_PER_DELIVERY", "OutputLimits", "create_app"]

log = logging.getLogger("meterhub.service")

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
