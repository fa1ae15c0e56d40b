"""The utility's dashboard, mounted at ``/dashboard`` in ``meterhub utility serve``
(docs/dashboards.md).

Every figure comes from a verifier: the verification panel reads the utility store's
verdicts and coverage (docs/verification.md V21, V22); settlement, classification, fraud
and demand response re-verify the stored outputs with the same functions as ``meterhub
utility settle|forecast|fraud|dr`` (``collect`` hands their verified rows here) and are
cached until one of the stores changes. A panel whose data is not stored says so.

Authentication is the API's: a party's API key, given once in the login form (the
server keeps a random session id for it in an HttpOnly, SameSite=Strict cookie, 8 hours)
or as ``Authorization: Bearer KEY`` on every request. The dashboard shows every meter's
data, so only keys of role ``grid`` (the utility's operator) may see it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .common import Chart, CsrfTokens, FormError, NoData, page, read_form, static_routes

__all__ = ["create_dashboard", "SESSION_SECONDS"]

SESSION_SECONDS = 8 * 3600
BASE = "/dashboard"
_NAV = (("/", "Verification"), ("/settlement", "Settlement & forecasts"), ("/fraud", "Fraud"),
        ("/dr", "Demand response"))
_COOKIE = "meterhub_dashboard"


def _files_mtime(d: Path, names: tuple[str, ...]) -> tuple[Any, ...]:
    out: list[tuple[str, int | None, int | None]] = []
    for n in names:
        for suffix in ("", "-wal"):
            try:
                st = (d / (n + suffix)).stat()
                out.append((n + suffix, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((n + suffix, None, None))
    return tuple(out)


class _Stored:
    """Re-verified results of the stored outputs, recomputed when a store file changes."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self.lock = threading.Lock()
        self.cache: dict[str, tuple[Any, Any]] = {}

    def get(self, name: str, fn: Callable[[Path, dict[str, Any]], Any], files: tuple[str, ...]) -> dict[str, Any] | str:
        """``collect`` of ``fn`` (a ``*_stored`` function), or why there is none."""
        from ..storage.sqlite import StoreError, data_dir_lock

        d = self.data_dir
        if d is None:
            return "the service runs on PostgreSQL: the settlement, fraud and DR stores are files of a data directory"
        if not all((d / f).exists() for f in files):
            return f"no {', '.join(files)} in {d} (run `meterhub demo` or the utility's {name} step first)"
        key = _files_mtime(d, (*files, "utility.sqlite"))
        with self.lock:
            hit = self.cache.get(name)
            if hit is not None and hit[0] == key:
                return hit[1]  # type: ignore[no-any-return]
            collect: dict[str, Any] = {}
            try:
                with data_dir_lock(d):
                    _, rejected = fn(d, collect)
            except (FileNotFoundError, StoreError) as exc:
                return str(exc)
            collect["rejected"] = rejected
            self.cache[name] = (key, collect)
            return collect


def _verification(store: Any) -> dict[str, Any]:
    """Statements received/verified/rejected with reasons, rejected uploads, coverage."""
    conn = store.conn
    bills = conn.execute(
        "SELECT meter_id, period_from, period_to, verified, reason, checked_at FROM bills ORDER BY meter_id, period_from, rowid"
    ).fetchall()
    uploads = conn.execute("SELECT meter_id, day, reason, at FROM rejected_uploads ORDER BY at").fetchall()
    meters = [r[0] for r in conn.execute("SELECT meter_id FROM meters ORDER BY meter_id")]
    cov = []
    for m in meters:
        c = store.coverage(m)
        gaps: list[date] = []
        if c.uploaded:
            have = set(c.uploaded)
            d = c.uploaded[0]
            while d <= c.uploaded[-1]:
                if d not in have:
                    gaps.append(d)
                d += timedelta(days=1)
        cov.append((m, len(c.uploaded), len(c.billed), len(c.unbilled), gaps,
                    c.uploaded[0] if c.uploaded else None, c.uploaded[-1] if c.uploaded else None))
    return {"bills": bills, "uploads": uploads, "coverage": cov}


