"""The customer's dashboard, served by the hub's host on localhost (docs/dashboards.md).

Everything here stays in the home: the consumption charts show the openings the hub
holds at full resolution, read from ``hub.sqlite``; the release log, the policy, the
budgets and the consents come from the hub's card through the privacy guard's customer
commands (:class:`meterhub.hub.secure_element.GuardClient`), exactly as ``meterhub hub
releases`` and ``meterhub hub consent`` read and change them. Granting and revoking a
consent signs it with the customer's key (``ID.sqlite.customer.pem`` next to the card)
and goes through the guard's ADD/REVOKE CONSENT, so a revoked consent stops exports at
once (docs/privacy.md, "Consents").

Access: the server listens on a loopback address unless started with
``--allow-remote``; requests whose ``Host`` is not a loopback name are refused (a web
page elsewhere cannot reach it by DNS rebinding); state-changing requests are POSTs
carrying a CSRF token (:class:`meterhub.web.common.CsrfTokens`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..crypto import ecdsa
from ..errors import MeterhubError
from ..model.display import format_amount
from ..tariffs import Tariff, TariffError, load_tariff
from .common import Chart, CsrfTokens, FormError, NoData, page, read_form, static_routes

__all__ = ["DashboardError", "Household", "create_customer_app", "open_household", "LOOPBACK_HOSTS"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
VIEWS = ("day", "week", "month")
_NAV = (("/", "Consumption"), ("/bills", "Bills"), ("/releases", "Releases"), ("/consents", "Consents"),
        ("/dr", "Demand response"))


class DashboardError(MeterhubError, ValueError):
    """A data directory, meter or file the dashboard cannot serve; the message says which."""


@dataclass
class Household:
    """One household's hub: its store of openings, its card, the customer key, its tariff."""

    data_dir: Path
    meter_id: str
    tz: str
    interval_minutes: int
    tariff: Tariff
    tariff_label: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def card_path(self) -> Path:
        return self.data_dir / "hubs" / f"{self.meter_id}.sqlite"

    @property
    def key_path(self) -> Path:
        from ..hub.secure_element import customer_key_path

        return customer_key_path(self.card_path)


def open_household(data_dir: str | Path, meter_id: str | None = None, tariff_file: str | Path | None = None) -> Household:
    """Check the data directory (``hub.sqlite``, ``hubs/ID.sqlite`` and its customer key)
    and pick the meter: ``meter_id``, or the only card in ``hubs/``."""
    from ..hub.store import HubError, HubStore
    from ..tariffs import example_signed_tariff

    d = Path(data_dir)
    if not (d / "hub.sqlite").is_file():
        raise DashboardError(f"{d}: no hub.sqlite (run `meterhub demo --data-dir {d}` first)")
    cards = sorted(p.name.removesuffix(".sqlite") for p in (d / "hubs").glob("*.sqlite")) if (d / "hubs").is_dir() else []
    if meter_id is None:
        if len(cards) != 1:
            raise DashboardError(f"{d}: {len(cards)} hub cards; name one with --meter ({', '.join(cards[:8]) or 'none'})")
        meter_id = cards[0]
    if meter_id not in cards:
        raise DashboardError(f"{d}: no hub card for meter {meter_id!r}")
    from ..hub.secure_element import VaultClient, open_vault_card

    hub = HubStore(d / "hub.sqlite")
    try:
        card = open_vault_card(d / "hubs" / f"{meter_id}.sqlite")
        try:
            with hub.attached(meter_id, VaultClient(card.transmit)):
                _, tz, interval = hub.meter(meter_id)
        finally:
            card.close()
    except HubError as exc:
        raise DashboardError(str(exc)) from None
    finally:
        hub.close()
    try:
        raw = Path(tariff_file).read_bytes() if tariff_file else None
        signed = load_tariff(raw) if raw is not None else example_signed_tariff()
    except OSError as exc:
        raise DashboardError(f"cannot read the tariff {tariff_file}: {exc.strerror}") from None
    except TariffError as exc:
        raise DashboardError(f"{tariff_file}: {exc}") from None
    tariff = signed.tariff
    if not isinstance(tariff, Tariff):
        raise DashboardError("the dashboard shows time-of-use tariffs only")
    label = f"{tariff.tariff_id} v{tariff.version}" + ("" if tariff_file else " (the shipped example tariff)")
    h = Household(d, meter_id, tz, interval, tariff, label)
    if not h.key_path.is_file():
        raise DashboardError(f"no customer key at {h.key_path}")
    return h


