"""What the customer's dashboard shows: consumption from ``hub.sqlite``, bills, the
guard's release log and consents (docs/privacy.md, "Consents"), demand-response
releases (:mod:`meterhub.web.customer`; docs/dashboards.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ...crypto import ecdsa
from ...model.display import format_amount
from ...tariffs import TariffError
from ..common import Chart, NoData
from .household import DashboardError, Household


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
    from ...model.billing.bands import band_indices
    from ...model.timebase import range_starts

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
    from ...hub.store import HubError

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
    from ...hub.billing import bill_statement
    from ...hub.proving import statement_from_json
    from ...hub.store import HubError
    from ...model.errors import FormatError

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
    from ...hub.secure_element import VaultClient, open_vault_card
    from ...hub.store import HubStore

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
    from ...card.gp import open_card
    from ...card.guard import GUARD_AID
    from ...hub.secure_element import GuardClient

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
    from ...dr.event import METHOD_CAISO

    if rel.method != METHOD_CAISO:
        return None
    return float(rel.scaled_reduction / (1000 * rel.n_days))


def _learned(kind: str, raw: bytes) -> str:
    """What the recipient learned from one release (docs/privacy.md, per kind)."""
    import json

    from ...dr.release import DRRelease

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
    from ...policy import (
        AGGREGATE_KINDS,
        LogError,
        PolicyError,
        load_policy,
        verify_policy,
        verify_release_log,
    )
    from ...policy.consent import load_consent

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
    from ...policy import RECIPIENTS

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
    from ...policy import PolicyError
    from ...policy.consent import Consent, dump_consent, sign_consent

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
    from ...policy import PolicyError
    from ...policy.consent import sign_revocation

    try:
        raw = sign_revocation(consent_id, _customer_key(h))
    except PolicyError as exc:
        raise DashboardError(str(exc)) from None
    _guarded(h, lambda g: g.revoke_consent(raw))


def _guarded(h: Household, action: Any) -> None:
    from ...hub.store import HubError

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
    from ...dr.event import EventError, event_windows
    from ...hub.store import HubError

    path = h.data_dir / "dr.sqlite"
    if not path.is_file():
        return [], []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        from ...dr.event import DREvent

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