def _ranges(days: list[date]) -> str:
    if not days:
        return "none"
    out, a, b = [], days[0], days[0]
    for d in days[1:]:
        if d == b + timedelta(days=1):
            b = d
            continue
        out.append(f"{a}" if a == b else f"{a} to {b}")
        a = b = d
    out.append(f"{a}" if a == b else f"{a} to {b}")
    return ", ".join(out)


def verification_panels(v: dict[str, Any]) -> dict[str, Any]:
    bills = v["bills"]
    counts = {"verified": sum(1 for b in bills if b[3] == 1), "rejected": sum(1 for b in bills if b[3] == 0),
              "pending": sum(1 for b in bills if b[3] is None)}
    status = Chart("statements", "Bill statements received, by verdict",
                   [{"type": "bar", "name": "statements", "x": list(counts), "y": list(counts.values()),
                     "marker": {"color": ["#009E73", "#D55E00", "#56B4E9"]}}],
                   ["Verdict", "Statements"], [[k, n] for k, n in counts.items()],
                   {"yaxis": {"title": {"text": "statements"}}},
                   summary=f"{len(bills)} statements received.")
    cov = v["coverage"]
    coverage: Chart | NoData
    if cov:
        coverage = Chart(
            "coverage", "Coverage per meter: days uploaded and billed, unbilled, missing",
            [{"type": "bar", "name": "billed", "x": [c[0] for c in cov], "y": [c[2] for c in cov]},
             {"type": "bar", "name": "uploaded, not billed", "x": [c[0] for c in cov], "y": [c[3] for c in cov]},
             {"type": "bar", "name": "missing (gap)", "x": [c[0] for c in cov], "y": [len(c[4]) for c in cov]}],
            ["Meter", "Uploaded days", "Billed", "Unbilled", "Gaps (days without upload)", "First", "Last"],
            [[c[0], c[1], c[2], c[3], _ranges(c[4]), c[5] or "-", c[6] or "-"] for c in cov],
            {"barmode": "stack", "yaxis": {"title": {"text": "days"}}},
        )
    else:
        coverage = NoData("Coverage per meter", "no meter is registered in the utility store")
    return {"status": status, "coverage": coverage}


def _slp_estimate(d: Path, period: tuple[date, date]) -> tuple[dict[str, list[float]], list[Any]] | str:
    """Today's method, per supplier: each customer's registered annual consumption spread
    over the BDEW standard load profile of its class, priced at the stored (signed) index.
    Returns ``{supplier: [kWh, value]}`` and the per-customer hourly SLP (for forecasts)."""
    from ..meter.load import bdew_profile_wh
    from ..model.timebase import range_starts
    from ..tariffs.price_index import (
        KIND_PRICE_INDEX,
        demo_index_publisher_key,
        load_series,
        verify_series,
    )
    from ..utility.settlement import SettlementStore
    from ..utility.store import UtilityStore

    store = SettlementStore(d / "settlement.sqlite", create=False)
    utility = UtilityStore(d / "utility.sqlite")
    try:
        idx = [verify_series(load_series(raw), demo_index_publisher_key(), kind=KIND_PRICE_INDEX)
               for raw in store.series(KIND_PRICE_INDEX)]
        if not idx:
            return "no signed price index in settlement.sqlite"
        index = idx[-1]
        first, last = period
        n = (last - first).days + 1
        out: dict[str, list[float]] = {}
        hourly = []
        for mid, (supplier, profile, annual) in sorted(store.customers().items()):
            reg = utility.registration(mid)
            est = bdew_profile_wh(first, n, annual_kwh=annual, profile=profile, interval_minutes=reg.interval_minutes,
                                  tz=reg.tz)
            prices = index.values_for(range_starts(first, n, reg.tz, reg.interval_minutes), reg.interval_minutes)
            s = out.setdefault(supplier, [0.0, 0.0])
            s[0] += sum(est) / 1000
            s[1] += sum(p * e for p, e in zip(prices, est, strict=True)) / index.scale
            hourly.append((mid, bdew_profile_wh(first, n, annual_kwh=annual, profile=profile, interval_minutes=60,
                                                tz=reg.tz)))
        return out, hourly
    finally:
        store.close()
        utility.close()


