"""The fraud-detection part of ``meterhub demo`` (issue 13) and ``meterhub utility fraud``.

After the demo has recorded its customers, :func:`run`

1. places them on feeders (in order, about ten per feeder, at least five) and makes
   ``thieves`` of them thieves: a factor attack (:data:`meterhub.meter.grid.INVERTIBLE`)
   from a random day with a random intensity, so that their meters recorded (and
   committed to) less than they drew; the feeder meters see the true draw plus the
   technical losses (:mod:`meterhub.meter.grid`);
2. has the grid operator's TSM install the aggregation applet on every hub (DAP-signed,
   SCP03 level 33), reads each applet's X25519 key, signs one group per feeder and pushes
   it; the hubs admit it under their policy;
3. collects every feeder-day by private aggregation. One hub is unreachable on one day:
   the recovery round removes its masks and the day is reported incomplete, or, where
   the hubs' rule refuses every present set (outside the registry's span for the day,
   or too few holders of the seeds), reported without a sum. Each
   feeder-day is verified against the meters' commitments in the utility's store
   (:func:`meterhub.utility.fraud.verify_feeder_day`), and compared with the readings;
4. computes the balance, runs the CUSUMs calibrated on honest simulated feeders, and for
   a flagged feeder localises by check meters (never below five customers) and matches
   signed suspect profiles through the profiling applets of the narrowed group's hubs,
   whose verified scores give each customer a likelihood;
5. runs the same detector on the raw readings for comparison.

Everything the grid operator received is kept in ``fraud.sqlite``
(:class:`meterhub.utility.reverify.fraud.FraudStore`);
:func:`meterhub.utility.reverify.fraud.fraud_stored` (``meterhub utility fraud``) re-verifies it and recomputes balance, alarms and
likelihoods from it alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from ..crypto import ecdsa
from ..meter.grid import (
    INVERTIBLE,
    Feeder,
    Theft,
    build_feeder,
    hour_calendar,
    simulate_grid,
    true_from_recorded,
)
from ..model.formats.aggregation import (
    FeederReading,
    GroupDefinition,
    GroupMember,
)
from ..model.formats.membership import certify_members, demo_member_certifier_key
from ..utility.reverify.fraud import ROUND_DAYS, FraudStore, demo_feeder_key
from ..utility.reverify.settlement import PROFILING_CLASS
from ..utility.theft import (
    CusumDetector,
    WithholdingDetector,
    balance,
    cable_segments,
    calibrate,
    localise,
    period_suspect_profiles,
    suspect_likelihoods,
    suspect_profiles,
    suspect_statistics,
    unbalanced_days,
)

__all__ = ["FraudReport", "run", "format_report"]

FEEDER_SIZE = 10
MIN_GROUP = 5
SCORE_DAYS = 10
FAR = 0.05
# ---------------------------------------------------------------------- report


@dataclass
class ThiefRow:
    customer: str
    feeder: str
    kind: str
    start: str
    recorded_fraction: float
    stolen_kwh: float
    flagged_private: str
    flagged_raw: str
    group_private: int  # customers in the narrowed group that holds the thief (0: not narrowed to it)
    group_raw: int
    rank_private: int  # 1 = most likely (0: not ranked)
    likelihood_private: float
    rank_raw: int
    withheld_private: str = "-"  # the day its withholding alarm rose (its hub stayed out of the aggregation)


@dataclass
class FeederRow:
    feeder: str
    customers: int
    thieves: int
    days_complete: int
    days_incomplete: int
    discrepancy_pct: float  # mean daily energy discrepancy
    alarm_private: str
    alarm_raw: str
    narrowed: list[list[str]] = field(default_factory=list)
    days_unbalanced: int = 0  # days the balance could not judge (too few complete hours, or no sum)
    missing_days: dict[str, int] = field(default_factory=dict)  # member -> days it did not answer
    withholding: dict[str, str] = field(default_factory=dict)  # member -> the day its withholding alarm rose


@dataclass
class FraudReport:
    period_from: str
    period_to: str
    feeder_days_verified: int = 0
    feeder_days_incomplete: int = 0
    group_days_unavailable: int = 0  # a recovery the hubs refuse (outside the day's span, too few present)
    rejected: list[str] = field(default_factory=list)
    sums_equal_readings: bool = True
    detector: dict[str, Any] = field(default_factory=dict)
    withholding: dict[str, Any] = field(default_factory=dict)  # the withholding alarm's parameters and threshold
    feeders: list[FeederRow] = field(default_factory=list)
    thieves: list[ThiefRow] = field(default_factory=list)
    likelihoods: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def all_verified(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["all_verified"] = self.all_verified
        return d


# ---------------------------------------------------------------------- helpers


def _split(n: int) -> list[range]:
    """Customers 0..n-1 in order onto feeders of about FEEDER_SIZE, none below MIN_GROUP."""
    k = max(1, round(n / FEEDER_SIZE))
    while k > 1 and n // k < MIN_GROUP:
        k -= 1
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(k)]


def _hourly(readings: list[int], g: int) -> list[int]:
    return [sum(readings[k : k + g]) for k in range(0, len(readings), g)]


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def _local_midnight(d: date, tz: str) -> datetime:
    return datetime.combine(d, datetime.min.time(), ZoneInfo(tz)).astimezone(UTC)


def _thefts(customers: list[str], n_thieves: int, days: int, seed: int) -> dict[str, Theft]:
    rng = np.random.default_rng([seed, 0x7468696566])
    n = min(n_thieves, len(customers))
    chosen: Sequence[int] = rng.choice(len(customers), size=n, replace=False).tolist() if n else []
    out = {}
    for k in chosen:
        kind = str(INVERTIBLE[int(rng.integers(len(INVERTIBLE)))])
        start = int(rng.integers(1, max(2, days // 4)))
        out[customers[int(k)]] = Theft(customers[int(k)], kind, start, float(rng.uniform(0.3, 0.7)),
                                       int(rng.integers(1 << 31)))
    return out


def _calibrate(params: Any, sizes: list[int]) -> CusumDetector:
    """CUSUMs calibrated on 40 honest simulated feeders of the demo's feeder sizes."""
    honest, cal = simulate_grid(40, params.start, params.days, seed=params.seed + 101, thief_share=0.0,
                                size_range=(min(sizes), max(sizes)), business_share=params.business_share,
                                pool=max(20, max(sizes)))
    return calibrate([balance(f.feeder_wh, f.recorded_wh.sum(axis=0), f.nominal, cal) for f in honest], FAR)


