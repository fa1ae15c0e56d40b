"""Re-verify the fraud-detection data stored in a data directory (``meterhub utility
fraud``, the utility dashboard; docs/fraud.md), and :class:`FraudStore`, where the grid
operator keeps what it received (``fraud.sqlite``).

Every feeder-day is verified again from the stored masked releases and recoveries
against the meters' signed commitments in ``utility.sqlite``, every group against the
grid operator's signed group registry; balance, alarms and the suspects' likelihoods are
recomputed from the verified sums only. The withholding alarm
(:class:`meterhub.utility.theft.WithholdingDetector`) counts the days each member of a
feeder group did not answer, from the grid operator's own log (meta
``unanswered/<group>``: no signature can prove a silence), checked against the stored
releases: a member logged silent must not be in a verified day's sum; without a log
(an older store) the members a day's releases lack count.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ...crypto import ecdsa
from ...model.demo_keys import FEEDER_METER, demo_signing_key
from ...model.formats.aggregation import (
    FeederReading,
    GroupDefinition,
    MaskedRelease,
    RecoveryRelease,
)
from ...model.grid import LossModel, hour_calendar
from ...storage.sqlite import open_db, transaction
from ..theft import (
    CusumDetector,
    SuspectProfile,
    WithholdingDetector,
    balance,
    suspect_likelihoods,
    suspect_statistics,
    unbalanced_days,
)
from .settlement import PROFILING_CLASS

__all__ = ["ROUND_DAYS", "FraudStore", "demo_feeder_key", "fraud_stored"]

#: Days of one localisation round: an alarm is looked for until the last round starts.
ROUND_DAYS = 4
_SCHEMA = """
CREATE TABLE groups (group_id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE feeder_days (feeder_id TEXT, day TEXT, body BLOB NOT NULL, PRIMARY KEY (feeder_id, day));
CREATE TABLE releases (group_id TEXT, day TEXT, meter_id TEXT, kind TEXT, body BLOB NOT NULL,
                       PRIMARY KEY (group_id, day, meter_id, kind));
CREATE TABLE scores (meter_id TEXT, period_from TEXT, period_to TEXT, body BLOB NOT NULL,
                     PRIMARY KEY (meter_id, period_from, period_to));
CREATE TABLE profiles (series_id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""


def demo_feeder_key() -> ecdsa.SigningKey:
    """The demo feeder meters' P-256 key, PUBLICLY KNOWN (from a public string)."""
    return demo_signing_key(FEEDER_METER)


class FraudStore:
    """What the grid operator received (``fraud.sqlite``)."""

    def __init__(self, path: Path) -> None:
        self.conn = open_db(path, _SCHEMA, schema_version=1)

    def close(self) -> None:
        self.conn.close()

    _COLS = {"groups": 1, "feeder_days": 2, "releases": 4, "scores": 3, "profiles": 1, "meta": 1}

    def put(self, table: str, key: tuple[str, ...], body: bytes | str) -> None:
        self.put_many(table, [(key, body)])

    def put_many(self, table: str, rows: list[tuple[tuple[str, ...], bytes | str]]) -> None:
        """Insert or replace rows in one transaction."""
        cols = self._COLS[table]
        if any(len(k) != cols for k, _ in rows):
            raise ValueError("wrong key")
        with transaction(self.conn):
            self.conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({','.join('?' * (cols + 1))})",
                                  [(*k, b) for k, b in rows])

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return self.conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() if table != "meta" else \
            self.conn.execute("SELECT * FROM meta ORDER BY key").fetchall()

    def meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])


