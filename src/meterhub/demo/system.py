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
the same parameters resumes where the first stopped. Every step that touches
more than one store is atomic or idempotent on retry, so a run killed at any
point resumes to exactly the output of an uninterrupted run (docs/operations.md):
a hub card is built under a temporary name and renamed into place, the coin
toss is recorded before it is sent and the card answers a repeated commitment
with the same nonce, and re-delivered days are accepted as duplicates.

The demo's randomness that shows in its output (the sampling coin toss) comes
from :class:`DemoRandom`, seeded by ``--seed``; the real parties draw from
``secrets``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..crypto import ecdsa
from ..errors import MeterhubError
from ..hub.secure_element import (
    BILLING_APP_AID,
    CARD_SIDECARS,
    SUPPLIER_SD_AID,
    BillingClient,
    VaultClient,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)
from ..hub.store import HubStore
from ..meter.load import LoadTrace, simulate_neighbourhood
from ..meter.store import MeterStore
from ..model.formats.sealed import new_home_link_key
from ..model.timebase import check_interval
from ..policy import ReleasePolicy, default_policy
from ..storage.sqlite import StoreError, atomic_write, discard_built_file, install_built_file
from ..tariffs import (
    SignedTariff,
    Tariff,
    demo_supplier_key,
    dump_tariff,
    example_signed_tariff,
    verify_tariff,
)
from ..utility.store import UtilityStore
from ..utility.tsm import TSM, dap_signer
from . import settlement
from .homelink import InProcessHomeLink

__all__ = ["DemoParams", "DemoRandom", "HouseholdResult", "check_params", "run_demo", "DemoError"]


class DemoError(MeterhubError, ValueError):
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
    thieves: int = 2  # customers who tamper with their meters (the fraud section, docs/fraud.md)

    def identity(self) -> dict[str, Any]:
        """The parameters a resumed run must share with the first: every one that
        changes the output (all but the data directory). A price index CSV is
        identified by its content's SHA-256 as well as its name."""
        csv = None
        if self.price_index_csv is not None:
            try:
                digest = hashlib.sha256(Path(self.price_index_csv).read_bytes()).hexdigest()
            except OSError as exc:
                raise DemoError(f"--price-index: cannot read {self.price_index_csv} ({exc.strerror})") from None
            csv = {"name": Path(self.price_index_csv).name, "sha256": digest}
        return {
            "format": "meterhub/demo-params/v1",
            "households": self.households,
            "days": self.days,
            "interval_minutes": self.interval_minutes,
            "seed": self.seed,
            "start": self.start.isoformat(),
            "business_share": self.business_share,
            "price_index_csv": csv,
            "thieves": self.thieves,
        }


