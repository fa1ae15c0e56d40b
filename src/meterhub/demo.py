"""The whole-system demo: meters, hub and utility on one machine.

For each simulated household the meter commits to and signs its readings day
by day; the openings go to the hub over the home link (DLMS/COSEM, security
suite 0, the hub reading them as a management client), the commitments and
signed batches to the utility. Each hub is an emulated secure element: the
supplier's TSM installs the billing applet from a DAP-signed package over an
SCP03 session with the supplier's security domain and pushes the signed
tariff with STORE DATA; the hub's host feeds each day's openings to the
applet. At the end of the period the applet computes each bill from the
openings and the utility verifies it against the commitments.
The bill is also recomputed from the raw readings, which only the simulator
knows, to show that verified bills are exact.

All state lives in SQLite files under the data directory; a second run with
the same parameters resumes where the first stopped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from . import settlement_demo
from .crypto import ecdsa
from .exchange import new_home_link_key
from .hub.homelink import InProcessHomeLink
from .hub.secure_element import (
    BILLING_APP_AID,
    SUPPLIER_SD_AID,
    BillingClient,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)
from .hub.store import HubStore
from .meter.load import LoadTrace, simulate_neighbourhood
from .meter.store import MeterStore
from .meter.timebase import check_interval
from .tariffs import (
    SignedTariff,
    demo_supplier_key,
    dump_tariff,
    example_signed_tariff,
    verify_tariff,
)
from .utility.store import UtilityStore
from .utility.tsm import TSM, dap_signer

__all__ = ["DemoParams", "HouseholdResult", "run_demo", "DemoError"]


class DemoError(ValueError):
    """Demo parameters that cannot work; the message says why."""


@dataclass(frozen=True)
class DemoParams:
    households: int = 20
    days: int = 30
    interval_minutes: int = 15
    seed: int = 2027
    start: date = date(2027, 3, 15)  # spans the spring DST change (92-interval day)
    data_dir: Path = Path("meterhub-data")
    business_share: float = 0.3  # small businesses among the customers (settlement/forecasting)
    price_index_csv: Path | None = None  # a day-ahead price CSV (start,EUR/MWh) instead of the example index

    def identity(self) -> dict[str, Any]:
        """The parameters a resumed run must share with the first."""
        return {
            "seed": self.seed,
            "interval_minutes": self.interval_minutes,
            "start": self.start.isoformat(),
        }


@dataclass
class HouseholdResult:
    meter_id: str
    profile: str
    kwh: float
    bill: int  # total, sub-units
    bill_from_readings: int
    verified: bool
    reason: str


def _check(params: DemoParams, tariff: SignedTariff) -> None:
    if params.households < 1:
        raise DemoError("--households must be at least 1")
    if params.days < 1:
        raise DemoError("--days must be at least 1")
    try:
        check_interval(params.interval_minutes)
    except ValueError as exc:
        raise DemoError(str(exc)) from None
    last = params.start + timedelta(days=params.days - 1)
    t = tariff.tariff
    if params.start < t.valid_from or last >= t.valid_until:
        raise DemoError(
            f"the demo period {params.start}..{last} must lie within the tariff's validity "
            f"{t.valid_from}..{t.valid_until - timedelta(days=1)}"
        )


def _check_resume(params: DemoParams) -> None:
    meta = params.data_dir / "demo.json"
    ident = params.identity()
    if meta.exists():
        try:
            stored = json.loads(meta.read_text())
        except ValueError:
            raise DemoError(f"{meta} is not valid JSON; use another --data-dir") from None
        if stored != ident:
            raise DemoError(
                f"{params.data_dir} holds a demo run with other parameters ({stored}); "
                "use another --data-dir"
            )
    else:
        params.data_dir.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(ident, sort_keys=True))


def run_demo(
    params: DemoParams,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[HouseholdResult]:
    """Run meters, hub and utility for the whole neighbourhood and verify every bill."""
    signed_tariff = example_signed_tariff()
    _check(params, signed_tariff)
    _check_resume(params)
    supplier_pub = ecdsa.public_bytes(demo_supplier_key())
    tariff = verify_tariff(signed_tariff, supplier_pub)

    traces: list[LoadTrace] = simulate_neighbourhood(
        params.households,
        params.start,
        params.days,
        interval_minutes=params.interval_minutes,
        seed=params.seed,
        business_share=params.business_share,
    )
    from . import dr_demo

    traces = dr_demo.prepare(params, traces)  # demand response (issue 14): events announced, households respond
    d = params.data_dir
    meters = MeterStore(d / "meter.sqlite")
    hub = HubStore(d / "hub.sqlite")
    utility = UtilityStore(d / "utility.sqlite")
    try:
        utility.add_tariff(signed_tariff, dump_tariff(signed_tariff))
        total_steps = len(traces) * params.days
        done = 0
        for n, trace in enumerate(traces):
            meter_id = trace.household_id
            meters.provision(meter_id, trace.tz, trace.interval_minutes, new_home_link_key())
            info = meters.info(meter_id)
            hub.pair_meter(meter_id, info.home_link_key, info.tz, info.interval_minutes)
            utility.register_meter(
                meter_id, info.public_key, info.tz, info.interval_minutes, tariff=signed_tariff
            )
            card = _hub_card(d, meter_id, settlement_demo.supplier_of(n))
            try:
                applet = BillingClient(card.transmit)
                applet.select()
                applet.pair(meter_id, info.tz, info.interval_minutes, info.home_link_key)
                # Settlement and profiling applets (issue 6): installed, paired, coin committed.
                extras = settlement_demo.attach(
                    card, params, meter_id, info.tz, info.interval_minutes, settlement_demo.supplier_of(n)
                )
                # The home link runs over DLMS with suite 0 (hub.homelink): the hub reads
                # each day's openings from the meter's DLMS server core, and its host
                # hands them to the billing applet (idempotent on re-delivery).
                link = InProcessHomeLink(meters, hub, meter_id)
                try:
                    for upload, sealed in meters.outbox(meter_id):
                        link.deliver(upload, sealed)
                        utility.ingest_day(upload)
                        _feed_applet(applet, hub, meter_id, upload.batch.batch.day)
                        extras.feed(hub, meter_id, upload.batch.batch.day)
                    meter = meters.load(meter_id)
                    for day, first, count in trace.days():
                        if meter.last_day is not None and day <= meter.last_day:
                            done += 1
                            continue
                        upload, sealed = meters.record_day(meter, day, trace.readings_wh[first : first + count])
                        link.deliver(upload, sealed)
                        _feed_applet(applet, hub, meter_id, day)
                        extras.feed(hub, meter_id, day)
                        res = utility.ingest_day(upload)
                        if not res.accepted:
                            raise RuntimeError(f"utility refused an honest upload: {res.reason}")
                        done += 1
                        if progress:
                            progress(done, total_steps)
                finally:
                    link.close()
            finally:
                card.close()

        results: list[HouseholdResult] = []
        period_to = params.start + timedelta(days=params.days - 1)
        for n, trace in enumerate(traces):
            meter_id = trace.household_id
            card = _hub_card(d, meter_id, settlement_demo.supplier_of(n))
            try:
                applet = BillingClient(card.transmit)
                applet.select()
                st = applet.bill(params.start, period_to)
            finally:
                card.close()
            prices = tariff.prices_for(trace.starts, trace.interval_minutes)
            hub.save_statement(meter_id, params.start, period_to, st.to_json())
            verdict = utility.verify_statement(st)
            from_readings = (
                sum(t * m for t, m in zip(prices, trace.readings_wh, strict=True))
                + params.days * tariff.standing_charge_per_day
            )
            results.append(
                HouseholdResult(
                    meter_id,
                    trace.profile,
                    sum(trace.readings_wh) / 1000.0,
                    st.total,
                    from_readings,
                    verdict.ok,
                    verdict.reason,
                )
            )
        return results
    finally:
        meters.close()
        hub.close()
        utility.close()


def _hub_card(data_dir: Path, meter_id: str, supplier: str):
    """Open (provisioning on first use) a household's hub card, and have the supplier's
    TSM install the billing applet and push the tariff if that is not done yet."""
    supplier_keys = demo_scp03_keys(supplier)  # each supplier has its own keys
    supplier_dap = demo_dap_key(supplier)
    card = open_hub_card(
        data_dir / "hubs" / f"{meter_id}.sqlite",
        issuer_keys=demo_scp03_keys("issuer"),
        supplier_keys=supplier_keys,
        supplier_dap=supplier_dap.public_key(),
    )
    if card.registry.get(BILLING_APP_AID) is None:
        tsm = TSM(card.transmit, supplier_keys, sd_aid=SUPPLIER_SD_AID, dap=dap_signer(SUPPLIER_SD_AID, supplier_dap))
        with tsm:
            tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
            tsm.push_tariff(BILLING_APP_AID, dump_tariff(example_signed_tariff()))
    return card


def _feed_applet(applet: BillingClient, hub: HubStore, meter_id: str, day: date) -> None:
    first, openings = hub.openings(meter_id, day, day)
    applet.put_openings(day, first, openings)


def format_table(results: list[HouseholdResult], currency: str, subunits: int) -> str:
    lines = [f"{'household':<12} {'kWh':>9} {'bill (' + currency + ')':>12} {'from readings':>14}  verified"]
    for r in results:
        lines.append(
            f"{r.meter_id:<12} {r.kwh:>9.1f} {r.bill / subunits:>12.2f} "
            f"{r.bill_from_readings / subunits:>14.2f}  {'yes' if r.verified else 'NO: ' + r.reason}"
        )
    ok = sum(r.verified for r in results)
    exact = sum(r.bill == r.bill_from_readings for r in results)
    lines.append(f"{ok}/{len(results)} bills verified; {exact}/{len(results)} equal to the bill from raw readings")
    return "\n".join(lines)


def summary_json(params: DemoParams, results: list[HouseholdResult], currency: str, subunits: int) -> str:
    return json.dumps(
        {
            "params": {
                "households": params.households,
                "days": params.days,
                "interval_minutes": params.interval_minutes,
                "seed": params.seed,
                "start": params.start.isoformat(),
            },
            "currency": currency,
            "subunits_per_unit": subunits,
            "households": [asdict(r) for r in results],
            "all_verified": all(r.verified for r in results),
            "all_exact": all(r.bill == r.bill_from_readings for r in results),
        },
        indent=2,
    )


def tqdm_progress() -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, unit="meter-day", file=sys.stderr, leave=False))
        bar[0].n = done
        bar[0].refresh()
        if done >= total:
            bar[0].close()

    return update