def fraud_stored(data_dir: Path, collect: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """Re-verify every stored feeder-day and recompute balance and alarms; (lines, rejections).
    ``collect`` (the utility dashboard) receives ``feeders``: per feeder its days, daily
    feeder energy, verified customer sum, expected technical loss and discrepancy, the
    detector's allowance, alarm day and localisation segments, the days not balanced and
    the withholding alarms."""
    from ...model.timebase import range_starts
    from ..fraud import AGGREGATION_CLASS, demo_grid_key, verify_feeder_day
    from ..settlement import expected_code_hash
    from ..store import UtilityStore
    from ..verifier import Rejected

    if not (data_dir / "fraud.sqlite").exists() or not (data_dir / "utility.sqlite").exists():
        raise FileNotFoundError(f"no fraud-detection data in {data_dir} (run `meterhub demo` first)")
    store = FraudStore(data_dir / "fraud.sqlite")
    utility = UtilityStore(data_dir / "utility.sqlite")
    lines: list[str] = []
    rejected: list[str] = []
    try:
        det_d = store.meta("detector")
        losses = store.meta("losses") or {}
        if det_d is None:
            raise FileNotFoundError(f"no fraud-detection results in {data_dir}")
        det = CusumDetector(**det_d)
        grid_key = demo_grid_key().public_key()
        feeder_key = demo_feeder_key().public_key()
        code_hash = bytes.fromhex(expected_code_hash(AGGREGATION_CLASS))
        releases: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}
        for gid, day, mid, kind, body in store.rows("releases"):
            releases.setdefault((gid, day), {}).setdefault(kind, {})[mid] = bytes(body)
        readings = {(fid, day): bytes(body) for fid, day, body in store.rows("feeder_days")}
        lines.append(f"{'feeder':<9} {'days':>4} {'incomplete':>10} {'mean disc.':>10} {'alarm':>11}  localisation")
        wd = WithholdingDetector()
        feeder_groups = set((store.meta("feeder_groups") or {}).values())
        registries = _stored_registries(store, {fid for fid, _ in readings}, rejected)
        lines[:0] = [f"group registry of {fid}: {len(reg.blocks)} block(s), {len(reg.view.groups)} groups, "
                     "no household in their span (checked as every hub checks it)"
                     for fid, reg in sorted(registries.items())]
        sub_days = 0
        unavailable = 0
        for gid, body in store.rows("groups"):
            try:
                grp = GroupDefinition.from_bytes(bytes(body))
            except ValueError as exc:
                rejected.append(f"group {gid}: {exc}")
                continue
            if not grp.verify(grid_key):
                rejected.append(f"group {gid}: signature does not verify under the grid operator's key")
                continue
            listed = registries[grp.feeder_id].view.groups.get(gid) if grp.feeder_id in registries else None
            if listed is None or listed.body() != grp.body():
                rejected.append(f"group {gid}: not in the group registry of {grp.feeder_id}")
                continue
            tz = utility.registration(grp.members[0].meter_id).tz
            n_days = (grp.valid_to - grp.valid_from).days + 1
            if gid not in feeder_groups:  # a localisation subgroup: re-verify its days
                for k in range(n_days):
                    day = grp.valid_from + timedelta(days=k)
                    got = releases.get((gid, day.isoformat()), {})
                    if not got:  # a published segment is asked only on the days a round tests it
                        continue
                    try:
                        rel = {m: MaskedRelease.from_bytes(b) for m, b in got.get("release", {}).items()}
                        rec = {m: RecoveryRelease.from_bytes(b) for m, b in got.get("recovery", {}).items()}
                        if rel and set(rel) != grp.meter_ids and not rec:
                            unavailable += 1  # the hubs refused the recovery: no sum that day
                            continue
                        verify_feeder_day(grp, day, rel, rec, {m: utility.registration(m) for m in rel},
                                          {m: utility.day_commitments(m, day, day) for m in rel}, code_hash=code_hash)
                        sub_days += 1
                    except (Rejected, ValueError, KeyError) as exc:
                        rejected.append(f"{gid} {day}: {exc}")
                continue
            cal = hour_calendar(range_starts(grp.valid_from, n_days, tz, 60), tz)
            f_wh = np.zeros(len(cal.day))
            s_wh = np.zeros(len(cal.day))
            ok = np.zeros(len(cal.day), dtype=bool)
            incomplete = 0
            log = store.meta(f"unanswered/{gid}")
            if log is not None and not isinstance(log, dict):
                rejected.append(f"{gid}: the log of members that did not answer is not a mapping of days")
            silent: dict[str, list[int]] = {}
            for k in range(n_days):
                day = grp.valid_from + timedelta(days=k)
                sl = cal.day_slices[k]
                got = releases.get((gid, day.isoformat()), {})
                logged = log.get(day.isoformat()) if isinstance(log, dict) else None
                day_silent = sorted(grp.meter_ids - set(got.get("release", {}))) if logged is None else logged
                raw_f = readings.get((grp.feeder_id, day.isoformat()))
                try:
                    if raw_f is None:
                        raise Rejected("no feeder meter reading")
                    fr = FeederReading.from_bytes(raw_f)
                    if not fr.verify(feeder_key) or fr.feeder_id != grp.feeder_id or fr.day != day:
                        raise Rejected("feeder meter reading does not verify")
                    rel = {m: MaskedRelease.from_bytes(b) for m, b in got.get("release", {}).items()}
                    rec = {m: RecoveryRelease.from_bytes(b) for m, b in got.get("recovery", {}).items()}
                    if not isinstance(day_silent, list) or not all(isinstance(m, str) for m in day_silent):
                        raise Rejected("the log of members that did not answer is not a list of meter ids")
                    if set(day_silent) - grp.meter_ids:
                        raise Rejected(f"the log names {sorted(set(day_silent) - grp.meter_ids)[0]} silent, not a member")
                    if (rel or day_silent) and not rec:  # the unmasking round did not finish: no sum
                        unavailable += 1
                        for m in day_silent:  # every member the operator could not reach that day
                            silent.setdefault(m, []).append(k)
                        continue
                    regs = {m: utility.registration(m) for m in rel}
                    comms = {m: utility.day_commitments(m, day, day) for m in rel}
                    fd = verify_feeder_day(grp, day, rel, rec, regs, comms, code_hash=code_hash)
                    if set(day_silent) & set(fd.present):
                        raise Rejected(f"the log names {sorted(set(day_silent) & set(fd.present))[0]} silent, "
                                       "but its release is in the verified sum")
                    for m in day_silent:
                        silent.setdefault(m, []).append(k)
                    if len(fr.hours) != len(fd.hours):
                        raise Rejected("feeder reading and sums differ in length")
                except (Rejected, ValueError, KeyError) as exc:
                    rejected.append(f"{gid} {day}: {exc}")
                    continue
                f_wh[sl] = fr.hours
                s_wh[sl] = fd.hours
                ok[sl] = fd.complete
                incomplete += not fd.complete
            nominal = LossModel(*losses.get(grp.feeder_id, (0.0, 0.0)))
            b = balance(f_wh, s_wh, nominal, cal, ok)
            alarm = det.alarm_day(b, until=max(1, n_days - ROUND_DAYS))
            withheld = wd.alarms(silent, n_days)
            not_balanced = unbalanced_days(b)
            loc = store.meta(f"localisation/{grp.feeder_id}")
            where = "-"
            if loc is not None:
                where = " | ".join(
                    f"{','.join(ms)} ({disc:.2f}%)" if disc == disc else ",".join(ms) for ms, disc in loc["segments"])
            if collect is not None:
                from ..theft import expected_loss

                loss = expected_loss(f_wh, nominal)
                collect.setdefault("feeders", []).append({
                    "feeder": grp.feeder_id, "incomplete": incomplete, "k_energy": det.k_energy,
                    "days": [grp.valid_from + timedelta(days=k) for k in range(n_days)],
                    "feeder_wh": [float(f_wh[sl].sum()) for sl in cal.day_slices],
                    "sum_wh": [float(s_wh[sl].sum()) for sl in cal.day_slices],
                    "loss_wh": [float(loss[sl].sum()) for sl in cal.day_slices],
                    "discrepancy_pct": [float(x) for x in b.energy],
                    "alarm": None if alarm is None else grp.valid_from + timedelta(days=alarm),
                    "localisation": loc, "members": sorted(grp.meter_ids), "tz": tz,
                    "hourly_sum_wh": [float(x) for x in s_wh], "hourly_ok": [bool(x) for x in ok],
                    "days_unbalanced": not_balanced,
                    "missing_days": {m: len(set(v)) for m, v in sorted(silent.items())},
                    "withholding": {m: grp.valid_from + timedelta(days=d) for m, d in withheld.items()},
                })
            lines.append(f"{grp.feeder_id:<9} {n_days:>4} {incomplete:>10} {_judged_mean(b.energy):>9.2f}% "
                         f"{(grp.valid_from + timedelta(days=alarm)).isoformat() if alarm is not None else '-':>11}  {where}")
            if not_balanced:
                lines.append(f"{'':<9} not balanced on {not_balanced} of {n_days} days; did not answer: "
                             + (", ".join(f"{m} {len(set(v))} day(s)" for m, v in sorted(silent.items())) or "-"))
            for m, d in withheld.items():
                lines.append(f"{'':<9} WITHHOLDING {m}: missing on {len(set(silent[m]))} of {n_days} days "
                             f"(threshold {wd.threshold(n_days)}), alarm {grp.valid_from + timedelta(days=d)}")
        lines.append(f"withholding alarm: a member missing on more than the threshold of the horizon's days "
                     f"(honest outage {100 * wd.p_outage:.0f}% of days, {wd.far:.0e} false alarms per member and horizon)")
        lines.extend(_stored_suspects(store, utility, rejected))
        lines.append(f"{len(readings)} feeder-days and {sub_days} localisation group-days re-verified from stored "
                     f"releases ({unavailable} without a sum: recovery refused), {len(rejected)} rejected")
    finally:
        store.close()
        utility.close()
    return lines, rejected


