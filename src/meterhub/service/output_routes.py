"""Handlers for the outputs and the reference data they are verified against
(docs/service.md, "Outputs"), with the per-key output limits (:class:`~meterhub.service.state.OutputLimits`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from starlette.responses import JSONResponse, Response

from ..utility.deliveries import REF_KINDS, DeliveryError, parse_output
from .auth import _forbidden, _may_read, _supplier_of
from .keys import Party
from .problems import Problem
from .state import Service

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