def _period_of_settlement(d: Path) -> tuple[date, date] | None:
    from ..utility.settlement import SettlementStore

    store = SettlementStore(d / "settlement.sqlite", create=False)
    try:
        rows = store.statements("settlement")
    finally:
        store.close()
    if not rows:
        return None
    pf, pt = rows[0][1], rows[0][2]
    return (pf if isinstance(pf, date) else date.fromisoformat(pf), pt if isinstance(pt, date) else date.fromisoformat(pt))


def settlement_panels(stored: _Stored) -> dict[str, Any]:
    from ..utility.reverify.settlement import forecast_stored, settle_stored

    out: dict[str, Any] = {}
    s = stored.get("settle", settle_stored, ("settlement.sqlite",))
    if isinstance(s, str):
        out["shares"] = NoData("Settlement shares per supplier", s)
        out["forecast"] = NoData("Forecast against actual", s)
    else:
        d = stored.data_dir
        assert d is not None
        period = _period_of_settlement(d)
        est = _slp_estimate(d, period) if period else "no settlement period stored"
        sup = s["suppliers"]
        scale = s["scale"]
        if isinstance(est, str):
            slp: dict[str, list[float]] = {}
            note = f" SLP estimate: {est}."
        else:
            slp, _ = est
            note = ""
        total_slp = sum(v[1] for v in slp.values()) or 1.0
        names = [r.supplier for r in sup]
        out["shares"] = Chart(
            "shares", f"Settlement value share per supplier, {period[0]} to {period[1]}: verified against the SLP estimate"
            if period else "Settlement value share per supplier",
            [{"type": "bar", "name": "verified (meterhub)", "x": names, "y": [round(100 * r.value_share, 3) for r in sup]},
             {"type": "bar", "name": "SLP estimate (today)", "x": names,
              "y": [round(100 * slp.get(n, [0, 0])[1] / total_slp, 3) for n in names]}],
            ["Supplier", "Customers", "Verified kWh", "Verified EUR", "Verified share", "SLP kWh", "SLP EUR", "SLP share"],
            [[r.supplier, r.customers, f"{r.energy_wh / 1000:,.1f}", f"{r.value / scale:,.2f}",
              f"{100 * r.value_share:.2f}%", f"{slp.get(r.supplier, [0, 0])[0]:,.1f}",
              f"{slp.get(r.supplier, [0, 0])[1]:,.2f}", f"{100 * slp.get(r.supplier, [0, 0])[1] / total_slp:.2f}%"]
             for r in sup],
            {"barmode": "group", "yaxis": {"title": {"text": "% of the period's value"}}},
            summary=f"{sum(r.customers for r in sup)} statements verified, {len(s['rejected'])} rejected." + note,
        )
        out["rejected_settlement"] = s["rejected"]
        out["forecast"] = _forecast_vs_actual(stored, est, period)
    c = stored.get("forecast", forecast_stored, ("settlement.sqlite",))
    if isinstance(c, str):
        out["classes"] = NoData("Classification", c)
    else:
        rows = c.get("classes", [])
        classes = sorted({r[2] for r in rows})
        out["classes"] = Chart(
            "classes", "Classification of customers from verified profile scores and samples",
            [{"type": "bar", "name": "by exact scores", "x": classes, "y": [sum(1 for r in rows if r[2] == k) for k in classes]},
             {"type": "bar", "name": "by samples", "x": classes, "y": [sum(1 for r in rows if r[1] == k) for k in classes]}],
            ["Customer", "Class by samples", "Class by exact scores", "Best r"],
            [[r[0], r[1], r[2], f"{r[3]:.3f}"] for r in rows],
            {"barmode": "group", "yaxis": {"title": {"text": "customers"}}},
            summary=f"{len(rows)} customers classified, {len(c['rejected'])} rejected.",
        )
    return out