# -- data ------------------------------------------------------------------------------
def _held_days(h: Household) -> tuple[date, date] | None:
    conn = sqlite3.connect(f"file:{h.data_dir / 'hub.sqlite'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT min(day), max(day) FROM openings WHERE meter_id=?", (h.meter_id,)).fetchone()
    finally:
        conn.close()
    return None if row[0] is None else (date.fromisoformat(row[0]), date.fromisoformat(row[1]))


def _readings(h: Household, first: date, last: date) -> tuple[list[datetime], list[int], list[str]]:
    """Interval starts (UTC), Wh and tariff band name of local days ``first..last``."""
    from ..model.billing.bands import band_indices
    from ..model.timebase import range_starts

    with _hub(h) as hub:
        _, openings = hub.openings(h.meter_id, first, last)
    n = (last - first).days + 1
    starts = range_starts(first, n, h.tz, h.interval_minutes)
    try:
        names = [h.tariff.bands[b].name for b in band_indices(h.tariff, first, n, h.tz, h.interval_minutes)]
    except TariffError:
        names = ["(tariff not valid)"] * len(starts)
    return starts, [o.m for o in openings], names


def consumption(h: Household, view: str, end: date) -> Chart | NoData:
    """The ``view`` (day, week or month) ending on local day ``end``, by tariff band."""
    from ..hub.store import HubError

    span = {"day": 1, "week": 7, "month": 30}[view]
    first = end - timedelta(days=span - 1)
    held = _held_days(h)
    if held is None:
        return NoData("Consumption", "the hub holds no readings of this meter yet")
    first = max(first, held[0])
    try:
        starts, wh, bands = _readings(h, first, end)
    except HubError as exc:
        return NoData("Consumption", str(exc))
    zone = ZoneInfo(h.tz)
    order = [b.name for b in h.tariff.bands if b.name in set(bands)] or sorted(set(bands))
    order = list(dict.fromkeys(order + sorted(set(bands) - set(order))))
    title = f"Consumption {first}" + ("" if first == end else f" to {end}") + f", by tariff band ({h.tariff_label})"
    if view == "month":
        days = [first + timedelta(days=k) for k in range((end - first).days + 1)]
        per: dict[tuple[date, str], int] = {}
        for t, m, b in zip(starts, wh, bands, strict=True):
            key = (t.astimezone(zone).date(), b)
            per[key] = per.get(key, 0) + m
        traces = [{"type": "bar", "name": b, "x": [d.isoformat() for d in days],
                   "y": [per.get((d, b), 0) / 1000 for d in days]} for b in order]
        rows = [[d.isoformat(), *(f"{per.get((d, b), 0) / 1000:,.3f}" for b in order),
                 f"{sum(per.get((d, b), 0) for b in order) / 1000:,.3f}"] for d in days]
        return Chart("consumption", title, traces, ["Day", *(f"{b} kWh" for b in order), "Total kWh"], rows,
                     {"barmode": "stack", "yaxis": {"title": {"text": "kWh per day"}}},
                     summary=f"{sum(wh) / 1000:,.3f} kWh in {len(days)} days.")
    local = [t.astimezone(zone) for t in starts]
    xs = [t.strftime("%Y-%m-%d %H:%M") for t in local]
    traces = [{"type": "bar", "name": b, "x": xs, "y": [m if bb == b else 0 for m, bb in zip(wh, bands, strict=True)]}
              for b in order]
    rows = [[x, f"{m:,}", b] for x, m, b in zip(xs, wh, bands, strict=True)]
    return Chart("consumption", title, traces, ["Interval start (local)", "Wh", "Tariff band"], rows,
                 {"barmode": "stack", "bargap": 0, "yaxis": {"title": {"text": f"Wh per {h.interval_minutes} min"}}},
                 summary=f"{sum(wh) / 1000:,.3f} kWh, {len(wh)} readings of {h.interval_minutes} minutes.")


@dataclass(frozen=True)
class BillRow:
    period: str
    total: str
    tariff: str
    status: str
    ok: bool