def _suspect_series(fid: str, sp: Any, first: date, last: date, tz: str) -> Any:
    from ..tariffs.price_index import KIND_LOAD_PROFILE, Series
    from ..tariffs.profiles import PROFILE_UNIT

    values = tuple(int(v) for v in sp.weights)
    tag = hashlib.sha256(repr(values).encode()).hexdigest()[:8]
    sid = f"sx-{fid}-{first:%m%d}-{last:%m%d}-{sp.profile_id}-{tag}"[:64]
    return Series(kind=KIND_LOAD_PROFILE, series_id=sid, version=1, publisher="demo-grid-operator",
                  start=_local_midnight(first, tz), interval_minutes=60, unit=PROFILE_UNIT, scale=1_000_000,
                  expires=last + timedelta(days=62), values=values)


# ---------------------------------------------------------------------- the demo section


def run(params: Any, thieves: int = 2, *, outage: bool = True) -> FraudReport:
    """See the module docstring. Needs a finished demo run in ``params.data_dir``."""
    from ..applets.aggregation import CLASS_NAME as AGG_CLASS
    from ..hub.aggregation import AGGREGATION_APP_AID, aggregation_load_file
    from ..hub.secure_element import PROFILING_APP_AID, ReadingsClient
    from ..hub.store import HubStore
    from ..model.group_registry import RegistryBlock
    from ..model.timebase import range_starts
    from ..tariffs.price_index import sign_series
    from ..utility.forecasting import ProfileScores, verify_scores
    from ..utility.fraud import (
        GroupRegistry,
        SessionMailbox,
        collect_group_day,
        demo_grid_key,
        hub_key,
        make_group,
        push_group,
        push_registry,
        verify_feeder_day,
    )
    from ..utility.settlement import AppletMailbox, HubRefused, SettlementStore, expected_code_hash
    from ..utility.store import UtilityStore
    from ..utility.tsm import TSMError
    from ..utility.verifier import Rejected
    from . import settlement
    from .system import DemoRandom, _customer_policy, _open_card

    first_day = params.start
    last_day = params.start + timedelta(days=params.days - 1)
    report = FraudReport(first_day.isoformat(), last_day.isoformat())
    d = Path(params.data_dir)
    customers = SettlementStore(d / "settlement.sqlite")
    try:
        supplier = {m: v[0] for m, v in customers.customers().items()}
    finally:
        customers.close()
    # the demo's customers in their order (ids end in their number), as placed on the cable
    ids = sorted(supplier, key=lambda m: m.rsplit("-", 1)[-1])
    if len(ids) < MIN_GROUP or params.days < 2:
        report.note = f"fraud detection needs at least {MIN_GROUP} customers on a feeder and two days"
        return report
    g = 60 // params.interval_minutes if params.interval_minutes <= 60 else 1
    days = [first_day + timedelta(days=k) for k in range(params.days)]
    hubs = HubStore(d / "hub.sqlite")
    utility = UtilityStore(d / "utility.sqlite")
    tz = utility.registration(ids[0]).tz
    # What each meter recorded (and committed to): the simulation's ground truth, which the
    # hubs hold; the grid operator never reads it.
    openings = {m: _recorded_days(d, hubs, m, days) for m in ids}
    recorded = np.array([_hourly([o.m for _, ops in openings[m] for o in ops], g) for m in ids], dtype=np.int64)
    cal = hour_calendar(range_starts(params.start, params.days, tz, 60), tz)
    theft = _thefts(ids, thieves, params.days, params.seed)
    true = recorded.astype(float).copy()
    for i, c in enumerate(ids):
        if c in theft:
            true[i] = true_from_recorded(recorded[i].astype(float), theft[c], cal)
    rng = np.random.default_rng([params.seed, 0x6665656465])
    feeders: list[Feeder] = []
    for k, r in enumerate(_split(len(ids))):
        members = [ids[i] for i in r]
        feeders.append(build_feeder(f"feeder-{k}", members, true[list(r)], [theft[c] for c in members if c in theft],
                                    cal, rng, recorded_wh=recorded[list(r)]))
    store = FraudStore(d / "fraud.sqlite")
    grid_pub = ecdsa.public_bytes(demo_grid_key())
    demo_rng = DemoRandom(params.seed)

    def card_of(mid: str) -> Any:
        # the card's random source is the demo's seeded one, in a stream of its own (the
        # aggregation applet's key must not repeat a released coin-toss nonce)
        card = _open_card(d / "hubs" / f"{mid}.sqlite", supplier[mid], None, mid, _customer_policy(params))
        card.runtime.random = demo_rng.card_rng(mid, "fraud")
        return card

    try:
        # 2. install, pair, feed; keys; groups
        keys: dict[str, bytes] = {}
        for mid in ids:
            card = card_of(mid)
            try:
                if card.registry.get(AGGREGATION_APP_AID) is None:
                    with settlement._tsm(card, "grid-operator") as tsm:
                        tsm.deploy(aggregation_load_file(), AGGREGATION_APP_AID, params=grid_pub)
                rc = ReadingsClient(card.transmit, AGGREGATION_APP_AID)
                rc.select()
                rc.pair(mid, tz, params.interval_minutes)
                for day, (first, ops) in zip(days, openings[mid], strict=True):
                    rc.put_openings(day, first, ops)
                with settlement._tsm(card, "grid-operator") as tsm:
                    keys[mid] = hub_key(AppletMailbox(tsm, AGGREGATION_APP_AID))
            finally:
                card.close()
        # Each feeder's group registry (docs/fraud.md): the feeder group and every segment
        # the localisation may test (halves of halves while both keep the minimum), all
        # published before any release, since a hub refuses new groups for days it has
        # released. Kept in fraud.sqlite first, so a resumed run sends the same chain.
        # The hubs' card issuer certifies each meter's aggregation key (docs/fraud.md,
        # phantom members): the hubs accept a registry block only with a certificate,
        # under the certifier they pinned, for every member. The demo issuer certifies the
        # keys read from the demo's own cards above (a real issuer reads the key through
        # its own security domain on the card it issued).
        issuer = demo_member_certifier_key()
        certifier = issuer.public_key()
        certificates = certify_members(issuer, [GroupMember(mid, key) for mid, key in sorted(keys.items())])
        registries: dict[str, GroupRegistry] = {}
        groups = {}
        for f in feeders:
            stored = store.meta(f"registry/{f.feeder_id}")
            if stored is not None:
                reg = GroupRegistry.from_blocks(f.feeder_id, demo_grid_key(),
                                                [RegistryBlock.from_bytes(bytes.fromhex(b)) for b in stored],
                                                certifier=certifier)
            else:
                reg = GroupRegistry(f.feeder_id, demo_grid_key(), certifier=certifier)
                reg.add_certificates(certificates)
                feeder_group = make_group(f"{f.feeder_id}-{first_day:%Y%m%d}", f.feeder_id,
                                          {c: keys[c] for c in f.customers}, first_day, last_day, demo_grid_key())
                reg.publish([feeder_group] + [
                    make_group(_segment_id(f.feeder_id, a, e, first_day), f.feeder_id,
                               {c: keys[c] for c in f.customers[a:e]}, first_day, last_day, demo_grid_key())
                    for a, e in cable_segments(len(f.customers), MIN_GROUP)])
                store.put("meta", (f"registry/{f.feeder_id}",), json.dumps([b.to_bytes().hex() for b in reg.blocks]))
            registries[f.feeder_id] = reg
            grp = reg.group(f"{f.feeder_id}-{first_day:%Y%m%d}")
            groups[f.feeder_id] = grp
            store.put("groups", (grp.group_id,), grp.to_bytes())
        store.put("meta", ("feeder_groups",), json.dumps({fid: g2.group_id for fid, g2 in groups.items()}))
        # 3. releases (one hub unreachable on one day), recovery, verification
        down = (feeders[0].customers[1], days[min(3, len(days) - 1)]) if outage and len(feeders[0].customers) > MIN_GROUP else None
        code_hash = bytes.fromhex(expected_code_hash(AGG_CLASS))

        unanswered: dict[str, dict[str, list[int]]] = {}  # group -> member -> days it did not answer

        def aggregate(grp: GroupDefinition, f: Feeder, day_ks: range) -> tuple[np.ndarray, np.ndarray]:
            """Private aggregation of ``grp`` over days ``day_ks``: hourly sums and completeness
            over the whole calendar (zero and incomplete outside ``day_ks``); the members
            that did not answer go to ``unanswered`` and, as the grid operator's own log,
            to ``fraud.sqlite`` (meta ``unanswered/<group>``)."""
            out = np.zeros(len(cal.day), dtype=np.int64)
            ok = np.zeros(len(cal.day), dtype=bool)
            members = [m.meter_id for m in grp.members]
            cards = {c: card_of(c) for c in members}
            tsms = []
            try:
                boxes = {}
                for c, card in cards.items():
                    tsm = settlement._tsm(card, "grid-operator")
                    tsm.open()
                    tsms.append(tsm)
                    boxes[c] = SessionMailbox(tsm, AGGREGATION_APP_AID)
                    push_registry(boxes[c], registries[f.feeder_id])
                    push_group(boxes[c], grp)
                kept: list[tuple[tuple[str, ...], bytes | str]] = []
                log: dict[str, list[str]] = store.meta(f"unanswered/{grp.group_id}") or {}
                for k in day_ks:
                    day = days[k]
                    reach = {c: (None if down == (c, day) else mb) for c, mb in boxes.items()}
                    got = collect_group_day(reach, grp, day, AGGREGATION_APP_AID,
                                            registry=registries[f.feeder_id].view)
                    rel, rec = got.releases, got.recoveries
                    for c in got.unanswered:
                        unanswered.setdefault(grp.group_id, {}).setdefault(c, []).append(k)
                    log[day.isoformat()] = got.unanswered
                    kept += [((grp.group_id, day.isoformat(), c, "release"), r.to_bytes()) for c, r in rel.items()]
                    kept += [((grp.group_id, day.isoformat(), c, "recovery"), r.to_bytes()) for c, r in rec.items()]
                    if not got.has_sum:  # recovery refused (too few present) or not answered: no sum, not a fault
                        report.group_days_unavailable += 1
                        continue
                    regs = {c: utility.registration(c) for c in rel}
                    comms = {c: utility.day_commitments(c, day, day) for c in rel}
                    sl = cal.day_slices[k]
                    try:
                        fd = verify_feeder_day(grp, day, rel, rec, regs, comms, code_hash=code_hash)
                    except Rejected as exc:
                        report.rejected.append(f"{grp.group_id} {day}: {exc}")
                        continue
                    rows = [f.customers.index(c) for c in fd.present]
                    if list(f.recorded_wh[rows][:, sl].sum(axis=0)) != fd.hours:
                        report.sums_equal_readings = False
                    out[sl] = fd.hours
                    ok[sl] = fd.complete
                    report.feeder_days_verified += 1
                    report.feeder_days_incomplete += not fd.complete
                store.put_many("releases", kept)
                store.put("meta", (f"unanswered/{grp.group_id}",), json.dumps(log))
            finally:
                for t in tsms:
                    t.close()
                for card in cards.values():
                    card.close()
            return out, ok

        sums: dict[str, np.ndarray] = {}
        complete: dict[str, np.ndarray] = {}
        for f in feeders:
            sums[f.feeder_id], complete[f.feeder_id] = aggregate(groups[f.feeder_id], f, range(len(days)))
            store.put_many("feeder_days", [
                ((f.feeder_id, day.isoformat()),
                 FeederReading(f.feeder_id, day, tuple(int(x) for x in f.feeder_wh[cal.day_slices[k]]))
                 .signed(demo_feeder_key()).to_bytes())
                for k, day in enumerate(days)])
        # 4. detection, localisation, suspect profiles
        sizes = [len(f.customers) for f in feeders]
        cal_key = [params.start.isoformat(), params.days, params.seed, sizes, params.business_share, FAR]
        if store.meta("detector_key") == cal_key and store.meta("detector") is not None:
            det = CusumDetector(**store.meta("detector"))  # a resumed run: calibrated already
        else:
            det = _calibrate(params, sizes)
            store.put_many("meta", [(("detector",), json.dumps(asdict(det))), (("detector_key",), json.dumps(cal_key))])
        report.detector = asdict(det)
        wd = WithholdingDetector()
        report.withholding = {"p_outage": wd.p_outage, "far": wd.far, "horizon_days": params.days,
                              "threshold_days": wd.threshold(params.days),
                              "false_alarm_rate": wd.false_alarm_rate(params.days)}
        store.put("meta", ("losses",), json.dumps({f.feeder_id: [f.nominal.core_wh, f.nominal.resistive] for f in feeders}))
        labels = [dd.isoformat() for dd in days]
        until = max(1, params.days - ROUND_DAYS)
        ch_prof = expected_code_hash(PROFILING_CLASS)
        truth_rows: dict[str, ThiefRow] = {}
        for f in feeders:
            b_priv = balance(f.feeder_wh, sums[f.feeder_id], f.nominal, cal, complete[f.feeder_id])
            b_raw = balance(f.feeder_wh, f.recorded_wh.sum(axis=0), f.nominal, cal)
            a_priv = det.alarm_day(b_priv, until=until)
            a_raw = det.alarm_day(b_raw, until=until)
            whole = [bool(complete[f.feeder_id][sl].all()) for sl in cal.day_slices]
            silent = unanswered.get(groups[f.feeder_id].group_id, {})
            withheld = wd.alarms(silent, params.days)
            judged = b_priv.energy[~np.isnan(b_priv.energy)]
            row = FeederRow(f.feeder_id, len(f.customers), len(f.thefts), sum(whole), len(whole) - sum(whole),
                            round(float(judged.mean()), 3) if len(judged) else float("nan"),
                            labels[a_priv] if a_priv is not None else "-", labels[a_raw] if a_raw is not None else "-",
                            days_unbalanced=unbalanced_days(b_priv),
                            missing_days={c: len(set(v)) for c, v in sorted(silent.items())},
                            withholding={c: labels[k] for c, k in withheld.items()})
            report.feeders.append(row)
            rank_raw: dict[str, tuple[int, int]] = {}
            if a_raw is not None:
                rank_raw = _raw_ranks(f, cal, a_raw, b_raw, labels)
            for t in f.thefts:
                stolen = float((f.true_wh[f.customers.index(t.customer)] - f.recorded_wh[f.customers.index(t.customer)]).sum())
                truth_rows[t.customer] = ThiefRow(
                    t.customer, f.feeder_id, t.kind, labels[t.start_day], round(t.intensity, 2), round(stolen / 1000, 1),
                    row.alarm_private, row.alarm_raw, 0, rank_raw.get(t.customer, (0, 0))[1], 0, 0.0,
                    rank_raw.get(t.customer, (0, 0))[0], row.withholding.get(t.customer, "-"))
                if t.customer in row.withholding:  # the alarm names it: a group of one, first
                    truth_rows[t.customer].group_private, truth_rows[t.customer].rank_private = 1, 1
            if a_priv is None:
                continue

            def segment_sums(a: int, e: int, hours: slice, f: Feeder = f) -> tuple[np.ndarray, np.ndarray]:
                # the tested half is an aggregation group of its own, for the round's days
                # (published in the feeder's registry before any release)
                k0, k1 = int(cal.day[hours.start]), int(cal.day[hours.stop - 1])
                sub = registries[f.feeder_id].group(_segment_id(f.feeder_id, a, e, first_day))
                store.put("groups", (sub.group_id,), sub.to_bytes())
                s_wh, ok = aggregate(sub, f, range(k0, k1 + 1))
                return s_wh[hours], ok[hours]

            loc = localise(f, cal, a_priv, min_size=MIN_GROUP, threshold=_segment_threshold(), round_days=ROUND_DAYS,
                           complete=complete[f.feeder_id], segment_sums=segment_sums)
            store.put("meta", (f"localisation/{f.feeder_id}",), json.dumps(
                {"alarm": labels[a_priv], "rounds": loc.rounds, "last_day": labels[max(loc.last_day, a_priv)],
                 "segments": [[f.customers[s.first : s.end], s.discrepancy] for s in loc.segments]}))
            last = max(loc.last_day, a_priv)
            first_k = max(0, last - SCORE_DAYS + 1)
            # neighbours' shape: the feeder's verified sum. One ``suspects`` release per
            # customer and period (the customer's cycle cell), profiles signed by the grid
            # operator's own profile key, which the customers pinned (docs/fraud.md).
            sps = period_suspect_profiles(cal, first_k, last, b_priv.hourly, sums[f.feeder_id].astype(float), labels)
            series = {sp.profile_id: _suspect_series(f.feeder_id, sp, first_day, last_day, tz) for sp in sps}
            signed = {k: sign_series(v, demo_grid_key()) for k, v in series.items()}
            for sg in signed.values():
                store.put("profiles", (sg.series.series_id,), _dump(sg))
            for s in loc.segments:
                members = f.customers[s.first : s.end]
                row.narrowed.append(members)
                stats = {}
                for c in members:
                    card = card_of(c)
                    try:
                        with settlement._tsm(card, "grid-operator") as tsm:
                            mb = AppletMailbox(tsm, PROFILING_APP_AID)
                            for sg in signed.values():
                                mb.push_series(sg)
                            raw = mb.request(b"\x21" + _day(first_day) + _day(last_day)
                                             + ",".join(v.series_id for v in series.values()).encode(), f"suspect scores of {c}")
                    except (HubRefused, TSMError) as exc:
                        report.rejected.append(f"{c}: suspect scores: {exc}")
                        continue
                    finally:
                        card.close()
                    store.put_many("scores", [((c, first_day.isoformat(), last_day.isoformat()), raw)])
                    store.put("meta", (f"suspects/{c}",), json.dumps(
                        {series[sp.profile_id].series_id: [sp.profile_id, sp.kind] for sp in sps}))
                    sc = ProfileScores.from_json(raw)
                    v = verify_scores(sc, utility.registration(c), utility.day_commitments(c, first_day, last_day),
                                      {s2.series_id: s2 for s2 in series.values()}, code_hash=ch_prof)
                    if not v.ok:
                        report.rejected.append(f"{c}: suspect scores: {v.reason}")
                        continue
                    by_id = {e.series_id: e.score for e in sc.scores}
                    n_hours = sc.count // g
                    stats[c] = suspect_statistics(n_hours, sc.energy_wh, sc.squares,
                                                  {sp.profile_id: by_id[series[sp.profile_id].series_id] for sp in sps}, sps)
                lik = suspect_likelihoods(stats)
                order = sorted(lik, key=lambda c: -lik[c][1])
                for c in order:
                    report.likelihoods[c] = round(lik[c][1], 4)
                    if c in truth_rows and truth_rows[c].withheld_private == "-":
                        truth_rows[c].group_private = len(members)
                        truth_rows[c].rank_private = order.index(c) + 1
                        truth_rows[c].likelihood_private = round(lik[c][1], 4)
        report.thieves = [truth_rows[c] for c in sorted(truth_rows)]
    finally:
        store.close()
        utility.close()
        hubs.close()
    return report


