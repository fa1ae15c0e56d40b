"""The demand-response part of ``meterhub demo`` (issue 14).

:func:`prepare` runs before the meters record (events are announced ahead of time):

1. the DR program operator (the grid operator's role) plans events on the period's
   last eligible weekdays, 17:00-19:00 local time (a load shed, then a price event),
   each with its CAISO baseline days from the public event calendar, and signs them;
2. a real OpenADR 2.0b exchange over localhost (:mod:`meterhub.dr.openadr`): one VTN,
   one VEN per hub; each VEN checks the record's signature under the VTN key its
   customer pinned and opts in or out on its customer's rules; events, decisions and
   feeders are stored in ``dr.sqlite`` in one transaction (a resumed run reuses them
   and announces nothing again);
3. households that opted in respond (:mod:`meterhub.meter.flexibility`): the meter
   measures the responding series; the counterfactual stays with the simulator.

:func:`attach` runs for each hub before its meter records (the card is built by then):
the grid operator's TSM installs the DR applet (DAP-signed package, SCP03 level 33, its
security domain; the VTN key is the one pinned in the card's privacy guard), the host
pairs it and hands it each signed record with the customer's decision. Every step is
idempotent, so a resumed run repeats it.

:func:`run`, after the period: each hub's host feeds the DR applet the days it needs,
the operator collects each opted-in customer's release over its SCP03 session and
verifies it against the meter-signed commitments; payments, verified totals per
feeder, the feeder peak with and without events, the baseline's error against the
counterfactual. ``dr.sqlite`` keeps events, opt responses and releases;
:func:`meterhub.utility.reverify.dr.verify_stored` re-verifies them (``meterhub utility dr``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..crypto import ecdsa
from ..dr.event import (
    METHOD_PJM,
    SIGNAL_LOAD_SHED,
    SIGNAL_PRICE,
    DREvent,
    EventError,
    event_windows,
    pjm_coefficients,
    pjm_excluded,
    sign_event,
    similar_days,
)
from ..dr.openadr import VEN, OptRules, run_exchange, self_signed
from ..dr.release import DRRelease
from ..hub.dr_host import DR_APP_AID, DRClient, dr_load_file
from ..hub.secure_element import (
    VaultClient,
    demo_dap_key,
    demo_scp03_keys,
    demo_vtn_key,
    open_hub_card,
)
from ..meter.flexibility import household_loads, respond
from ..meter.load import LoadTrace
from ..model.holidays import german_holidays
from ..model.timebase import local_midnight_utc
from ..utility.demand_response import VerifiedReduction, settle_event, verify_event
from ..utility.reverify.dr import DR_CLASS, DRStore
from ..utility.settlement import AppletMailbox, HubRefused, expected_code_hash
from ..utility.verifier import Rejected

__all__ = ["DRReport", "format_report", "prepare", "run"]

PROGRAM = "oadr://meterhub.example/dr/residential"
EVENT_HOUR, EVENT_MINUTES = 17, 120
PRICE = 50_000  # 1e-8 EUR per Wh reduced: 0.50 EUR/kWh
SHED_LEVEL = 2


def vtn_key() -> ecdsa.SigningKey:
    """The demo VTN's P-256 key (the customer pinned it at provisioning: :func:`demo_pinned`)."""
    return demo_vtn_key()


def feeder_of(n: int) -> str:
    """Demo grouping of customers into two feeders (round robin)."""
    return f"feeder-{1 + n % 2}"


def customer_rules(meter_id: str, seed: int) -> tuple[OptRules, float]:
    """Each customer's opt-in rules and how fully the household follows through."""
    h = hashlib.sha256(b"meterhub/v1/dr-customer\0" + seed.to_bytes(8, "big") + meter_id.encode()).digest()
    participate = h[0] < 192  # three in four take part
    min_price = PRICE if h[1] < 40 else 0  # some only for paid events
    return OptRules(participate=participate, min_price=min_price), 0.6 + 0.4 * h[2] / 255


