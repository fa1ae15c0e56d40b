"""The settlement and forecasting part of ``meterhub demo`` (issue 6).

While the demo records each household's days, :func:`attach` installs on its hub
(through the TSMs, DAP-signed packages, SCP03 level 33) the settlement applet under
the supplier's security domain and the profiling applet under the grid operator's,
pushes the signed price index and the signed reference profiles, pairs both applets
and, before the period begins, runs the first half of the sampling coin toss (the
grid operator's commitment, the hub's nonce). :class:`HubApplets` then feeds both
applets each day's openings.

:func:`run` afterwards collects every output through the recipients' secure
channels, verifies it against the meter-signed commitments in the utility's store,
and compares with today's practice and with the simulator's ground truth:

* settlement per supplier (three by default, customers assigned round robin):
  meterhub's verified sums, the standard-load-profile estimate (annual consumption
  times the customer's BDEW profile, demandlib; the customer's true class, so the
  estimate is at its best), and the truth from the raw readings;
* classification of each customer from (a) samples only, (b) exact matching;
* forecasts of the next period's load per supplier (MAPE against the simulated
  truth) for the SLP method, sampling and exact matching, with the number of
  fine-grained readings each method released.

:func:`meterhub.utility.reverify.settlement.settle_stored` and ``forecast_stored``
re-verify what the demo stored (``meterhub utility settle`` / ``forecast``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..crypto import ecdsa
from ..crypto.sampling import DEFAULT_K, commit_nonce, new_nonce
from ..hub.secure_element import (
    BILLING_APP_AID,
    PROFILING_APP_AID,
    RECIPIENT_SDS,
    SETTLEMENT_APP_AID,
    SUPPLIER_SD_AID,
    ReadingsClient,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
    profiling_load_file,
    settlement_load_file,
)
from ..model.timebase import range_starts
from ..storage.sqlite import StoreError
from ..tariffs.price_index import (
    KIND_PRICE_INDEX,
    Series,
    SignedSeries,
    demo_index_publisher_key,
    example_price_index,
    index_from_csv,
    sign_series,
    verify_series,
)
from ..tariffs.profiles import bdew_profile, demo_profile_key, reference_profiles, utility_profile
from ..utility.forecasting import (
    ProfileScores,
    SampleRelease,
    classify,
    forecast,
    mape,
    match_samples,
    match_scores,
    period_weights,
    verify_samples,
    verify_scores,
)
from ..utility.reverify.settlement import PROFILING_CLASS, SETTLEMENT_CLASS, class_name
from ..utility.settlement import (
    AppletMailbox,
    HubRefused,
    SettlementStatement,
    SettlementStore,
    aggregate,
    expected_code_hash,
    settlement_request,
    verify_settlement,
)
from ..utility.tsm import TSM, TSMError, dap_signer

__all__ = [
    "SUPPLIERS",
    "HubApplets",
    "SettlementReport",
    "attach",
    "format_report",
    "run",
]

SUPPLIERS: tuple[str, ...] = ("supplier-a", "supplier-b", "supplier-c")
GRID_SD_AID = RECIPIENT_SDS["grid-operator"]


def _period(params: Any) -> tuple[date, date]:
    return params.start, params.start + timedelta(days=params.days - 1)


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


@lru_cache(maxsize=4)
def demo_index(start: date, days: int, interval: int, seed: int, csv: str | None = None) -> SignedSeries:
    """The demo's signed price index over the period: the example day-ahead curve
    (15-minute values where they fit), or the prices of a CSV file (``start,EUR/MWh``)."""
    if csv is not None:
        series = index_from_csv(Path(csv).read_text(), series_id="csv-day-ahead", version=1, publisher="csv-import")
    else:
        step = 15 if 15 % interval == 0 else interval
        series = example_price_index(start, days, interval_minutes=step, seed=seed)
    return sign_series(series, demo_index_publisher_key())


def _index_for(params: Any, interval: int) -> SignedSeries:
    csv = getattr(params, "price_index_csv", None)
    return demo_index(params.start, params.days, interval, params.seed, None if csv is None else str(csv))


def check_index_csv(params: Any) -> None:
    """Raise ``ValueError`` unless the CSV index prices every interval of the demo period."""
    tz = "Europe/Berlin"
    s = _index_for(params, params.interval_minutes).series
    s.values_for(range_starts(params.start, params.days, tz, params.interval_minutes), params.interval_minutes)


@lru_cache(maxsize=4)
def demo_profiles(start: date, days: int) -> tuple[SignedSeries, ...]:
    return tuple(reference_profiles(start, days))


def supplier_of(n: int) -> str:
    """The supplier of the demo's n-th customer (round robin)."""
    return SUPPLIERS[n % len(SUPPLIERS)]