def _forecast_vs_actual(stored: _Stored, est: Any, period: tuple[date, date] | None) -> Chart | NoData:
    """The SLP forecast of a feeder's customers against the verified hourly sums of their
    consumption (private aggregation, docs/fraud.md): the only actual load at hourly
    resolution the utility holds."""
    from ..model.timebase import range_starts
    from ..utility.reverify.fraud import fraud_stored

    title = "Forecast against actual: hourly load of a feeder's customers"
    if isinstance(est, str) or period is None:
        return NoData(title, est if isinstance(est, str) else "no settlement period stored")
    f = stored.get("fraud", fraud_stored, ("fraud.sqlite",))
    if isinstance(f, str) or not f.get("feeders"):
        return NoData(title, "no verified hourly sums (fraud.sqlite) to compare the forecast with: " +
                      (f if isinstance(f, str) else "no feeder group stored"))
    feeder = f["feeders"][0]
    _, hourly = est
    per = dict(hourly)
    members = [m for m in feeder["members"] if m in per]
    days = feeder["days"]
    if days[0] != period[0] or len(days) != (period[1] - period[0]).days + 1 or not members:
        return NoData(title, "the feeder's days or customers do not match the settlement period")
    forecast = [sum(per[m][k] for m in members) for k in range(len(feeder["hourly_sum_wh"]))]
    zone = ZoneInfo(feeder["tz"])
    xs = [t.astimezone(zone).strftime("%Y-%m-%d %H:%M") for t in range_starts(days[0], len(days), feeder["tz"], 60)]
    actual = [v if ok else None for v, ok in zip(feeder["hourly_sum_wh"], feeder["hourly_ok"], strict=True)]
    err = [abs(a - b) for a, b in zip(actual, forecast, strict=True) if a is not None]
    tot = sum(a for a in actual if a is not None) or 1.0
    return Chart(
        "forecast", f"{title} ({feeder['feeder']}, {len(members)} customers)",
        [{"type": "scatter", "mode": "lines", "name": "SLP forecast", "x": xs, "y": [round(v / 1000, 3) for v in forecast]},
         {"type": "scatter", "mode": "lines", "name": "verified actual", "x": xs,
          "y": [None if v is None else round(v / 1000, 3) for v in actual]}],
        ["Hour (local)", "SLP forecast kWh", "Verified actual kWh"],
        [[x, f"{a / 1000:.3f}", "-" if b is None else f"{b / 1000:.3f}"] for x, a, b in zip(xs, forecast, actual, strict=True)],
        {"yaxis": {"title": {"text": "kWh per hour"}}},
        summary=f"Weighted absolute error of the SLP forecast: {100 * sum(err) / tot:.1f}% over {len(err)} hours.",
    )