def plan_events(start: date, days: int, tz: str, seed: int) -> list[DREvent]:
    """Up to two events on the period's last weekdays that have 10 similar days before."""
    last = start + timedelta(days=days - 1)
    holidays = set(german_holidays(start.year)) | set(german_holidays(last.year))
    chosen: list[date] = []
    d = last
    while d >= start and len(chosen) < 2:
        spaced = not chosen or (chosen[-1] - d).days >= 2
        if d.weekday() < 5 and d not in holidays and spaced and len(
            similar_days(d, set(chosen), holidays, tz, have_from=start)
        ) >= 10:
            chosen.append(d)
        d -= timedelta(days=1)
    chosen.reverse()
    events = []
    key = vtn_key()
    for k, day in enumerate(chosen):
        base = similar_days(day, set(chosen), holidays, tz, have_from=start)
        signal, level = (SIGNAL_LOAD_SHED, SHED_LEVEL) if k == 0 else (SIGNAL_PRICE, PRICE)
        ev = DREvent(
            f"dr-{day.isoformat()}-{seed}", 0, PROGRAM,
            local_midnight_utc(day, tz) - timedelta(hours=7),  # announced the evening before
            local_midnight_utc(day, tz) + timedelta(hours=EVENT_HOUR), EVENT_MINUTES, signal, level, PRICE,
            ("*",), tuple(base),
        )
        events.append(sign_event(ev, key))
    return events


def _card(d: Path, meter_id: str, supplier: str) -> Any:
    return open_hub_card(d / "hubs" / f"{meter_id}.sqlite", issuer_keys=demo_scp03_keys("issuer"),
                         supplier_keys=demo_scp03_keys(supplier), supplier_dap=demo_dap_key(supplier).public_key())


def _windows(trace: LoadTrace, events: list[DREvent]) -> list[tuple[int, int]]:
    days = {day: first for day, first, _ in trace.days()}
    out = []
    for ev in events:
        day, pos, _ = event_windows(ev, trace.tz, trace.interval_minutes)
        if day in days:
            out.append((days[day] + pos[0], days[day] + pos[-1] + 1))
    return out


def respond_all(traces: list[LoadTrace], events: list[DREvent], opts: dict[tuple[str, str], str], seed: int
                ) -> list[tuple[LoadTrace, list[int]]]:
    """Each trace with the household's response to the events it opted into, and its
    counterfactual readings."""
    out = []
    for t in traces:
        mine = [e for e in events if opts.get((t.household_id, e.event_id)) == "optIn"]
        _, compliance = customer_rules(t.household_id, seed)
        r = respond(t.readings_wh, _windows(t, mine), t.interval_minutes, household_loads(t.household_id, seed),
                    base_wh=t.base_load_wh, compliance=compliance)
        out.append((replace(t, readings_wh=r.readings_wh), r.counterfactual_wh))
    return out


def measured(params: Any, traces: list[LoadTrace]) -> list[LoadTrace]:
    """The traces as the meters measured them in a finished run (the simulator's traces
    with each opted-in household's response), for parts that re-simulate the truth."""
    store = _plan(Path(params.data_dir))
    if store is None:
        return traces
    try:
        return [t for t, _ in respond_all(traces, store.events(), store.opts(), params.seed)]
    finally:
        store.close()


#: The households' responses computed by :func:`prepare`, for :func:`run` in the same
#: process (a deterministic function of the parameters and the stored plan, so a resumed
#: run in a new process simply computes them again): saves simulating the neighbourhood
#: a second time.
_PAIRS: dict[tuple[Any, ...], list[tuple[LoadTrace, list[int]]]] = {}


def _pairs_key(params: Any) -> tuple[Any, ...]:
    return (str(Path(params.data_dir).resolve()), params.households, params.start, params.days,
            params.interval_minutes, params.seed, params.business_share)


def _plan(d: Path) -> DRStore | None:
    """The stored plan, or None when none was stored completely."""
    if not (d / "dr.sqlite").exists():
        return None
    store = DRStore(d / "dr.sqlite")
    if store.planned():
        return store
    store.close()
    return None