def bills(h: Household) -> list[BillRow]:
    """Each bill statement the hub released, checked against the hub's own readings:
    the statement is recomputed from the openings and the tariff (:func:`meterhub.hub.
    billing.bill_statement`) and every field compared (docs/verification.md)."""
    from ..hub.billing import bill_statement
    from ..hub.proving import statement_from_json
    from ..hub.store import HubError
    from ..model.errors import FormatError

    out = []
    with _hub(h) as hub:
        periods = hub.conn.execute(
            "SELECT period_from, period_to FROM statements WHERE meter_id=? ORDER BY period_from", (h.meter_id,)
        ).fetchall()
        for pf, pt in periods:
            first, last = date.fromisoformat(pf), date.fromisoformat(pt)
            text = hub.statement(h.meter_id, first, last) or ""
            try:
                st = statement_from_json(text)
            except FormatError as exc:
                out.append(BillRow(f"{pf} to {pt}", "-", "-", f"unreadable statement: {exc}", False))
                continue
            total = format_amount(st.total, st.subunits_per_unit, st.currency)
            label = f"{st.tariff_id} v{st.tariff_version}"
            if st.tariff_digest != h.tariff.digest():
                out.append(BillRow(f"{pf} to {pt}", total, label, f"not checked: the bill's tariff is not {h.tariff_label}", False))
                continue
            try:
                first_index, openings = hub.openings(h.meter_id, first, last)
                prices = h.tariff.period_prices(first, (last - first).days + 1, h.tz, h.interval_minutes)
                mine = bill_statement(meter_id=h.meter_id, tariff=h.tariff, period_from=first, period_to=last,
                                      first_index=first_index, prices=prices, openings=openings)
            except (HubError, TariffError, ValueError) as exc:
                out.append(BillRow(f"{pf} to {pt}", total, label, f"not checked: {exc}", False))
                continue
            fields = ("meter_id", "period_from", "period_to", "first_index", "count", "tariff_id", "tariff_version",
                      "currency", "subunits_per_unit", "energy_charge", "standing_charge", "total", "blinding")
            bad = [f for f in fields if getattr(st, f) != getattr(mine, f)]
            if bad:
                out.append(BillRow(f"{pf} to {pt}", total, label, "DOES NOT MATCH your readings: " + ", ".join(bad), False))
            else:
                out.append(BillRow(f"{pf} to {pt}", total, label,
                                   f"verified: recomputed from your {len(openings)} readings and the tariff", True))
    return out


@contextmanager
def _hub(h: Household) -> Iterator[Any]:
    """``hub.sqlite`` with the household's card attached: the card's storage vault opens
    the sealed records (docs/privacy.md, "Readings at rest"); the host holds no key."""
    from ..hub.secure_element import VaultClient, open_vault_card
    from ..hub.store import HubStore

    with h.lock:
        hub = HubStore(h.data_dir / "hub.sqlite")
        try:
            card = open_vault_card(h.card_path)
            try:
                with hub.attached(h.meter_id, VaultClient(card.transmit)):
                    yield hub
            finally:
                card.close()
        finally:
            hub.close()


@contextmanager
def _guard(h: Household) -> Iterator[Any]:
    from ..card.gp import open_card
    from ..card.guard import GUARD_AID
    from ..hub.secure_element import GuardClient

    with h.lock:
        card = open_card(str(h.card_path))
        try:
            if card.registry.get(GUARD_AID) is None:
                raise DashboardError(f"{h.card_path}: no privacy guard on this card")
            card.power_on()
            g = GuardClient(card.transmit)
            g.select()
            yield g
        finally:
            card.close()


@dataclass
class Privacy:
    entries: list[Any]
    verdict: str
    ok: bool
    policy: Any
    cell: tuple[date, date] | None
    budgets: dict[str, tuple[int, int]]
    consents: list[dict[str, Any]]
    learned: dict[int, str]


def _reduction_wh(rel: Any) -> float | None:
    """The released reduction in Wh for a CAISO release (``scaled / (1000 n)``,
    :func:`meterhub.dr.release.reduction_coefficients`); a PJM release's denominator
    depends on the event's window lengths (:func:`meterhub.dr.event.pjm_coefficients`),
    so it is shown on the utility's side only."""
    from ..dr.event import METHOD_CAISO

    if rel.method != METHOD_CAISO:
        return None
    return float(rel.scaled_reduction / (1000 * rel.n_days))