def _tsm(card: Any, party: str) -> TSM:
    """A TSM session of ``party``: a supplier name ("supplier-a", ...) reaches the hub's
    supplier security domain with that supplier's own keys; "grid-operator" and
    "third-party" reach theirs."""
    sd = SUPPLIER_SD_AID if party.startswith("supplier") else RECIPIENT_SDS[party]
    return TSM(card.transmit, demo_scp03_keys(party), sd_aid=sd, dap=dap_signer(sd, demo_dap_key(party)))


class HubApplets:
    """The hub host feeding the settlement and profiling applets (plain channel)."""

    def __init__(self, card: Any) -> None:
        self.card = card
        self.clients = [ReadingsClient(card.transmit, SETTLEMENT_APP_AID), ReadingsClient(card.transmit, PROFILING_APP_AID)]

    def feed(self, hub: Any, meter_id: str, day: date) -> None:
        first, openings = hub.openings(meter_id, day, day)
        for c in self.clients:
            c.select()
            c.put_openings(day, first, openings)
        ReadingsClient(self.card.transmit, BILLING_APP_AID).select()  # back to the billing applet


def install(card: Any, params: Any, supplier: str) -> None:
    """Install the settlement applet (the supplier's TSM, with the price index) and the
    profiling applet (the grid operator's, with the reference profiles) unless present."""
    index = _index_for(params, params.interval_minutes)
    profiles = demo_profiles(params.start, params.days)
    if card.registry.get(SETTLEMENT_APP_AID) is None:
        with _tsm(card, supplier) as tsm:
            tsm.deploy(settlement_load_file(), SETTLEMENT_APP_AID, params=ecdsa.public_bytes(demo_index_publisher_key()))
            AppletMailbox(tsm, SETTLEMENT_APP_AID).push_series(index)
    if card.registry.get(PROFILING_APP_AID) is None:
        with _tsm(card, "grid-operator") as tsm:
            tsm.deploy(profiling_load_file(), PROFILING_APP_AID, params=ecdsa.public_bytes(demo_profile_key()))
            mb = AppletMailbox(tsm, PROFILING_APP_AID)
            for p in profiles:
                mb.push_series(p)


def attach(
    card: Any, params: Any, meter_id: str, tz: str, interval: int, supplier: str, *, rng: Any = None
) -> HubApplets:
    """Install (once), pair and commit the coin toss for one hub; see the module docstring.

    ``rng``: the demo's seeded source (``utility_nonce(meter_id, first, last)``);
    ``None`` draws the utility's nonce from ``secrets``.
    """
    first, last = _period(params)
    store = SettlementStore(Path(params.data_dir) / "settlement.sqlite")
    try:
        index = _index_for(params, interval)
        profiles = demo_profiles(params.start, params.days)
        store.add_series_once([index, *profiles])  # one transaction
        install(card, params, supplier)
        for aid in (SETTLEMENT_APP_AID, PROFILING_APP_AID):
            rc = ReadingsClient(card.transmit, aid)
            rc.select()
            rc.pair(meter_id, tz, interval)
        coin = store.coin(meter_id, first, last)
        if coin is None:
            # Step 1 of the coin toss, before the period. The utility's side is recorded
            # before it is sent (write-ahead), so a run killed after sending sends the
            # same commitment again, which the applet answers with the same nonce.
            nonce = new_nonce() if rng is None else rng.utility_nonce(meter_id, first, last)
            c = commit_nonce(meter_id, first, last, DEFAULT_K, nonce)
            store.put_coin(meter_id, first, last, DEFAULT_K, nonce, c)
            coin = store.coin(meter_id, first, last)
            assert coin is not None
        if coin[3] is None:
            with _tsm(card, "grid-operator") as tsm:
                try:
                    hub_nonce = AppletMailbox(tsm, PROFILING_APP_AID).send(
                        b"\x10" + _day(first) + _day(last) + coin[0].to_bytes(2, "big") + coin[2],
                        "sampling commitment",
                    )
                except HubRefused:
                    hub_nonce = b""  # period already begun: no sampling for this meter (recorded)
            store.set_hub_nonce(meter_id, first, last, hub_nonce)
        ReadingsClient(card.transmit, BILLING_APP_AID).select()
    finally:
        store.close()
    return HubApplets(card)