def prepare(params: Any, traces: list[LoadTrace]) -> list[LoadTrace]:
    """Steps 1-3 of the module docstring; returns the traces the meters measure."""
    d = Path(params.data_dir)
    d.mkdir(parents=True, exist_ok=True)
    stored = _plan(d)
    if stored is not None:
        # A resumed run: the events were announced and answered before the period began.
        try:
            pairs = respond_all(traces, stored.events(), stored.opts(), params.seed)
        finally:
            stored.close()
        _PAIRS[_pairs_key(params)] = pairs
        return [t for t, _ in pairs]
    tz = traces[0].tz if traces else "Europe/Berlin"
    events = plan_events(params.start, params.days, tz, params.seed)
    if not events:
        return traces
    pinned = ecdsa.public_bytes(vtn_key())  # the key each customer pinned (demo_pinned)

    def deliver(ev: DREvent, raw: bytes, opt_in: bool) -> bool:
        # The VEN's host accepts only records under the pinned key; the card checks again (attach).
        return DREvent.from_bytes(raw).verify(pinned)

    vens = [VEN(t.household_id, customer_rules(t.household_id, params.seed)[0], deliver) for t in traces]
    opts = run_exchange(self_signed("meterhub VTN", vtn_key()), [(e, [t.household_id for t in traces]) for e in events],
                        vens, timeout=30.0)
    store = DRStore(d / "dr.sqlite")
    try:
        store.save_plan(events, opts, {t.household_id: feeder_of(n) for n, t in enumerate(traces)})
    finally:
        store.close()
    pairs = respond_all(traces, events, opts, params.seed)
    _PAIRS[_pairs_key(params)] = pairs
    return [t for t, _ in pairs]


def attach(card: Any, params: Any, meter_id: str, tz: str, interval_minutes: int) -> None:
    """Install and pair the DR applet on a hub's card and hand it the signed events with
    the customer's decisions (module docstring); nothing without a stored plan."""
    from .settlement import _tsm

    store = _plan(Path(params.data_dir))
    if store is None:
        return
    try:
        events, opts = store.events(), store.opts()
    finally:
        store.close()
    if not events:
        return
    if card.registry.get(DR_APP_AID) is None:
        with _tsm(card, "grid-operator") as tsm:
            tsm.deploy(dr_load_file(), DR_APP_AID)  # the VTN key: the customer's pinned one
    client = DRClient(card.transmit)
    client.select()
    client.pair(meter_id, tz, interval_minutes)
    for ev in events:
        decision = opts.get((meter_id, ev.event_id))
        if decision is not None:
            client.put_event(ev.event_id, ev.to_bytes(), decision == "optIn")


# ---------------------------------------------------------------- after the period


@dataclass
class CustomerRow:
    meter_id: str
    feeder: str
    event_id: str
    opted_in: bool
    verified_wh: float | None
    true_wh: float
    baseline_wh: float | None
    counterfactual_wh: float
    payment_eur: float
    reason: str = ""


@dataclass
class EventRow:
    event_id: str
    signal: str
    start: str
    sent: int  # VENs the VTN sent the event to
    answered: int  # oadrCreatedEvent answers the VTN received (optIn or optOut)
    opt_ins: int
    verified_total_wh: float
    true_total_wh: float
    per_feeder_wh: dict[str, float]
    payments_eur: float
    feeder_peak_kw_with: dict[str, float]  # highest 15-minute feeder load inside the event window
    feeder_peak_kw_without: dict[str, float]  # the same without the events (counterfactual)
    feeder_day_peak_kw_with: dict[str, float]  # over the whole event day (the rebound shows here)
    feeder_day_peak_kw_without: dict[str, float]