def _dump(signed: Any) -> bytes:
    from ..tariffs.price_index import dump_series

    return dump_series(signed)


def _segment_id(feeder_id: str, a: int, e: int, first_day: date) -> str:
    return f"{feeder_id}-{a}-{e}-{first_day:%Y%m%d}"


def _segment_threshold() -> float:
    """The check-meter threshold: 1% of a segment's energy over a round (the study's
    calibrated 99th percentile of honest segments is 0.4-0.5%, docs/fraud.md)."""
    return 1.0


def _raw_ranks(f: Feeder, cal: Any, alarm: int, b: Any, labels: list[str]) -> dict[str, tuple[int, int]]:
    """The same localisation and ranking on raw readings (segments down to one customer)."""
    loc = localise(f, cal, alarm, min_size=1, threshold=_segment_threshold(), round_days=ROUND_DAYS)
    last = max(loc.last_day, alarm)
    first_k = max(0, last - SCORE_DAYS + 1)
    window = slice(cal.day_slices[first_k].start, cal.day_slices[last].stop)
    out = {}
    for s in loc.segments:
        rows = list(range(s.first, s.end))
        x = f.recorded_wh[rows][:, window].astype(float)
        sps = suspect_profiles(cal, window, b.hourly, f.recorded_wh.sum(axis=0).astype(float), labels)
        stats = {f.customers[i]: suspect_statistics(x.shape[1], float(xi.sum()), float(xi @ xi),
                                                    {p.profile_id: float(p.weights @ xi) for p in sps}, sps)
                 for i, xi in zip(rows, x, strict=True)}
        lik = suspect_likelihoods(stats)
        order = sorted(lik, key=lambda c: -lik[c][1])
        for c in order:
            out[c] = (order.index(c) + 1, len(rows))
    return out


