"""Re-verify the settlement statements, profile scores and samples stored in a data
directory (``meterhub utility settle`` / ``utility forecast``, the utility dashboard;
docs/settlement.md).

Every figure is checked again against the meters' signed commitments in
``utility.sqlite`` and the signed price index and reference profiles stored with the
outputs in ``settlement.sqlite``; nothing is taken from a stored verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...model.aids import PROFILING_APP_AID, SETTLEMENT_APP_AID
from ...model.timebase import range_starts
from ...storage.sqlite import StoreError, expect_store
from ...tariffs.price_index import (
    KIND_LOAD_PROFILE,
    KIND_PRICE_INDEX,
    Series,
    demo_index_publisher_key,
    load_series,
    verify_series,
)
from ...tariffs.profiles import demo_profile_key
from ..forecasting import (
    ProfileScores,
    SampleRelease,
    classify,
    match_samples,
    match_scores,
    period_weights,
    verify_samples,
    verify_scores_batch,
)
from ..settlement import (
    SettlementStatement,
    SettlementStore,
    aggregate,
    expected_code_hash,
    verify_settlement,
)

__all__ = ["PROFILING_CLASS", "SETTLEMENT_CLASS", "class_name", "forecast_stored", "settle_stored"]

#: The applet classes whose code hashes the statements carry (:func:`expected_code_hash`).
SETTLEMENT_CLASS = "meterhub.applets.settlement/1"
PROFILING_CLASS = "meterhub.applets.profiling/1"


def class_name(series_id: str) -> str:
    """A reference profile's class as the reports show it (``bdew-h0`` -> ``h0``)."""
    return series_id.removeprefix("bdew-")


def _stored(data_dir: Path) -> tuple[Any, SettlementStore]:
    from ..store import UtilityStore

    names = ("settlement.sqlite", "utility.sqlite")
    if not any((data_dir / n).exists() or expect_store(data_dir / n) for n in names):
        raise FileNotFoundError(f"no settlement results in {data_dir} (run `meterhub demo` first)")
    # Present, or listed as created here: open_db refuses a missing, empty or corrupt one.
    store = SettlementStore(data_dir / "settlement.sqlite", create=False)
    try:
        if not (data_dir / "utility.sqlite").exists():
            raise StoreError(f"{data_dir / 'utility.sqlite'}: store missing; nothing can be verified")
        return UtilityStore(data_dir / "utility.sqlite"), store
    except BaseException:
        store.close()
        raise


def _signed(store: SettlementStore, kind: str, key: Any) -> dict[str, Series]:
    return {s.series_id: s for s in (verify_series(load_series(raw), key, kind=kind) for raw in store.series(kind))}