def _learned(kind: str, raw: bytes) -> str:
    """What the recipient learned from one release (docs/privacy.md, per kind)."""
    import json

    from ..dr.release import DRRelease

    try:
        if kind == "dr":
            wh = _reduction_wh(DRRelease.from_bytes(raw))
            if wh is None:
                return "a verified reduction in the event window (PJM baseline)"
            return f"a verified reduction of {wh / 1000:.2f} kWh in the event window"
        if kind == "settlement":
            d = json.loads(raw)
            return f"energy {d['energy_wh'] / 1000:,.3f} kWh and its market value for the period"
        if kind == "bill":
            return "the bill total for the period (one linear functional of the readings)"
    except (ValueError, KeyError, TypeError):
        return "(release not readable)"
    return {"scores": "profile scores (linear functionals)", "samples": "coin-tossed single readings",
            "aggregate": "a masked share of the group's hourly sums", "recovery": "masks for missing members",
            "suspects": "scores against suspect profiles", "export": "readings at the consented resolution",
            }.get(kind, "")


def privacy(h: Household) -> Privacy:
    """The release log (checked as ``meterhub hub releases --verify`` checks it), the
    policy in force, each recipient's budget used in the current period, the consents."""
    from ..policy import (
        AGGREGATE_KINDS,
        LogError,
        PolicyError,
        load_policy,
        verify_policy,
        verify_release_log,
    )
    from ..policy.consent import load_consent

    with _guard(h) as g:
        count, head = g.head()
        raws = g.raw_entries()
        customer = bytes.fromhex(str(g.pinned()["customer"]))
        policy = g.policy().policy
        policies: dict[int, Any] = {}
        consents: list[dict[str, Any]] = []
        learned: dict[int, str] = {}
        try:
            entries = verify_release_log(raws, head)
            for e in entries:
                if e.kind == "policy":
                    policies[e.policy_version] = verify_policy(load_policy(g.release(e.seq)), customer)
            verify_release_log(raws, head, policies=policies)
            verdict, ok = f"release log verified: {count} entries, chain head {head.hex()[:16]}..., budgets and entitlements checked", True
        except (LogError, PolicyError) as exc:
            verdict, ok = f"REJECTED release log: {exc}", False
            entries = []
        revoked = {e.consent for e in entries if e.kind == "revoke"}
        for e in entries:
            if e.kind == "consent":
                try:
                    c = load_consent(g.release(e.seq)).consent
                except PolicyError:
                    continue
                consents.append({"id": c.consent_id, "recipient": c.recipient, "purpose": c.purpose,
                                 "resolution": c.resolution_minutes, "from": c.period_from.isoformat(),
                                 "to": c.period_to.isoformat(), "expires": c.expires.isoformat(),
                                 "revoked": c.consent_id in revoked,
                                 "exports": sum(1 for x in entries if x.kind == "export" and x.consent == c.consent_id)})
            elif e.kind in ("settlement", "dr", "bill"):
                learned[e.seq] = _learned(e.kind, g.release(e.seq))
            elif e.kind not in ("policy", "revoke"):
                learned[e.seq] = _learned(e.kind, b"")
    held = _held_days(h)
    cell = policy.cycle.period_of(held[1]) if held else None
    budgets: dict[str, tuple[int, int]] = {}
    limit = policy.limit("budget", "functionals_per_period")
    from ..policy import RECIPIENTS

    for r in RECIPIENTS:
        budgets[r] = (0, limit)
    for e in entries:
        if e.kind in ("policy", "consent", "revoke", *AGGREGATE_KINDS) or cell is None:
            continue
        day = date.fromisoformat(e.period_from)
        if cell[0] <= day <= cell[1] and e.recipient in budgets:
            used, lim = budgets[e.recipient]
            budgets[e.recipient] = (used + e.functionals, lim)
    return Privacy(entries, verdict, ok, policy, cell, budgets, consents, learned)


def grant(h: Household, form: dict[str, str]) -> str:
    """Sign a consent with the customer's key and give it to the guard (ADD CONSENT)."""
    from ..policy import PolicyError
    from ..policy.consent import Consent, dump_consent, sign_consent

    try:
        consent = Consent(form.get("consent_id", ""), form.get("recipient", ""), form.get("purpose", ""),
                          int(form.get("resolution", "60") or 0), date.fromisoformat(form.get("period_from", "")),
                          date.fromisoformat(form.get("period_to", "")), date.fromisoformat(form.get("expires", "")))
    except (PolicyError, ValueError) as exc:
        raise DashboardError(str(exc).splitlines()[0] or "malformed consent") from None
    raw = dump_consent(sign_consent(consent, _customer_key(h)))
    _guarded(h, lambda g: g.add_consent(raw))
    return consent.consent_id