def format_report(r: FraudReport) -> str:
    if r.note:
        return f"Fraud detection: {r.note}"
    out = [
        f"Fraud detection {r.period_from}..{r.period_to}: {r.feeder_days_verified} feeder-days verified by private "
        f"aggregation ({r.feeder_days_incomplete} incomplete after a recovery round, {r.group_days_unavailable} "
        f"without a sum: no present set the hubs' recovery rule admits), {len(r.rejected)} rejected; "
        f"verified sums equal the readings: {'yes' if r.sums_equal_readings else 'NO'}",
        f"CUSUM (calibrated on {r.detector.get('honest_feeders', 0)} honest simulated feeders, "
        f"{100 * r.detector.get('far', 0):.0f}% false alarms over {r.detector.get('horizon_days', 0)} days): "
        f"energy k={r.detector.get('k_energy', 0):.2f}% h={r.detector.get('h_energy', 0):.2f}, "
        f"shape k={r.detector.get('k_shape', 0):.2f}% h={r.detector.get('h_shape', 0):.2f}",
        _withholding_line(r.withholding),
        f"{'feeder':<9} {'cust':>4} {'thieves':>7} {'mean disc.':>10} {'alarm (private)':>15} {'alarm (raw)':>11}  narrowed groups",
    ]
    for f in r.feeders:
        out.append(f"{f.feeder:<9} {f.customers:>4} {f.thieves:>7} {f.discrepancy_pct:>9.2f}% {f.alarm_private:>15} "
                   f"{f.alarm_raw:>11}  {'; '.join(','.join(g) for g in f.narrowed) or '-'}")
        if f.days_unbalanced:
            out.append(f"{'':<9} not balanced on {f.days_unbalanced} of {f.days_complete + f.days_incomplete} days; "
                       "did not answer: " + (", ".join(f"{c} {n} day(s)" for c, n in f.missing_days.items()) or "-"))
        for c, day in f.withholding.items():
            out.append(f"{'':<9} WITHHOLDING {c}: missing on {f.missing_days.get(c, 0)} days, alarm {day}")
    out.append(f"{'thief':<9} {'kind':<9} {'from':<10} {'records':>7} {'stolen':>8} {'group':>5} {'rank':>4} "
               f"{'likelihood':>10} {'raw group':>9} {'raw rank':>8} {'withheld':>10}")
    for t in r.thieves:
        out.append(f"{t.customer:<9} {t.kind:<9} {t.start:<10} {100 * t.recorded_fraction:>6.0f}% {t.stolen_kwh:>6.1f}kWh "
                   f"{t.group_private:>5} {t.rank_private:>4} {t.likelihood_private:>10.3f} {t.group_raw:>9} {t.rank_raw:>8} "
                   f"{t.withheld_private:>10}")
    out.append("the grid operator saw feeder sums and, for narrowed groups only, suspect-profile scores: no reading")
    for why in r.rejected:
        out.append(f"REJECTED {why}")
    return "\n".join(out)


def _withholding_line(w: dict[str, Any]) -> str:
    """The withholding alarm's parameters (:class:`meterhub.utility.theft.WithholdingDetector`)."""
    if not w:
        return "withholding alarm: -"
    return (f"withholding alarm: a member missing on more than {w['threshold_days']} of {w['horizon_days']} days "
            f"(honest outage {100 * w['p_outage']:.0f}% of days: {w['false_alarm_rate']:.1e} false alarms per member)")


def _recorded_days(d: Path, hubs: Any, meter_id: str, days: list[date]) -> list[tuple[int, list[Any]]]:
    """The openings a meter's hub holds for ``days``, opened by its hub card (the
    records in ``hub.sqlite`` are sealed by the card, docs/privacy.md)."""
    from ..hub.secure_element import VaultClient, open_vault_card

    card = open_vault_card(d / "hubs" / f"{meter_id}.sqlite")
    try:
        with hubs.attached(meter_id, VaultClient(card.transmit)):
            return [hubs.openings(meter_id, day, day) for day in days]
    finally:
        card.close()