@dataclass
class DRReport:
    events: list[EventRow] = field(default_factory=list)
    customers: list[CustomerRow] = field(default_factory=list)
    verified: int = 0
    rejected: list[str] = field(default_factory=list)
    baseline_mae_pct: float = 0.0
    baseline_bias_pct: float = 0.0
    # PJM High 4 of 5 with the symmetric additive adjustment on the same customers and
    # events, computed from the measured readings for comparison (not released)
    pjm_mae_pct: float = 0.0
    pjm_bias_pct: float = 0.0

    @property
    def all_verified(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["all_verified"] = self.all_verified
        return out


def _collect(card: Any, event_id: str) -> bytes:
    from .settlement import _tsm

    with _tsm(card, "grid-operator") as tsm:
        return AppletMailbox(tsm, DR_APP_AID).request(b"\x02" + event_id.encode(), f"DR release {event_id}")


def run(params: Any) -> DRReport:
    """Feed, collect, verify, settle and compare (module docstring)."""
    from ..hub.store import HubStore
    from ..meter.load import simulate_neighbourhood
    from ..utility.store import UtilityStore
    from .settlement import supplier_of

    d = Path(params.data_dir)
    report = DRReport()
    store = _plan(d)
    if store is None:
        return report
    hub, utility = HubStore(d / "hub.sqlite"), UtilityStore(d / "utility.sqlite")
    try:
        events, opts, feeders = store.events(), store.opts(), store.feeders()
        if not events:
            return report
        pairs = _PAIRS.get(_pairs_key(params)) or respond_all(
            simulate_neighbourhood(params.households, params.start, params.days,
                                   interval_minutes=params.interval_minutes, seed=params.seed,
                                   business_share=params.business_share), events, opts, params.seed)
        pair_of = {t.household_id: t for t, _ in pairs}
        first_needed = min(min(e.baseline_days) for e in events)
        # Days after the last event day are not needed by any release (PUT DAY needs
        # consecutive days, so from the first baseline day on).
        last = min(params.start + timedelta(days=params.days - 1),
                   max(event_windows(e, pairs[0][0].tz, pairs[0][0].interval_minutes)[0] for e in events))
        code_hash = bytes.fromhex(expected_code_hash(DR_CLASS))
        verified: dict[str, list[VerifiedReduction]] = {e.event_id: [] for e in events}
        # One event's releases are verified together (range proofs in one batch).
        collected: dict[str, list[tuple[CustomerRow, DRRelease, Any, Any]]] = {e.event_id: [] for e in events}
        for n, (t, cf) in enumerate(pairs):
            mid = t.household_id
            card = _card(d, mid, supplier_of(n))
            try:
                client = DRClient(card.transmit)
                client.select()
                day = first_needed
                with hub.attached(mid, VaultClient(card.transmit)):  # the card opens its records
                    while day <= last:
                        first, openings = hub.openings(mid, day, day)
                        client.put_openings(day, first, openings)
                        day += timedelta(days=1)
                windows = dict(zip([e.event_id for e in events], _windows(t, events), strict=True))
                for ev in events:
                    a, b = windows[ev.event_id]
                    opted = opts.get((mid, ev.event_id)) == "optIn"
                    row = CustomerRow(mid, feeders.get(mid, "unassigned"), ev.event_id, opted, None,
                                      float(sum(cf[a:b]) - sum(t.readings_wh[a:b])), None, float(sum(cf[a:b])), 0.0)
                    report.customers.append(row)
                    if not opted:
                        continue
                    try:
                        raw = _collect(card, ev.event_id)
                        store.save_release(mid, ev.event_id, raw)
                        collected[ev.event_id].append((row, DRRelease.from_bytes(raw), utility.registration(mid), {
                            dc.batch.batch.day: dc for dc in utility.day_commitments(mid, first_needed, last)}))
                    except (HubRefused, Rejected, EventError) as exc:
                        row.reason = str(exc)
                        report.rejected.append(f"{mid} {ev.event_id}: {exc}")
            finally:
                card.close()
        for ev in events:
            items = collected[ev.event_id]
            outcomes = verify_event([(rel, reg, days) for _, rel, reg, days in items], ev,
                                    code_hash=code_hash, app_aid=DR_APP_AID)
            for (row, _, _, _), v in zip(items, outcomes, strict=True):
                if isinstance(v, Rejected):
                    row.reason = str(v)
                    report.rejected.append(f"{row.meter_id} {ev.event_id}: {v}")
                    continue
                report.verified += 1
                verified[ev.event_id].append(v)
                a, b = dict(zip([e.event_id for e in events], _windows(pair_of[row.meter_id], events),
                                strict=True))[ev.event_id]
                row.verified_wh = float(v.reduction)
                row.baseline_wh = float(v.reduction + sum(pair_of[row.meter_id].readings_wh[a:b]))
                row.payment_eur = v.payment / 1e8
        _event_rows(report, events, pairs, verified, feeders, opts)
        errs = [(c.baseline_wh - c.counterfactual_wh, c.counterfactual_wh) for c in report.customers
                if c.baseline_wh is not None]
        total_cf = sum(cf for _, cf in errs) or 1.0
        report.baseline_mae_pct = 100 * sum(abs(e) for e, _ in errs) / total_cf
        report.baseline_bias_pct = 100 * sum(e for e, _ in errs) / total_cf
        pjm = _pjm_errors(params, report, events, pair_of)
        total_pjm = sum(cf for _, cf in pjm) or 1.0
        report.pjm_mae_pct = 100 * sum(abs(e) for e, _ in pjm) / total_pjm
        report.pjm_bias_pct = 100 * sum(e for e, _ in pjm) / total_pjm
        return report
    finally:
        store.close()
        hub.close()
        utility.close()


def _pjm_errors(params: Any, report: DRReport, events: list[DREvent], pair_of: dict[str, LoadTrace]
                ) -> list[tuple[float, float]]:
    """``(PJM baseline - counterfactual, counterfactual)`` over each verified customer's
    event window: PJM's CBL (:func:`meterhub.dr.event.pjm_coefficients`) on the measured
    readings, candidates by the same public calendar as the CAISO days."""
    last = params.start + timedelta(days=params.days - 1)
    holidays = set(german_holidays(params.start.year)) | set(german_holidays(last.year))
    by_id = {e.event_id: e for e in events}
    calendar = {_event_day(e, pair_of) for e in events}
    out = []
    for c in report.customers:
        if c.baseline_wh is None:
            continue
        t, ev = pair_of[c.meter_id], by_id[c.event_id]
        day, e_pos, w_pos = event_windows(ev, t.tz, t.interval_minutes)
        cands = similar_days(day, calendar, holidays, t.tz, have_from=params.start, method=METHOD_PJM)
        if len(cands) < 5:
            continue
        per_day = {d: t.readings_wh[first : first + n] for d, first, n in t.days()}
        usage = [sum(per_day[d][j] for j in e_pos) for d in cands]
        drop = pjm_excluded(usage, tuple(cands))
        sel = [d for k, d in enumerate(cands) if k != drop]
        kb, ka, kx, ke, den = pjm_coefficients(len(sel), len(e_pos), len(w_pos))
        s = (kb * sum(per_day[d][j] for d in sel for j in e_pos) + ka * sum(per_day[day][j] for j in w_pos)
             + kx * sum(per_day[d][j] for d in sel for j in w_pos) + ke * sum(per_day[day][j] for j in e_pos))
        baseline = s / den + sum(per_day[day][j] for j in e_pos)
        out.append((baseline - c.counterfactual_wh, c.counterfactual_wh))
    return out


def _event_day(ev: DREvent, pair_of: dict[str, LoadTrace]) -> date:
    """The local event day (the public event calendar) in the traces' time zone."""
    t = next(iter(pair_of.values()))
    return event_windows(ev, t.tz, t.interval_minutes)[0]


def _event_rows(report: DRReport, events: list[DREvent], pairs: list[tuple[LoadTrace, list[int]]],
                verified: dict[str, list[VerifiedReduction]], feeders: dict[str, str],
                opts: dict[tuple[str, str], str]) -> None:
    for ev in events:
        st = settle_event(ev.event_id, verified[ev.event_id], feeders)
        peaks: list[dict[str, float]] = [{}, {}, {}, {}]
        t0 = pairs[0][0]
        day, e_pos, _ = event_windows(ev, t0.tz, t0.interval_minutes)
        kw = 60 / t0.interval_minutes / 1000
        for f in sorted(set(feeders.values())):
            members = [(t, cf) for t, cf in pairs if feeders.get(t.household_id) == f]
            if not members:
                continue
            first, count = next((fi, c) for dd, fi, c in members[0][0].days() if dd == day)
            with_ = [sum(t.readings_wh[first + k] for t, _ in members) for k in range(count)]
            without = [sum(cf[first + k] for _, cf in members) for k in range(count)]
            peaks[0][f] = kw * max(with_[j] for j in e_pos)
            peaks[1][f] = kw * max(without[j] for j in e_pos)
            peaks[2][f] = kw * max(with_)
            peaks[3][f] = kw * max(without)
        rows = [c for c in report.customers if c.event_id == ev.event_id]
        report.events.append(EventRow(
            ev.event_id, "load shed" if ev.signal == SIGNAL_LOAD_SHED else "price", ev.start.isoformat(),
            len(pairs), sum(1 for (_, e) in opts if e == ev.event_id), sum(1 for c in rows if c.opted_in),
            float(st.total_wh), sum(c.true_wh for c in rows if c.opted_in), st.per_feeder_wh, st.payments / 1e8,
            *peaks,
        ))


def format_report(r: DRReport) -> str:
    if not r.events:
        return "Demand response: no event day with 10 similar days in the period (needs --days >= 20)"
    lines = ["Demand response over OpenADR 2.0b (CAISO 10-in-10 baseline, day-of adjustment capped at ±20%)"]
    lines.append(f"{'event':<22} {'signal':<9} {'sent':>4} {'opt-in':>6} {'verified kWh':>12} {'true kWh':>9} "
                 f"{'paid EUR':>9}  feeder peak kW with/without events: in the window; whole day")
    for e in r.events:
        peaks = ", ".join(f"{f} {e.feeder_peak_kw_with[f]:.1f}/{e.feeder_peak_kw_without[f]:.1f}; "
                          f"{e.feeder_day_peak_kw_with[f]:.1f}/{e.feeder_day_peak_kw_without[f]:.1f}"
                          for f in sorted(e.feeder_peak_kw_with))
        lines.append(f"{e.event_id:<22} {e.signal:<9} {e.sent:>4} {e.opt_ins:>6} {e.verified_total_wh / 1000:>12.2f} "
                     f"{e.true_total_wh / 1000:>9.2f} {e.payments_eur:>9.2f}  {peaks}")
        lines.append("  verified kWh per feeder: " + ", ".join(
            f"{f} {w / 1000:.2f}" for f, w in sorted(e.per_feeder_wh.items())))
    per: dict[str, tuple[float, float]] = {}
    for c in r.customers:
        if c.verified_wh is not None:
            w, p = per.get(c.meter_id, (0.0, 0.0))
            per[c.meter_id] = (w + c.verified_wh, p + c.payment_eur)
    lines.append("verified reduction per customer (kWh, EUR): " + ", ".join(
        f"{m} {w / 1000:.2f}/{p:.2f}" for m, (w, p) in sorted(per.items())))
    lines.append(f"baseline vs simulated counterfactual over the event windows: MAE {r.baseline_mae_pct:.1f}%, "
                 f"bias {r.baseline_bias_pct:+.1f}%; PJM High 4 of 5 on the same windows (not released): "
                 f"MAE {r.pjm_mae_pct:.1f}%, bias {r.pjm_bias_pct:+.1f}%")
    lines.append(f"{r.verified} releases verified, {len(r.rejected)} rejected")
    return "\n".join(lines)