class DemoRandom:
    """The demo's seeded randomness source, injected where a real party uses ``secrets``.

    Every value is HMAC-SHA256 under a key derived from the seed, over a
    domain-separated, length-prefixed label, so the same seed and label give the
    same bytes in any run, in any order, after any crash. Never for real use: a
    seed is not a secret.
    """

    _DST = b"meterhub/v1/demo-random"

    def __init__(self, seed: int) -> None:
        self._key = hashlib.sha256(self._DST + b"/key\x00" + str(int(seed)).encode()).digest()

    def derive(self, n: int, *label: str) -> bytes:
        """``n`` bytes for ``label``."""
        msg = self._DST + b"".join(len(x.encode()).to_bytes(2, "big") + x.encode() for x in label)
        out = b""
        block = 0
        while len(out) < n:
            out += hmac.new(self._key, msg + block.to_bytes(4, "big"), hashlib.sha256).digest()
            block += 1
        return out[:n]

    def utility_nonce(self, meter_id: str, first: date, last: date) -> bytes:
        """The utility's coin-toss nonce for a meter and period."""
        return self.derive(32, "utility-nonce", meter_id, first.isoformat(), last.isoformat())

    def card_rng(self, meter_id: str, stream: str = "") -> Callable[[int], bytes]:
        """A hub card's random number generator: the ``k``-th draw since the card was
        opened is a function of seed, meter, ``stream`` and ``k`` only. A demo step that
        opens the card for another purpose names its own ``stream``, so its draws (the
        aggregation applet's X25519 key) never repeat a draw another step released (a
        coin-toss nonce)."""
        count = [0]

        def draw(n: int) -> bytes:
            count[0] += 1
            if stream:
                return self.derive(n, "hub-card", meter_id, stream, str(count[0]))
            return self.derive(n, "hub-card", meter_id, str(count[0]))

        return draw


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
    if isinstance(params.seed, bool) or not isinstance(params.seed, int) or not 0 <= params.seed < 2**63:
        raise DemoError(f"--seed must be an integer in [0, 2^63): {params.seed}")
    if isinstance(params.thieves, bool) or not isinstance(params.thieves, int) or not 0 <= params.thieves <= 1000:
        raise DemoError(f"--thieves must be an integer in [0, 1000]: {params.thieves}")
    if not 0.0 <= params.business_share <= 1.0:
        raise DemoError(f"--business-share must be in [0, 1]: {params.business_share}")
    try:
        check_interval(params.interval_minutes)
    except ValueError as exc:
        raise DemoError(str(exc)) from None
    last = params.start + timedelta(days=params.days - 1)
    t = tariff.tariff
    if not isinstance(t, Tariff):  # the demo bills the shipped time-of-use tariff
        raise DemoError(f"the demo needs a time-of-use tariff, not {type(t).__name__}")
    if params.start < t.valid_from or last >= t.valid_until:
        raise DemoError(
            f"the demo period {params.start}..{last} must lie within the tariff's validity "
            f"{t.valid_from}..{t.valid_until - timedelta(days=1)}"
        )


_DEMO_ONLY_STORES = ("meter.sqlite", "settlement.sqlite")


def check_params(params: DemoParams) -> None:
    """Raise :class:`DemoError` for parameters that cannot work; writes nothing."""
    _check(params, example_signed_tariff())
    if params.price_index_csv is not None:
        try:
            settlement.check_index_csv(params)
        except (OSError, ValueError) as exc:
            raise DemoError(f"--price-index: {exc}") from None
    params.identity()


def _check_resume(params: DemoParams) -> None:
    """Record the parameters on the first run (before any store exists); on a resumed
    run refuse any difference. ``demo.json`` is written atomically, so a kill leaves
    either no file (first run again) or the whole file."""
    from ..storage.sqlite import expect_store

    meta = params.data_dir / "demo.json"
    ident = params.identity()
    if meta.exists():
        try:
            stored = json.loads(meta.read_text())
        except (ValueError, UnicodeDecodeError):
            raise StoreError(f"{meta} is corrupt; the data directory cannot be resumed") from None
        if not isinstance(stored, dict):
            raise StoreError(f"{meta} is corrupt; the data directory cannot be resumed")
        diff = [k for k in sorted(set(stored) | set(ident)) if stored.get(k) != ident.get(k)]
        if diff:
            what = ", ".join(f"{k} {stored.get(k)!r} (now {ident.get(k)!r})" for k in diff)
            raise DemoError(f"{params.data_dir} holds a demo run with other parameters: {what}; use another --data-dir")
        return
    # hub.sqlite and utility.sqlite may be shared with `hub bill` / `utility verify` runs
    # in the same directory; the meter's and the settlement stores only the demo writes.
    present = [n for n in _DEMO_ONLY_STORES if expect_store(params.data_dir / n) or (params.data_dir / n).exists()]
    if present or (params.data_dir / "hubs").exists():
        raise StoreError(
            f"{params.data_dir} holds stores ({', '.join(present) or 'hubs/'}) but no demo.json; "
            "use another --data-dir"
        )
    try:
        params.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{params.data_dir}: cannot create the directory ({exc.strerror})") from None
    atomic_write(meta, json.dumps(ident, sort_keys=True).encode())


