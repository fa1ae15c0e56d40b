"""Handlers for the meter data: day uploads, bill statements, meter registration,
coverage and the verdict history (docs/service.md). They run in a worker thread under
the store lock (:func:`meterhub.service.app.create_app`)."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from ..crypto import ecdsa
from ..hub.proving import statement_from_json
from ..model import strictjson
from ..model.errors import FormatError
from ..model.formats.upload import DayUpload
from ..tariffs import TariffError, dump_tariff, load_tariff, verify_tariff
from .auth import _forbidden, _may_read, _supplier_of
from .keys import Party
from .problems import Problem
from .state import Service

MAX_DAYS_PER_DELIVERY = 400


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