def _judged_mean(x: np.ndarray) -> float:
    """The mean over the days the balance judged (NaN when it judged none)."""
    judged = x[~np.isnan(x)]
    return float(judged.mean()) if len(judged) else float("nan")


def _stored_registries(store: FraudStore, feeders: set[str], rejected: list[str]) -> dict[str, Any]:
    """Each feeder's stored group registry, checked block by block under the grid
    operator's group key (chain, signatures, no household in the span)."""
    from ...model.group_registry import RegistryBlock
    from ..fraud import GroupRegistry, demo_grid_key
    from ..verifier import Rejected

    out = {}
    for fid in sorted(feeders):
        raw = store.meta(f"registry/{fid}")
        if raw is None:
            rejected.append(f"no group registry of {fid}")
            continue
        try:
            out[fid] = GroupRegistry.from_blocks(fid, demo_grid_key(),
                                                 [RegistryBlock.from_bytes(bytes.fromhex(b)) for b in raw])
        except (Rejected, ValueError) as exc:
            rejected.append(f"group registry of {fid}: {exc}")
    return out


def _stored_suspects(store: FraudStore, utility: Any, rejected: list[str]) -> list[str]:
    """Re-verify the stored suspect-profile score statements (signed profiles, the
    meters' commitments) and recompute each narrowed group's likelihoods from them."""
    from ...tariffs.price_index import KIND_LOAD_PROFILE, SeriesError, load_series, verify_series
    from ..forecasting import ProfileScores, verify_scores
    from ..fraud import demo_grid_key
    from ..settlement import expected_code_hash

    key = demo_grid_key().public_key()  # the grid operator's own profile signer, pinned by the customers
    series = {}
    for sid, body in store.rows("profiles"):
        try:
            series[sid] = verify_series(load_series(bytes(body)), key, kind=KIND_LOAD_PROFILE)
        except SeriesError as exc:
            rejected.append(f"suspect profile {sid}: {exc}")
    ch = expected_code_hash(PROFILING_CLASS)
    stats: dict[str, dict[str, float]] = {}
    for mid, pf, pt, body in store.rows("scores"):
        try:
            sc = ProfileScores.from_json(bytes(body))
            used = {e.series_id: series[e.series_id] for e in sc.scores}
            v = verify_scores(sc, utility.registration(mid), utility.day_commitments(
                mid, date.fromisoformat(pf), date.fromisoformat(pt)), used, code_hash=ch)
            if not v.ok:
                raise ValueError(v.reason)
            kinds = store.meta(f"suspects/{mid}") or {}
            sps = [SuspectProfile(kinds[sid][0], np.array(used[sid].values, dtype=float), kinds[sid][1]) for sid in used]
            g = sc.point_minutes // utility.registration(mid).interval_minutes
            stats[mid] = suspect_statistics(sc.count // g, sc.energy_wh, sc.squares,
                                            {kinds[e.series_id][0]: e.score for e in sc.scores}, sps)
        except (ValueError, KeyError) as exc:
            rejected.append(f"{mid} suspect scores: {exc}")
    out = []
    for key_name, _ in store.rows("meta"):
        if not key_name.startswith("localisation/"):
            continue
        for members, _disc in store.meta(key_name)["segments"]:
            lik = suspect_likelihoods({m: stats[m] for m in members if m in stats})
            if lik:
                ranked = sorted(lik, key=lambda m: -lik[m][1])
                out.append(f"  likelihoods in {key_name.split('/', 1)[1]} group {','.join(members)}: "
                           + ", ".join(f"{m} {lik[m][1]:.3f}" for m in ranked))
    return out
