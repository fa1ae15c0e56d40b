"""The customer's dashboard as an ASGI application: routes, loopback ``Host`` check and
CSRF-guarded POSTs (:mod:`meterhub.web.customer`; docs/dashboards.md).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..common import Chart, CsrfTokens, FormError, page, read_form, static_routes
from .data import (
    _guard,
    _held_days,
    _reduction_wh,
    bills,
    consumption,
    demand_response,
    grant,
    privacy,
    revoke,
)
from .household import _NAV, LOOPBACK_HOSTS, VIEWS, DashboardError, Household


# -- the application -------------------------------------------------------------------
def create_customer_app(h: Household, *, allow_remote: bool = False) -> Starlette:
    """The customer's dashboard as an ASGI app (``uvicorn`` serves it; tests drive it)."""
    csrf = CsrfTokens()

    def render(request: Request, template: str, title: str, current: str, status: int = 200,
               **ctx: Any) -> Response:
        token, cookie = csrf.ensure(request)
        return page(template, request, status, cookie, title=title, app_title=f"meterhub · home of {h.meter_id}",
                    nav=_NAV, current=current, base="", csrf=token, household=h, **ctx)

    def host_ok(request: Request) -> bool:
        if allow_remote:
            return True
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_HOSTS

    async def guard_host(request: Request) -> Response | None:
        if not host_ok(request):
            return Response("this dashboard answers on a loopback address only\n", 421, media_type="text/plain")
        return None

    def wrap(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            refused = await guard_host(request)
            if refused is not None:
                return refused
            from starlette.concurrency import run_in_threadpool

            try:
                return await handler(request, run_in_threadpool)
            except DashboardError as exc:
                return render(request, "message.html", "Cannot show this page", "", 409, message=str(exc))

        return run

    async def consumption_page(request: Request, pool: Any) -> Response:
        view = request.query_params.get("view", "day")
        held = await pool(_held_days, h)
        if view not in VIEWS:
            view = "day"
        end = held[1] if held else date.today()
        try:
            if request.query_params.get("day"):
                end = date.fromisoformat(request.query_params["day"])
        except ValueError:
            return render(request, "message.html", "Cannot show this page", "/", 400,
                          message="day: a date YYYY-MM-DD")
        if held:
            end = min(max(end, held[0]), held[1])
        chart = await pool(consumption, h, view, end)
        step = {"day": 1, "week": 7, "month": 30}[view]
        nav = {"prev": (end - timedelta(days=step)).isoformat(), "next": (end + timedelta(days=step)).isoformat()}
        return render(request, "customer_consumption.html", "Your consumption", "/", chart=chart, view=view,
                      views=VIEWS, day=end.isoformat(), held=held, nav_days=nav)

    async def bills_page(request: Request, pool: Any) -> Response:
        return render(request, "customer_bills.html", "Your bills", "/bills", bills=await pool(bills, h))

    async def releases_page(request: Request, pool: Any) -> Response:
        p = await pool(privacy, h)
        used = Chart(
            "budget", "Budget used this period per recipient (linear functionals)",
            [{"type": "bar", "name": "used", "x": list(p.budgets), "y": [u for u, _ in p.budgets.values()]},
             {"type": "bar", "name": "left", "x": list(p.budgets), "y": [lim - u for u, lim in p.budgets.values()]}],
            ["Recipient", "Used", "Budget"], [[r, u, lim] for r, (u, lim) in p.budgets.items()],
            {"barmode": "stack", "yaxis": {"title": {"text": "functionals"}}},
        )
        return render(request, "customer_releases.html", "What your hub released", "/releases", p=p, budget=used)

    async def consents_page(request: Request, pool: Any) -> Response:
        p = await pool(privacy, h)
        msg = []
        # The redirect after a POST names the consent; the message confirms only what the
        # guard's log shows (a crafted link must not report a revocation that did not happen).
        state = {c["id"]: c["revoked"] for c in p.consents}
        revoked, granted = request.query_params.get("revoked"), request.query_params.get("granted")
        if revoked and state.get(revoked) is True:
            msg.append(("ok", f"Consent {revoked} revoked: no further exports."))
        if granted and state.get(granted) is False:
            msg.append(("ok", f"Consent {granted} granted."))
        held = await pool(_held_days, h)
        return render(request, "customer_consents.html", "Consents", "/consents", p=p, messages=msg,
                      held=held, recipients=("supplier", "grid-operator", "third-party"))

    async def _form(request: Request) -> dict[str, str]:
        try:
            return await read_form(request)
        except FormError as exc:
            raise DashboardError(str(exc)) from None

    def csrf_refused(request: Request, form: dict[str, str]) -> Response | None:
        why = csrf.check(request, form.get("csrf", ""))
        if why is None:
            return None
        return render(request, "message.html", "Request refused", "", 403, message=f"refused: {why}")

    async def grant_post(request: Request, pool: Any) -> Response:
        form = await _form(request)
        refused = csrf_refused(request, form)
        if refused is not None:
            return refused
        cid = await pool(grant, h, form)
        return RedirectResponse(f"/consents?granted={quote(cid)}", 303)

    async def revoke_post(request: Request, pool: Any) -> Response:
        form = await _form(request)
        refused = csrf_refused(request, form)
        if refused is not None:
            return refused
        cid = request.path_params["cid"]
        await pool(revoke, h, cid)
        return RedirectResponse(f"/consents?revoked={quote(cid)}", 303)

    async def dr_page(request: Request, pool: Any) -> Response:
        p = await pool(privacy, h)
        released: dict[str, float] = {}
        with_dr = [e for e in p.entries if e.kind == "dr"]
        if with_dr:
            def read() -> None:
                from ...dr.release import DRRelease

                with _guard(h) as g:
                    for e in with_dr:
                        rel = DRRelease.from_bytes(g.release(e.seq))
                        wh = _reduction_wh(rel)
                        if wh is not None:
                            released[rel.event_id] = wh

            await pool(read)
        rows, charts = await pool(demand_response, h, released)
        return render(request, "customer_dr.html", "Demand response", "/dr", rows=rows, charts=charts,
                      has_store=(h.data_dir / "dr.sqlite").is_file())

    routes = [
        Route("/", wrap(consumption_page), methods=["GET"]),
        Route("/bills", wrap(bills_page), methods=["GET"]),
        Route("/releases", wrap(releases_page), methods=["GET"]),
        Route("/consents", wrap(consents_page), methods=["GET"]),
        Route("/consents", wrap(grant_post), methods=["POST"]),
        Route("/consents/{cid}/revoke", wrap(revoke_post), methods=["POST"]),
        Route("/dr", wrap(dr_page), methods=["GET"]),
        *static_routes(),
    ]
    app = Starlette(routes=routes)
    app.state.household = h
    return app