def revoke(h: Household, consent_id: str) -> None:
    """Sign a revocation with the customer's key and give it to the guard (REVOKE CONSENT)."""
    from ..policy import PolicyError
    from ..policy.consent import sign_revocation

    try:
        raw = sign_revocation(consent_id, _customer_key(h))
    except PolicyError as exc:
        raise DashboardError(str(exc)) from None
    _guarded(h, lambda g: g.revoke_consent(raw))


def _guarded(h: Household, action: Any) -> None:
    from ..hub.store import HubError

    with _guard(h) as g:
        try:
            action(g)
        except HubError as exc:
            raise DashboardError(str(exc)) from None


def _customer_key(h: Household) -> ecdsa.SigningKey:
    try:
        return ecdsa.load_signing_key(h.key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DashboardError(f"cannot load the customer key {h.key_path}: {exc}") from None


def demand_response(h: Household, released: dict[str, float]) -> tuple[list[dict[str, Any]], list[Chart]]:
    """The events the hub's VEN received (``dr.sqlite``), the household's answer, the
    verified reduction its card released, and its own consumption in the event window
    against the mean of the event's baseline days (computed here, at full resolution)."""
    from ..dr.event import EventError, event_windows
    from ..hub.store import HubError

    path = h.data_dir / "dr.sqlite"
    if not path.is_file():
        return [], []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        from ..dr.event import DREvent

        events = [DREvent.from_bytes(bytes(r[0])) for r in conn.execute("SELECT record FROM events ORDER BY event_id")]
        opts = dict(conn.execute("SELECT event_id, opt FROM opts WHERE meter_id=?", (h.meter_id,)).fetchall())
    finally:
        conn.close()
    rows: list[dict[str, Any]] = []
    charts: list[Chart] = []
    zone = ZoneInfo(h.tz)
    for ev in events:
        if not ev.targets_meter(h.meter_id):
            continue
        row: dict[str, Any] = {
            "id": ev.event_id, "program": ev.program, "signal": ev.signal,
            "start": ev.start.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "end": ev.end.astimezone(zone).strftime("%H:%M"), "opt": opts.get(ev.event_id, "no answer"),
            "released": f"{released[ev.event_id] / 1000:.2f} kWh" if ev.event_id in released else "none",
            "own": "-",
        }
        try:
            day, window, _ = event_windows(ev, h.tz, h.interval_minutes)
            base_days = sorted(ev.baseline_days)
            starts, wh_day, _ = _readings(h, day, day)
            base = []
            for b in base_days:
                base.append(_readings(h, b, b)[1])
        except (EventError, HubError) as exc:
            row["own"] = f"not available: {exc}"
            rows.append(row)
            continue
        mean = [sum(d[i] for d in base) / len(base) for i in range(len(wh_day))] if base else [0.0] * len(wh_day)
        ev_wh, base_wh = sum(wh_day[i] for i in window), sum(mean[i] for i in window)
        row["own"] = f"{ev_wh / 1000:.2f} kWh against {base_wh / 1000:.2f} kWh on {len(base)} baseline days"
        rows.append(row)
        xs = [t.astimezone(zone).strftime("%H:%M") for t in starts]
        in_win = {xs[i] for i in window}
        charts.append(Chart(
            f"dr-{len(charts)}", f"Event {ev.event_id}: your consumption on {day} against your baseline-day mean",
            [{"type": "scatter", "mode": "lines+markers", "name": f"{day} (event day)", "x": xs, "y": wh_day},
             {"type": "scatter", "mode": "lines+markers", "name": "baseline-day mean", "x": xs, "y": [round(v, 1) for v in mean],
              "line": {"dash": "dot"}}],
            ["Time (local)", "Event day Wh", "Baseline mean Wh", "In event window"],
            [[x, f"{a:,}", f"{b:,.1f}", "yes" if x in in_win else ""] for x, a, b in zip(xs, wh_day, mean, strict=True)],
            {"yaxis": {"title": {"text": f"Wh per {h.interval_minutes} min"}}, "xaxis": {"type": "category"},
             "shapes": [{"type": "rect", "xref": "x", "yref": "paper", "x0": window[0] - 0.5, "x1": window[-1] + 0.5,
                         "y0": 0, "y1": 1, "fillcolor": "#E69F00", "opacity": 0.15, "line": {"width": 0}}]},
        ))
    return rows, charts


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
                from ..dr.release import DRRelease

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