def fraud_panels(stored: _Stored) -> dict[str, Any]:
    from ..utility.reverify.fraud import fraud_stored

    f = stored.get("fraud", fraud_stored, ("fraud.sqlite",))
    if isinstance(f, str):
        return {"charts": [NoData("Feeder balance", f)], "localisation": [], "rejected": []}
    charts: list[Chart | NoData] = []
    loc_rows = []
    for n, fd in enumerate(f.get("feeders", [])):
        days = [d.isoformat() for d in fd["days"]]
        unexplained = [100 * (a - b) / a if a > 0 else None for a, b in zip(fd["feeder_wh"], fd["sum_wh"], strict=True)]
        tech = [100 * lo / a if a > 0 else None for lo, a in zip(fd["loss_wh"], fd["feeder_wh"], strict=True)]
        upper = [None if t is None else t + fd["k_energy"] for t in tech]
        flags = [d for d, x in zip(days, fd["discrepancy_pct"], strict=True) if x == x and x > fd["k_energy"]]
        alarm = fd["alarm"].isoformat() if fd["alarm"] else None
        charts.append(Chart(
            f"feeder-{n}", f"Feeder {fd['feeder']}: unexplained loss against the technical-loss band",
            [{"type": "scatter", "mode": "lines", "name": "technical loss (expected)", "x": days, "y": tech,
              "line": {"color": "#009E73"}},
             {"type": "scatter", "mode": "lines", "name": "band: technical loss + detector allowance", "x": days,
              "y": upper, "fill": "tonexty", "fillcolor": "rgba(0,158,115,0.15)", "line": {"color": "#009E73", "dash": "dot"}},
             {"type": "scatter", "mode": "lines+markers", "name": "feeder minus verified customer sum", "x": days,
              "y": [None if u is None else round(u, 3) for u in unexplained], "line": {"color": "#D55E00"}}],
            ["Day", "Feeder kWh", "Verified sum kWh", "Technical loss kWh", "Discrepancy %", "Flag"],
            [[d, f"{a / 1000:,.2f}", f"{b / 1000:,.2f}", f"{lo / 1000:,.2f}", "-" if x != x else f"{x:.2f}",
              ("ALARM " if d == alarm else "") + ("above band" if d in flags else "")]
             for d, a, b, lo, x in zip(days, fd["feeder_wh"], fd["sum_wh"], fd["loss_wh"], fd["discrepancy_pct"], strict=True)],
            {"yaxis": {"title": {"text": "% of feeder energy"}},
             **({"shapes": [{"type": "line", "xref": "x", "yref": "paper", "x0": alarm, "x1": alarm, "y0": 0, "y1": 1,
                             "line": {"color": "#a11d1d", "width": 2}}]} if alarm else {})},
            summary=f"Alarm: {alarm or 'none'}; {len(flags)} days above the band; {fd['incomplete']} incomplete days.",
        ))
        loc = fd["localisation"]
        if loc is None:
            loc_rows.append([fd["feeder"], alarm or "-", "-", "-", "not started" if not alarm else "no rounds stored"])
        else:
            for members, disc in loc["segments"]:
                loc_rows.append([fd["feeder"], loc.get("alarm", "-"), loc.get("rounds", "-"),
                                 "-" if disc != disc else f"{disc:.2f}%", ", ".join(members)])
    if not charts:
        charts.append(NoData("Feeder balance", "no feeder group stored in fraud.sqlite"))
    return {"charts": charts, "localisation": loc_rows, "rejected": f["rejected"]}


def dr_panels(stored: _Stored) -> dict[str, Any]:
    from ..utility.reverify.dr import verify_stored
    from ..utility.reverify.fraud import fraud_stored

    r = stored.get("dr", verify_stored, ("dr.sqlite",))
    if isinstance(r, str):
        return {"charts": [NoData("Demand-response events", r)], "events": [], "rejected": [], "peaks": None}
    events = r.get("events", [])
    red = r.get("reductions", [])
    feeders = sorted({x[1] for x in red})
    ev_ids = [e.event_id for e in events]
    charts: list[Chart | NoData] = [Chart(
        "reductions", "Verified reductions per event and feeder",
        [{"type": "bar", "name": f, "x": ev_ids, "y": [round(sum(x[2] for x in red if x[0] == e and x[1] == f) / 1000, 3)
                                                         for e in ev_ids]} for f in feeders],
        ["Event", "Feeder", "Verified kWh", "Paid EUR", "Customers"],
        [[e, f, f"{w / 1000:.2f}", f"{p:.2f}", n] for e, f, w, p, n in red],
        {"barmode": "group", "yaxis": {"title": {"text": "kWh"}}},
        summary=f"{len(r.get('per_customer', []))} releases verified, {len(r['rejected'])} rejected.",
    )]
    ev_rows = [[e.event_id, e.program, e.start.isoformat(), f"{e.duration_minutes} min", e.signal, e.price,
                len(e.targets), len(e.baseline_days)] for e in events]
    peaks: Chart | NoData
    f = stored.get("fraud", fraud_stored, ("fraud.sqlite",))
    title = "Feeder peaks on event days: with the event (verified sums) and without (plus verified reductions)"
    if isinstance(f, str) or not f.get("feeders"):
        peaks = NoData(title, "no verified hourly feeder sums stored (fraud.sqlite): " + (f if isinstance(f, str) else "none"))
    else:
        peaks = _peaks(f["feeders"], events, r.get("per_customer", []), title)
    return {"charts": charts, "events": ev_rows, "rejected": r["rejected"], "peaks": peaks}