def run_demo(
    params: DemoParams,
    *,
    progress: Callable[[int, int], None] | None = None,
    rng: DemoRandom | None = None,
    remote: Any = None,
) -> list[HouseholdResult]:
    """Run meters, hub and utility for the whole neighbourhood and verify every bill.

    Everything is validated before the first write. ``rng`` is the seeded source
    for the coin toss (default: :class:`DemoRandom` of ``params.seed``). ``remote``
    (:class:`meterhub.service.remote.RemoteUtility`, ``demo --server``): every
    registration, day and statement is also delivered through the utility's HTTP
    service, whose verdicts must agree with the local ones (docs/service.md).
    """
    signed_tariff = example_signed_tariff()
    check_params(params)
    supplier_pub = ecdsa.public_bytes(demo_supplier_key())
    tariff = verify_tariff(signed_tariff, supplier_pub)
    try:
        traces: list[LoadTrace] = simulate_neighbourhood(
            params.households,
            params.start,
            params.days,
            interval_minutes=params.interval_minutes,
            seed=params.seed,
            business_share=params.business_share,
        )
    except ValueError as exc:
        raise DemoError(str(exc)) from None
    if rng is None:
        rng = DemoRandom(params.seed)
    _check_resume(params)
    from . import dr

    traces = dr.prepare(params, traces)  # demand response (issue 14): events announced, households respond
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
            try:
                utility.register_meter(
                    meter_id, info.public_key, info.tz, info.interval_minutes, tariff=signed_tariff
                )
            except ValueError as exc:
                raise StoreError(f"{d}: the stores disagree ({exc}); was meter.sqlite replaced?") from None
            if remote is not None:
                remote.register_meter(
                    meter_id, info.public_key, info.tz, info.interval_minutes,
                    tariff=signed_tariff, supplier=settlement.supplier_of(n),
                )
            supplier = settlement.supplier_of(n)
            # The card is expected once the meter has recorded a day (it is built first).
            card = _hub_card(d, meter_id, supplier, params, rng, expected=info.last_day is not None)
            vault = VaultClient(card.transmit)  # the card seals this meter's records in hub.sqlite
            hub.attach(meter_id, vault)
            try:
                hub.pair_meter(meter_id, info.home_link_key, info.tz, info.interval_minutes)
                # Demand response (issue 14): applet, pairing and the announced events;
                # it selects its own applet, so it comes before the billing applet's.
                dr.attach(card, params, meter_id, info.tz, info.interval_minutes)
                applet = BillingClient(card.transmit)
                applet.select()
                applet.pair(meter_id, info.tz, info.interval_minutes, info.home_link_key)
                # Settlement and profiling applets (issue 6): installed, paired, coin committed.
                extras = settlement.attach(
                    card, params, meter_id, info.tz, info.interval_minutes, supplier, rng=rng
                )
                # The home link runs over DLMS with suite 0 (hub.homelink): the hub reads
                # each day's openings from the meter's DLMS server core, and its host
                # hands them to the billing applet (idempotent on re-delivery).
                link = InProcessHomeLink(meters, hub, meter_id)
                try:
                    # Days recorded by a run that was killed before delivering them all:
                    # every step below accepts a repeated day, so all are re-delivered.
                    for upload, sealed in meters.outbox(meter_id):
                        link.deliver(upload, sealed)
                        res = utility.ingest_day(upload)
                        if not res.accepted:
                            raise StoreError(f"the utility refused a stored day of {meter_id}: {res.reason}")
                        if remote is not None:
                            remote.deliver_day(upload)
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
                        if remote is not None:
                            remote.deliver_day(upload)
                        done += 1
                        if progress:
                            progress(done, total_steps)
                finally:
                    link.close()
            finally:
                hub.detach(meter_id)
                card.close()

        results: list[HouseholdResult] = []
        period_to = params.start + timedelta(days=params.days - 1)
        for n, trace in enumerate(traces):
            meter_id = trace.household_id
            card = _hub_card(d, meter_id, settlement.supplier_of(n), params, rng, expected=True)
            try:
                applet = BillingClient(card.transmit)
                applet.select()
                st = applet.bill(params.start, period_to)
                with hub.attached(meter_id, VaultClient(card.transmit)):
                    hub.save_statement(meter_id, params.start, period_to, st.to_json())
            finally:
                card.close()
            prices = tariff.prices_for(trace.starts, trace.interval_minutes)
            verdict = utility.verify_statement(st)
            if remote is not None:
                remote.check_statement(st.to_json(), settlement.supplier_of(n), verdict.ok)
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