# ---------------------------------------------------------------- the report


@dataclass
class SupplierRow:
    supplier: str
    customers: int
    kwh_meterhub: float
    kwh_slp: float
    kwh_truth: float
    value_meterhub: int  # index sub-units (1e-8 EUR)
    value_slp: float
    value_truth: int
    share_meterhub: float
    share_slp: float
    share_truth: float


@dataclass
class CustomerRow:
    meter_id: str
    supplier: str
    true_class: str
    samples: int
    class_samples: str
    class_exact: str
    r_exact: float


@dataclass
class ForecastRow:
    supplier: str
    mape_slp: float
    mape_samples: float
    mape_exact: float


@dataclass
class SettlementReport:
    period_from: str
    period_to: str
    index: str
    currency: str
    scale: int
    verified: int
    rejected: list[str] = field(default_factory=list)
    suppliers: list[SupplierRow] = field(default_factory=list)
    customers: list[CustomerRow] = field(default_factory=list)
    accuracy_samples: float = 0.0
    accuracy_exact: float = 0.0
    forecast_from: str = ""
    forecast_to: str = ""
    forecasts: list[ForecastRow] = field(default_factory=list)
    readings_released: dict[str, int] = field(default_factory=dict)

    @property
    def all_verified(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["all_verified"] = self.all_verified
        return d


def _shape(name: str, start: date, days: int) -> list[int]:
    s = utility_profile(name, start, days) if name == "u-night" else bdew_profile(name, start, days)
    return list(s.values)


def _hourly(readings: Sequence[float], g: int) -> list[float]:
    return [sum(readings[k : k + g]) for k in range(0, len(readings), g)]


def _collect(d: Path, store: SettlementStore, mid: str, first: date, last: date, index: Series,
             profiles: dict[str, Series], supplier: str) -> tuple[bytes, bytes | None, bytes, Any]:
    """Each recipient fetches its outputs through its own SD's secure channel."""
    path = d / "hubs" / f"{mid}.sqlite"
    if not path.exists() or path.stat().st_size == 0:
        raise StoreError(f"{path}: hub card missing or empty; the data directory cannot be trusted")
    card = open_hub_card(
        path,
        issuer_keys=demo_scp03_keys("issuer"),
        supplier_keys=demo_scp03_keys(supplier),
        supplier_dap=demo_dap_key(supplier).public_key(),
    )
    try:
        with _tsm(card, supplier) as tsm:
            raw_st = AppletMailbox(tsm, SETTLEMENT_APP_AID).request(
                settlement_request(first, last, index.series_id, index.version), f"settlement of {mid}"
            )
        coin = store.coin(mid, first, last)
        if coin is None or coin[3] is None:
            # attach() records every coin toss, refused ones included, before the period.
            raise StoreError(f"{d / 'settlement.sqlite'}: no coin-toss record for {mid}; the store was damaged")
        with _tsm(card, "grid-operator") as tsm:
            mb = AppletMailbox(tsm, PROFILING_APP_AID)
            raw_samples = (
                mb.request(b"\x11" + _day(first) + _day(last) + coin[1], f"samples of {mid}") if coin[3] else None
            )
            raw_scores = mb.request(
                b"\x20" + _day(first) + _day(last) + ",".join(profiles).encode(), f"profile scores of {mid}"
            )
    finally:
        card.close()
    return raw_st, raw_samples, raw_scores, coin


def run(params: Any) -> SettlementReport:
    """Collect, verify and compare (module docstring). Needs a finished demo run in
    ``params.data_dir``."""
    from ..meter.load import bdew_profile_wh, simulate_neighbourhood
    from ..utility.store import UtilityStore

    first, last = _period(params)
    interval = params.interval_minutes
    share = getattr(params, "business_share", 0.0)
    traces = simulate_neighbourhood(
        params.households, params.start, params.days, interval_minutes=interval, seed=params.seed, business_share=share
    )
    from .dr import measured

    traces = measured(params, traces)  # what the meters measured: demand response (issue 14)
    index_signed = _index_for(params, interval)
    index = verify_series(index_signed, demo_index_publisher_key(), kind=KIND_PRICE_INDEX)
    profiles = {p.series.series_id: verify_series(p, demo_profile_key()) for p in demo_profiles(params.start, params.days)}
    d = Path(params.data_dir)
    utility = UtilityStore(d / "utility.sqlite")
    store = SettlementStore(d / "settlement.sqlite")
    report = SettlementReport(
        first.isoformat(), last.isoformat(), f"{index.series_id} v{index.version}", "EUR", index.scale, 0
    )
    ch_settle, ch_prof = expected_code_hash(SETTLEMENT_CLASS), expected_code_hash(PROFILING_CLASS)
    g = 60 // interval if interval <= 60 else 1
    point_starts = range_starts(first, params.days, traces[0].tz if traces else "Europe/Berlin", 60)
    weights = period_weights(profiles, point_starts)
    rows_exact: list[tuple[str, int, int]] = []
    slp: dict[str, list[float]] = {}
    truth: dict[str, list[int]] = {}
    cust: list[CustomerRow] = []
    energies: dict[str, int] = {}
    released = 0
    try:
        for n, trace in enumerate(traces):
            mid = trace.household_id
            supplier = supplier_of(n)
            store.set_customer(mid, supplier, trace.profile, trace.annual_kwh)
            try:
                raw_st, raw_samples, raw_scores, coin = _collect(d, store, mid, first, last, index, profiles, supplier)
            except (HubRefused, TSMError) as exc:
                report.rejected.append(f"{mid}: no output from the hub ({exc})")
                continue
            store.put_statement("settlement", mid, first, last, raw_st)
            store.put_statement("scores", mid, first, last, raw_scores)
            if raw_samples is not None:
                store.put_statement("samples", mid, first, last, raw_samples)
            reg = utility.registration(mid)
            days = utility.day_commitments(mid, first, last)
            st = SettlementStatement.from_json(raw_st)
            v = verify_settlement(st, reg, days, index, code_hash=ch_settle, applet_aid=SETTLEMENT_APP_AID)
            if not v.ok:
                report.rejected.append(f"{mid} settlement: {v.reason}")
                continue
            sc = ProfileScores.from_json(raw_scores)
            v2 = verify_scores(sc, reg, days, profiles, code_hash=ch_prof, applet_aid=PROFILING_APP_AID)
            if not v2.ok:
                report.rejected.append(f"{mid} profile scores: {v2.reason}")
                continue
            class_samples, n_samples = "-", 0
            if raw_samples is not None and coin[3]:
                rel = SampleRelease.from_json(raw_samples)
                v3 = verify_samples(
                    rel, reg, days, commitment=coin[2], utility_nonce=coin[1], hub_commitment=coin[3], k=coin[0],
                    code_hash=ch_prof, applet_aid=PROFILING_APP_AID,
                )
                if not v3.ok:
                    report.rejected.append(f"{mid} samples: {v3.reason}")
                    continue
                n_samples = len(rel.samples)
                released += n_samples
                class_samples = class_name(
                    classify(match_samples([(s.index - rel.first_index, s.m) for s in rel.samples], weights, g))
                )
            report.verified += 1
            matches = match_scores(sc, weights)
            best = classify(matches)
            cust.append(
                CustomerRow(mid, supplier, trace.profile, n_samples, class_samples, class_name(best),
                            round(max(m.r for m in matches), 4))
            )
            energies[mid] = st.energy_wh
            rows_exact.append((supplier, st.energy_wh, st.value))
            # Today's method: annual consumption x BDEW profile of the customer's class.
            est = bdew_profile_wh(params.start, params.days, annual_kwh=trace.annual_kwh, profile=trace.profile,
                                  interval_minutes=interval, tz=trace.tz)
            prices = index.values_for(trace.starts, interval)
            s = slp.setdefault(supplier, [0.0, 0.0])
            s[0] += sum(est)
            s[1] += sum(p * e for p, e in zip(prices, est, strict=True))
            t = truth.setdefault(supplier, [0, 0])
            t[0] += sum(trace.readings_wh)
            t[1] += sum(p * m for p, m in zip(prices, trace.readings_wh, strict=True))
        exact = {r.supplier: r for r in aggregate(rows_exact)}
        tv = sum(x[1] for x in truth.values()) or 1
        sv = sum(x[1] for x in slp.values()) or 1
        for sup in sorted(exact):
            r = exact[sup]
            report.suppliers.append(
                SupplierRow(
                    sup, r.customers, r.energy_wh / 1000, slp[sup][0] / 1000, truth[sup][0] / 1000,
                    r.value, slp[sup][1], truth[sup][1], r.value_share, slp[sup][1] / sv, truth[sup][1] / tv,
                )
            )
        report.customers = cust
        if cust:
            report.accuracy_samples = sum(c.class_samples == c.true_class for c in cust) / len(cust)
            report.accuracy_exact = sum(c.class_exact == c.true_class for c in cust) / len(cust)
        _forecasts(report, params, traces, energies, {c.meter_id: c for c in cust}, g)
        report.readings_released = {"slp": 0, "samples": released, "exact": 0}
    finally:
        utility.close()
        store.close()
    return report


def _forecasts(report: SettlementReport, params: Any, traces: list[Any], energies: dict[str, int],
               cust: dict[str, CustomerRow], g: int) -> None:
    """Next period's hourly load per supplier by three methods against the simulated truth."""
    from ..meter.load import bdew_profile_wh, simulate_load

    nxt = params.start + timedelta(days=params.days)
    report.forecast_from = nxt.isoformat()
    report.forecast_to = (nxt + timedelta(days=params.days - 1)).isoformat()
    shapes_now: dict[str, int] = {}
    shapes_next: dict[str, list[int]] = {}

    def shape(name: str) -> tuple[int, list[int]]:
        if name not in shapes_next:
            shapes_now[name] = sum(_shape(name, params.start, params.days))
            shapes_next[name] = _shape(name, nxt, params.days)
        return shapes_now[name], shapes_next[name]

    agg: dict[str, dict[str, list[float]]] = {}
    for n, trace in enumerate(traces):
        mid = trace.household_id
        if mid not in cust:
            continue
        sup = supplier_of(n)
        fut = simulate_load(mid, nxt, params.days, annual_kwh=trace.annual_kwh, profile=trace.profile,
                            interval_minutes=params.interval_minutes, tz=trace.tz, seed=params.seed)
        true_h = _hourly(fut.readings_wh, g)
        slp_h = _hourly(bdew_profile_wh(nxt, params.days, annual_kwh=trace.annual_kwh, profile=trace.profile,
                                        interval_minutes=params.interval_minutes, tz=trace.tz), g)
        a = agg.setdefault(sup, {k: [0.0] * len(true_h) for k in ("truth", "slp", "samples", "exact")})
        c = cust[mid]
        parts = {"truth": true_h, "slp": slp_h}
        for method, cls in (("samples", c.class_samples), ("exact", c.class_exact)):
            if cls == "-":
                cls = "h0"
            w_now, w_next = shape(cls)
            parts[method] = forecast(w_next, energies[mid], w_now)
        for k, series in parts.items():
            acc = a[k]
            for i, x in enumerate(series):
                acc[i] += x
    for sup in sorted(agg):
        a = agg[sup]
        report.forecasts.append(
            ForecastRow(sup, round(mape(a["slp"], a["truth"]), 2), round(mape(a["samples"], a["truth"]), 2),
                        round(mape(a["exact"], a["truth"]), 2))
        )


def _eur(x: float, scale: int) -> str:
    return f"{x / scale:,.2f}"


def format_report(r: SettlementReport) -> str:
    """The comparison tables the demo prints."""
    sc = r.scale
    out = [
        f"Settlement {r.period_from}..{r.period_to}, price index {r.index} "
        f"({r.verified} customers verified, {len(r.rejected)} rejected)",
        f"{'supplier':<11} {'cust':>4} {'kWh':>10} {'value ' + r.currency:>12} {'share':>7} "
        f"{'SLP value':>11} {'SLP share':>9} {'truth value':>12} {'truth share':>11} "
        f"{'SLP error ' + r.currency:>20} {'meterhub error':>14}",
    ]
    for s in r.suppliers:
        err = s.value_slp - s.value_truth
        pct = 100 * err / s.value_truth if s.value_truth else 0.0
        mh = s.value_meterhub - s.value_truth
        out.append(
            f"{s.supplier:<11} {s.customers:>4} {s.kwh_meterhub:>10,.1f} {_eur(s.value_meterhub, sc):>12} "
            f"{100 * s.share_meterhub:>6.2f}% {_eur(s.value_slp, sc):>11} {100 * s.share_slp:>8.2f}% "
            f"{_eur(s.value_truth, sc):>12} {100 * s.share_truth:>10.2f}% "
            f"{_eur(err, sc):>11} ({pct:+5.1f}%) {_eur(mh, sc):>7} ({100 * mh / max(1, abs(s.value_truth)):+.1f}%)"
        )
    exact = all(s.value_meterhub == s.value_truth and round(s.kwh_meterhub * 1000) == round(s.kwh_truth * 1000)
                for s in r.suppliers)
    out.append(f"meterhub settlement equals the raw-reading truth to the sub-unit (1e-8 EUR): {'yes' if exact else 'NO'}")
    for why in r.rejected:
        out.append(f"REJECTED {why}")
    out.append("")
    out.append(f"Classification of {len(r.customers)} customers (sampling: one reading in {DEFAULT_K}, coin-tossed)")
    out.append(f"{'customer':<10} {'supplier':<11} {'true':>5} {'samples':>8} {'by samples':>10} {'exact':>6} {'r':>7}")
    for c in r.customers:
        out.append(f"{c.meter_id:<10} {c.supplier:<11} {c.true_class:>5} {c.samples:>8} {c.class_samples:>10} "
                   f"{c.class_exact:>6} {c.r_exact:>7.3f}")
    out.append(f"accuracy: samples only {100 * r.accuracy_samples:.0f}%, exact matching {100 * r.accuracy_exact:.0f}%")
    out.append("")
    out.append(f"Forecast of {r.forecast_from}..{r.forecast_to}, hourly load per supplier (MAPE against the simulation)")
    out.append(f"{'supplier':<11} {'SLP method':>11} {'sampling':>9} {'exact':>7}")
    for f in r.forecasts:
        out.append(f"{f.supplier:<11} {f.mape_slp:>10.1f}% {f.mape_samples:>8.1f}% {f.mape_exact:>6.1f}%")
    rr = r.readings_released
    out.append(f"fine-grained readings released: SLP method {rr.get('slp', 0)}, sampling {rr.get('samples', 0)}, "
               f"exact matching {rr.get('exact', 0)} (scores and one sum of squares per customer)")
    return "\n".join(out)