def _peaks(feeders: list[dict[str, Any]], events: list[Any], per_customer: list[Any], title: str) -> Chart | NoData:
    """Per event and feeder group: the peak of the verified hourly customer sum in the event
    window and on the whole day, with the event, and without it (the verified reductions
    of the group's customers added back, spread evenly over the window)."""
    from ..model.timebase import range_starts

    rows, xs, with_, without = [], [], [], []
    for fd in feeders:
        hours = range_starts(fd["days"][0], len(fd["days"]), fd["tz"], 60)
        for ev in events:
            win = [k for k, t in enumerate(hours) if ev.start <= t < ev.end]
            day = ev.start.astimezone(ZoneInfo(fd["tz"])).date()
            whole = [k for k, t in enumerate(hours) if t.astimezone(ZoneInfo(fd["tz"])).date() == day]
            if not win or not all(fd["hourly_ok"][k] for k in win):
                continue
            back = sum(w for e, m, w in per_customer if e == ev.event_id and m in set(fd["members"])) / len(win)
            s = fd["hourly_sum_wh"]
            w_peak = max(s[k] for k in win)
            wo_peak = max(s[k] + back for k in win)
            d_peak = max(s[k] for k in whole)
            d_wo = max(max(s[k] for k in whole if k not in win), wo_peak)
            xs.append(f"{ev.event_id} / {fd['feeder']}")
            with_.append(round(w_peak / 1000, 2))
            without.append(round(wo_peak / 1000, 2))
            rows.append([xs[-1], f"{w_peak / 1000:.2f}", f"{wo_peak / 1000:.2f}", f"{d_peak / 1000:.2f}", f"{d_wo / 1000:.2f}"])
    if not rows:
        return NoData(title, "no event falls on a day with a complete verified feeder sum")
    return Chart("peaks", title,
                 [{"type": "bar", "name": "with the event", "x": xs, "y": with_},
                  {"type": "bar", "name": "without (estimated)", "x": xs, "y": without}],
                 ["Event / feeder", "Window peak kW with", "Window peak kW without", "Day peak kW with",
                  "Day peak kW without"], rows, {"barmode": "group", "yaxis": {"title": {"text": "kW (hourly mean)"}}})