def settle_stored(data_dir: Path, collect: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """Re-verify every stored settlement statement; (output lines, rejections).
    ``collect`` (the utility dashboard) receives the verified per-supplier rows and the
    index scale as ``suppliers`` and ``scale``."""
    utility, store = _stored(data_dir)
    try:
        idx = _signed(store, KIND_PRICE_INDEX, demo_index_publisher_key())
        customers = store.customers()
        ch = expected_code_hash(SETTLEMENT_CLASS)
        rows, rejected, scale = [], [], 1
        stored = store.statements("settlement")
        if not stored:
            raise StoreError(f"{data_dir / 'settlement.sqlite'} holds no settlement statements (emptied?)")
        for mid, pf, pt, body in stored:
            if mid not in customers:
                rejected.append(f"{mid}: no customer record, so no supplier (customer table damaged?)")
                continue
            try:
                st = SettlementStatement.from_json(body)
                index = idx[st.index_id]
                scale = index.scale
                v = verify_settlement(st, utility.registration(mid), utility.day_commitments(mid, pf, pt), index, code_hash=ch,
                                      applet_aid=SETTLEMENT_APP_AID)
            except (ValueError, KeyError) as exc:
                rejected.append(f"{mid}: {exc}")
                continue
            if not v.ok:
                rejected.append(f"{mid}: {v.reason}")
                continue
            rows.append((customers[mid][0], st.energy_wh, st.value))
        lines = [f"{'supplier':<11} {'customers':>9} {'kWh':>11} {'energy share':>12} {'value EUR':>12} {'value share':>11}"]
        for s in aggregate(rows):
            lines.append(f"{s.supplier:<11} {s.customers:>9} {s.energy_wh / 1000:>11,.1f} {100 * s.energy_share:>11.2f}% "
                         f"{s.value / scale:>12,.2f} {100 * s.value_share:>10.2f}%")
        lines.append(f"{len(rows)} statements verified, {len(rejected)} rejected")
        if collect is not None:
            collect.update(suppliers=aggregate(rows), scale=scale)
        return lines, rejected
    finally:
        utility.close()
        store.close()


def forecast_stored(data_dir: Path, collect: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """Re-verify stored profile scores and samples and classify each customer.
    ``collect`` (the utility dashboard) receives ``classes``: (customer, class by samples,
    class by exact scores, best r) of every verified customer."""
    utility, store = _stored(data_dir)
    try:
        profiles = _signed(store, KIND_LOAD_PROFILE, demo_profile_key())
        ch = expected_code_hash(PROFILING_CLASS)
        samples = {(m, pf, pt): b for m, pf, pt, b in store.statements("samples")}
        lines = [f"{'customer':<10} {'by samples':>10} {'exact':>6} {'r':>7}"]
        rejected: list[str] = []
        scores = store.statements("scores")
        if not scores:
            raise StoreError(f"{data_dir / 'settlement.sqlite'} holds no profile scores (emptied?)")
        # Parse everything first, then verify every statement in one batch (one random
        # linear combination, verify_scores_batch); the verdicts name each failing one.
        parsed: dict[int, tuple] = {}
        for n, (mid, pf, pt, body) in enumerate(scores):
            try:
                parsed[n] = (ProfileScores.from_json(body), utility.registration(mid), utility.day_commitments(mid, pf, pt))
            except (ValueError, KeyError) as exc:
                rejected.append(f"{mid}: {exc}")
        order = sorted(parsed)
        batch = verify_scores_batch([parsed[n] for n in order], profiles, code_hash=ch, applet_aid=PROFILING_APP_AID)
        verdicts = dict(zip(order, batch, strict=True))
        for n, (mid, pf, pt, _) in enumerate(scores):
            if n not in parsed:
                continue
            try:
                sc, reg, days = parsed[n]
                v = verdicts[n]
                if not v.ok:
                    rejected.append(f"{mid} scores: {v.reason}")
                    continue
                starts = range_starts(pf, (pt - pf).days + 1, reg.tz, sc.point_minutes)
                weights = period_weights(profiles, starts)
                matches = match_scores(sc, weights)
                by_samples = "-"
                coin = store.coin(mid, pf, pt)
                # Every period has its coin toss recorded (a refused one with an empty hub
                # nonce); samples exist exactly when the toss was completed.
                if coin is None or coin[3] is None:
                    rejected.append(f"{mid} samples: no coin-toss record for {pf}..{pt} (store damaged?)")
                    continue
                if bool(coin[3]) != ((mid, pf, pt) in samples):
                    rejected.append(f"{mid} samples: " + ("missing" if coin[3] else "released without a coin toss"))
                    continue
                if coin[3]:
                    rel = SampleRelease.from_json(samples[(mid, pf, pt)])
                    v3 = verify_samples(rel, reg, days, commitment=coin[2], utility_nonce=coin[1],
                                        hub_commitment=coin[3], k=coin[0], code_hash=ch,
                                        applet_aid=PROFILING_APP_AID)
                    if not v3.ok:
                        rejected.append(f"{mid} samples: {v3.reason}")
                        continue
                    g = sc.point_minutes // reg.interval_minutes
                    by_samples = class_name(classify(match_samples(
                        [(s.index - rel.first_index, s.m) for s in rel.samples], weights, g)))
            except (ValueError, KeyError) as exc:
                rejected.append(f"{mid}: {exc}")
                continue
            lines.append(f"{mid:<10} {by_samples:>10} {class_name(classify(matches)):>6} {max(m.r for m in matches):>7.3f}")
            if collect is not None:
                collect.setdefault("classes", []).append(
                    (mid, by_samples, class_name(classify(matches)), max(m.r for m in matches)))
        lines.append(f"{len(lines) - 1} customers classified from verified outputs, {len(rejected)} rejected")
        return lines, rejected
    finally:
        utility.close()
        store.close()