#: The demo customers' budget of linear functionals per recipient and period (default 16,
#: hard limit 32): the grid operator's forecasting scores take 14, and the suspect
#: profiles of a fraud investigation (docs/fraud.md) up to 9 more for the customers of a
#: narrowed group, so the demo's customers allow 24 (docs/privacy.md).
DEMO_BUDGET = 24


def _customer_policy(params: DemoParams) -> ReleasePolicy:
    """The demo customers' release policy: the defaults, on a billing cycle that is the
    demo period (their contract started on ``--start``), with a budget of
    :data:`DEMO_BUDGET` functionals (docs/privacy.md)."""
    return default_policy(anchor=params.start, days=params.days, budget={"functionals_per_period": DEMO_BUDGET})


def _open_card(path: Path, supplier: str, rng: DemoRandom | None, meter_id: str, policy: ReleasePolicy):
    supplier_keys = demo_scp03_keys(supplier)  # each supplier has its own keys
    card = open_hub_card(
        path,
        issuer_keys=demo_scp03_keys("issuer"),
        supplier_keys=supplier_keys,
        supplier_dap=demo_dap_key(supplier).public_key(),
        policy=policy,
    )
    if rng is not None:
        card.runtime.random = rng.card_rng(meter_id)
    return card


def _hub_card(
    data_dir: Path, meter_id: str, supplier: str, params: DemoParams, rng: DemoRandom | None, *, expected: bool
):
    """Open a household's hub card, building it on first use.

    A new card is built under a temporary name: security domains provisioned, the
    supplier's TSM installs the billing applet and pushes the tariff, the settlement
    and profiling applets are installed with their series; only then is it renamed
    into place. A kill during the build leaves no card, and the next run builds it
    again from the start. ``expected``: the card must exist (the meter has days).
    """
    path = data_dir / "hubs" / f"{meter_id}.sqlite"
    if path.exists() and path.stat().st_size == 0:
        raise StoreError(f"{path}: hub card store is empty (truncated?); use another --data-dir")
    if not path.exists():
        if expected:
            raise StoreError(f"{path}: hub card missing; the data directory cannot be resumed")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.new")
        discard_built_file(tmp, CARD_SIDECARS)
        card = _open_card(tmp, supplier, rng, meter_id, _customer_policy(params))
        try:
            supplier_keys = demo_scp03_keys(supplier)
            dap = dap_signer(SUPPLIER_SD_AID, demo_dap_key(supplier))
            with TSM(card.transmit, supplier_keys, sd_aid=SUPPLIER_SD_AID, dap=dap) as tsm:
                tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
                tsm.push_tariff(BILLING_APP_AID, dump_tariff(example_signed_tariff()))
            settlement.install(card, params, supplier)
        finally:
            card.close()  # the last connection: SQLite folds the WAL into the file
        install_built_file(tmp, path, CARD_SIDECARS)  # storage and customer keys move with it
    card = _open_card(path, supplier, rng, meter_id, _customer_policy(params))
    if card.registry.get(BILLING_APP_AID) is None:
        card.close()
        raise StoreError(f"{path}: hub card has no billing applet; the data directory cannot be resumed")
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
                "business_share": params.business_share,
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