# -- the application -------------------------------------------------------------------
def create_dashboard(svc: Any, data_dir: Path | None) -> Starlette:
    """The dashboard app for a :class:`meterhub.service.app.Service` (mounted at ``/dashboard``)."""
    csrf = CsrfTokens()
    sessions: dict[str, tuple[str, float]] = {}  # session id -> (the key presented, expiry)
    stored = _Stored(data_dir)

    def party_of(request: Request) -> Any:
        svc.reload_keys()
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            return svc.keys.party(key.strip())
        sid = request.cookies.get(_COOKIE, "")
        hit = sessions.get(sid)
        if hit is None or hit[1] < time.time():
            sessions.pop(sid, None)
            return None
        return svc.keys.party(hit[0])  # a key revoked since the login ends the session

    def render(request: Request, template: str, title: str, current: str, status: int = 200, party: Any = None,
               **ctx: Any) -> Response:
        token, cookie = csrf.ensure(request)
        return page(template, request, status, cookie, title=title, app_title="meterhub · utility", nav=_NAV,
                    current=current, base=BASE, csrf=token, party=party, **ctx)

    def authed(handler: Callable[..., Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            party = party_of(request)
            if party is None:
                return render(request, "utility_login.html", "Sign in", "", 401)
            if party.role != "grid":
                return render(request, "message.html", "Not allowed", "", 403, party,
                              message=f"the dashboard shows every meter's data: role grid only, not {party.role}")
            from starlette.concurrency import run_in_threadpool

            return await handler(request, party, run_in_threadpool)

        return run

    async def login_page(request: Request) -> Response:
        return render(request, "utility_login.html", "Sign in", "")

    async def login_post(request: Request) -> Response:
        try:
            form = await read_form(request, 4096, 4)
        except FormError as exc:
            return render(request, "message.html", "Request refused", "", 400, message=str(exc))
        why = csrf.check(request, form.get("csrf", ""))
        if why is not None:
            return render(request, "message.html", "Request refused", "", 403, message=f"refused: {why}")
        svc.reload_keys()
        party = svc.keys.party(form.get("api_key", "").strip())
        if party is None:
            return render(request, "utility_login.html", "Sign in", "", 401, error="unknown API key")
        sid = secrets.token_urlsafe(32)
        now = time.time()
        for k in [k for k, (_, exp) in sessions.items() if exp < now]:
            del sessions[k]
        sessions[sid] = (form.get("api_key", "").strip(), now + SESSION_SECONDS)
        resp = RedirectResponse(BASE + "/", 303)
        resp.set_cookie(_COOKIE, sid, max_age=SESSION_SECONDS, path=BASE, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    async def logout_post(request: Request) -> Response:
        try:
            form = await read_form(request, 4096, 4)
        except FormError as exc:
            return render(request, "message.html", "Request refused", "", 400, message=str(exc))
        why = csrf.check(request, form.get("csrf", ""))
        if why is not None:
            return render(request, "message.html", "Request refused", "", 403, message=f"refused: {why}")
        sessions.pop(request.cookies.get(_COOKIE, ""), None)
        resp = RedirectResponse(BASE + "/login", 303)
        resp.delete_cookie(_COOKIE, path=BASE)
        return resp

    async def verification(request: Request, party: Any, pool: Any) -> Response:
        def read() -> dict[str, Any]:
            with svc.lock:
                return _verification(svc.store())

        v = await pool(read)
        return render(request, "utility_verification.html", "Verification", "/", party=party, v=v,
                      panels=verification_panels(v), ranges=_ranges)

    async def settlement(request: Request, party: Any, pool: Any) -> Response:
        return render(request, "utility_settlement.html", "Settlement, forecasts and classification", "/settlement",
                      party=party, p=await pool(settlement_panels, stored))

    async def fraud(request: Request, party: Any, pool: Any) -> Response:
        return render(request, "utility_fraud.html", "Fraud detection", "/fraud", party=party,
                      p=await pool(fraud_panels, stored))

    async def dr(request: Request, party: Any, pool: Any) -> Response:
        return render(request, "utility_dr.html", "Demand response", "/dr", party=party, p=await pool(dr_panels, stored))

    app = Starlette(routes=[
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout_post, methods=["POST"]),
        Route("/", authed(verification), methods=["GET"]),
        Route("/settlement", authed(settlement), methods=["GET"]),
        Route("/fraud", authed(fraud), methods=["GET"]),
        Route("/dr", authed(dr), methods=["GET"]),
        *static_routes(),
    ])
    return app

