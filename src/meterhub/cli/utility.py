"""``meterhub utility``: the utility's side (verify bills, period bills, coverage, purge,
re-verify the stored settlement, forecasting, fraud and demand-response outputs);
the HTTP service's commands are :mod:`.utility_service`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_REJECTED
from .common import (
    UsageError,
    _date,
    _lines,
    _number,
    _Parser,
    _positive,
    _read,
    _registration,
    _write,
)


# -- utility ----------------------------------------------------------------
def _verified_tariff_or_reject(path: str, key_path: str) -> Any:
    """Read and verify a tariff for `utility verify` (docs/verification.md V06): an
    unreadable file or key is a usage error (exit 2); a tariff that is malformed or
    not signed by the supplier key is a rejected input (``None``; the caller exits 1)."""
    from ..model.display import shown
    from ..tariffs import TariffError, load_tariff, verify_tariff

    raw = _read(path, "tariff")
    key_text = _read(key_path, "supplier key").strip()
    try:
        key = bytes.fromhex(key_text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{key_path}: supplier key is not hex") from None
    try:
        signed = load_tariff(raw)
        verify_tariff(signed, key)
    except TariffError as exc:
        print(f"REJECTED tariff {shown(path)}: {shown(str(exc))}")
        return None
    return signed


def cmd_utility_verify(args: argparse.Namespace) -> int:
    from ..model.display import shown
    from ..model.errors import FormatError
    from ..model.formats.upload import DayUpload
    from ..utility.verifier import Rejected, check_delivery

    reg = _registration(args.meter)
    signed = _verified_tariff_or_reject(args.tariff, args.supplier_key)
    if signed is None:
        return EXIT_REJECTED
    uploads = []
    for n, line in enumerate(_lines(args.uploads, "uploads file"), 1):
        try:
            uploads.append((n, DayUpload.from_json(line)))
        except FormatError as exc:
            print(f"REJECTED {shown(args.uploads)}:{n}: {shown(str(exc))}")
            return EXIT_REJECTED
    try:  # V08/V09: the file itself is one meter's contiguous chain of days
        uploads = check_delivery(uploads, reg["meter_id"])
    except Rejected as exc:
        print(f"REJECTED {shown(args.uploads)}: {shown(str(exc))}")
        return EXIT_REJECTED
    from ..storage.sqlite import data_dir_lock

    with data_dir_lock(args.data_dir):
        return _utility_verify_locked(args, reg, signed, uploads)


def _utility_verify_locked(args: argparse.Namespace, reg: dict, signed: Any, uploads: list) -> int:
    from ..hub.proving import statement_from_json
    from ..model.display import format_amount, shown
    from ..model.errors import FormatError
    from ..tariffs import dump_tariff
    from ..utility.store import UtilityStore

    try:
        st = statement_from_json(_read(args.statement, "bill statement"))
    except FormatError as exc:
        print(f"REJECTED {shown(args.statement)}: {shown(str(exc))}")
        return EXIT_REJECTED
    store = UtilityStore(Path(args.data_dir) / "utility.sqlite")
    try:
        store.add_tariff(signed, dump_tariff(signed))
        try:
            store.register_meter(
                reg["meter_id"], reg["public_key_bytes"], reg["tz"], reg["interval_minutes"], tariff=signed
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for n, up in uploads:
            res = store.ingest_day(up)
            if not res.accepted:
                print(f"REJECTED {shown(args.uploads)}:{n}: {shown(res.reason)}")
                return EXIT_REJECTED
        if st.meter_id != reg["meter_id"]:
            print(f"REJECTED statement is for meter {st.meter_id!r}, not {reg['meter_id']!r}")
            return EXIT_REJECTED
        verdict = store.verify_statement(
            st, metering_point=args.metering_point, contract_id=args.contract
        )
        energy = _verified_energy_text(store, st) if verdict.ok else ""
    finally:
        store.close()
    period = f"{shown(st.meter_id)} {st.period_from}..{st.period_to}"
    if verdict.ok:
        print(f"VERIFIED {period}: {format_amount(st.total, st.subunits_per_unit, st.currency)}{energy}")
        return EXIT_OK
    print(f"REJECTED {period}: {shown(verdict.reason)}")
    return EXIT_REJECTED


def _verified_energy_text(store: Any, st: Any) -> str:
    """For a verified v3 statement: metering point, kWh per band and the meter-signed
    registers (docs/verification.md V01, V26-V29), appended to the VERIFIED line."""
    from ..model.display import shown
    from ..model.formats.statements import BandedBillStatement
    from ..utility.verifier import period_registers

    if not isinstance(st, BandedBillStatement):
        return ""
    bands = ", ".join(f"{shown(b.name)} {_kwh(b.energy_wh)}" for b in st.bands)
    text = f"; {st.metering_point} contract {shown(st.contract_id)}; {_kwh(st.energy_wh)} kWh ({bands})"
    regs = period_registers(store.day_commitments(st.meter_id, st.period_from, st.period_to))
    if regs is not None:
        text += f"; register {_kwh(regs[0])} -> {_kwh(regs[1])} kWh"
    return text


def _kwh(wh: int) -> str:
    """Wh as kWh with three decimals, exact."""
    return f"{wh // 1000}.{wh % 1000:03d}"


def _open_utility_store(data_dir: str) -> Any:
    """The utility's store under ``data_dir``; a listed store that is missing, empty or
    corrupt is refused (storage.expect_store), a never-created one is a usage error."""
    from ..storage.sqlite import expect_store
    from ..utility.store import UtilityStore

    path = Path(data_dir) / "utility.sqlite"
    if not path.exists() and not expect_store(path):
        raise UsageError(f"no utility database at {path}")
    return UtilityStore(path)


def cmd_utility_bills(args: argparse.Namespace) -> int:
    """Every stored verdict (the history, oldest first per period), then each meter's coverage."""
    from ..model.display import shown
    from ..storage.sqlite import data_dir_lock
    from ..utility.store import day_ranges

    with data_dir_lock(args.data_dir):
        store = _open_utility_store(args.data_dir)
        try:
            rows = store.bill_verdicts()
            coverage = [store.coverage(m) for m in store.meter_ids()]
        finally:
            store.close()
    for meter_id, pf, pt, ok, reason in rows:
        state = "pending" if ok is None else "verified" if ok else "REJECTED: " + shown(reason)
        print(f"{shown(meter_id)}\t{pf}..{pt}\t{state}")
    for c in coverage:
        print(
            f"coverage {shown(c.meter_id)}: {len(c.uploaded)} days uploaded, {len(c.billed)} billed, "
            f"unbilled: {day_ranges(c.unbilled)}"
        )
    return EXIT_OK if all(r[3] for r in rows) else EXIT_REJECTED


def cmd_utility_coverage(args: argparse.Namespace) -> int:
    """Per meter: days with uploads, days covered by a verified bill, unbilled days (V22)."""
    from ..model.display import shown
    from ..utility.store import day_ranges

    store = _open_utility_store(args.data_dir)
    try:
        meters = store.meter_ids()
        if args.meter is not None:
            if args.meter not in meters:
                raise UsageError(f"meter {shown(args.meter)} is not registered")
            meters = [args.meter]
        coverage = [store.coverage(m) for m in meters]
    finally:
        store.close()
    for c in coverage:
        print(f"meter {shown(c.meter_id)}")
        print(f"  uploaded: {day_ranges(c.uploaded)}")
        print(f"  billed:   {day_ranges(c.billed)}")
        print(f"  unbilled: {day_ranges(c.unbilled)}")
    return EXIT_OK


def cmd_utility_period_bill(args: argparse.Namespace) -> int:
    """A contract period's bill from v3 statements plus substitute values for uncovered
    days; recorded in invoices.sqlite with its history (docs/billing-operations.md)."""
    from ..model.display import format_amount, shown
    from ..model.errors import FormatError
    from ..model.formats.bill_parts import statements_of
    from ..model.formats.upload import DayUpload
    from ..storage.sqlite import data_dir_lock
    from ..utility.billing_export import to_csv, to_json
    from ..utility.invoices import BillRefused, InvoiceStore, make_period_bill

    statements = []
    for path in args.statement or []:
        try:  # a v3 statement, or the card's bill parts (docs/formats.md)
            statements.extend(statements_of(_read(path, "bill statement")))
        except FormatError as exc:
            print(f"REJECTED {shown(path)}: {shown(str(exc))}")
            return EXIT_REJECTED
    uploads = []
    for path in args.uploads or []:
        for n, line in enumerate(_lines(path, "uploads file"), 1):
            try:
                uploads.append((f"{path}:{n}", DayUpload.from_json(line)))
            except FormatError as exc:
                print(f"REJECTED {shown(path)}:{n}: {shown(str(exc))}")
                return EXIT_REJECTED
    with data_dir_lock(args.data_dir):
        store = _open_utility_store(args.data_dir)
        inv = InvoiceStore(Path(args.data_dir) / "invoices.sqlite")
        try:
            for where, up in uploads:
                res = store.ingest_day(up)
                if not res.accepted:
                    print(f"REJECTED {shown(where)}: {shown(res.reason)}")
                    return EXIT_REJECTED
            try:
                bill = make_period_bill(
                    store, statements, meter_id=args.meter_id, metering_point=args.metering_point,
                    contract_id=args.contract, period_from=args.from_, period_to=args.to,
                )
            except KeyError as exc:
                raise UsageError(str(exc).strip("'\"")) from None
            except BillRefused as exc:
                print(f"REJECTED {shown(args.meter_id)} {args.from_}..{args.to}: {shown(str(exc))}")
                return EXIT_REJECTED
            try:
                version, corr = inv.record(bill)
            except BillRefused as exc:
                print(f"REJECTED {shown(args.meter_id)} {args.from_}..{args.to}: {shown(str(exc))}")
                return EXIT_REJECTED
            history = inv.history(args.meter_id)
        finally:
            inv.close()
            store.close()
    amount = format_amount(bill.total, bill.subunits_per_unit, bill.currency)
    line = (
        f"BILL {shown(args.meter_id)} {args.from_}..{args.to} {bill.metering_point} {shown(bill.contract_id)} "
        f"v{version}: {bill.status}, {_kwh(bill.energy_wh)} kWh"
        + (f" (estimated {_kwh(bill.estimated_wh)} kWh: "
           + ", ".join(f"{e.first_day}..{e.last_day} by {e.method}" for e in bill.estimates) + ")"
           if bill.estimates else "")
        + f", {amount}"
    )
    if corr is not None:
        sign = "+" if corr.total >= 0 else "-"
        line += (
            f"; corrects v{version - 1} ({corr.old_status}): {'+' if corr.energy_wh >= 0 else '-'}"
            f"{_kwh(abs(corr.energy_wh))} kWh, {sign}{format_amount(abs(corr.total), bill.subunits_per_unit, bill.currency)}"
        )
    print(line)
    if args.export_csv:
        _write(args.export_csv, to_csv(history))
    if args.export_json:
        _write(args.export_json, to_json(history))
    return EXIT_OK


def cmd_utility_purge(args: argparse.Namespace) -> int:
    """GDPR erasure of one meter's data from the utility's stores (docs/personal-data.md)."""
    from ..model.display import shown
    from ..storage.sqlite import StoreError, data_dir_lock
    from ..utility.purge import purge_meter

    if not Path(args.data_dir).is_dir():
        raise UsageError(f"no data directory {args.data_dir}")
    with data_dir_lock(args.data_dir):
        try:
            counts = purge_meter(args.data_dir, args.meter)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
    done = ", ".join(f"{name} {n} rows" for name, n in counts.items()) or "no utility stores"
    print(f"purged meter {shown(args.meter)}: {done}")
    return EXIT_OK


def _stored_results(args: argparse.Namespace, verify_stored: Callable[[Path], tuple[list[str], list[str]]]) -> int:
    """Re-verify what the demo stored under ``--data-dir`` with ``verify_stored`` (lines
    to print, rejections) under the data-dir lock; exit 1 on any rejection."""
    from ..model.display import shown
    from ..storage.sqlite import data_dir_lock

    d = Path(args.data_dir)
    if not d.is_dir():
        raise UsageError(f"no stored results in {d} (run `meterhub demo` first)")
    with data_dir_lock(d):
        try:
            lines, rejected = verify_stored(d)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    for line in lines:  # lines and reasons quote stored ids: escaped (docs/verification.md V01)
        print(shown(line))
    for why in rejected:
        print(f"REJECTED {shown(why)}")
    return EXIT_OK if not rejected else EXIT_REJECTED


def cmd_utility_settle(args: argparse.Namespace) -> int:
    """Re-verify stored settlement statements and print each supplier's share."""
    from ..utility.reverify.settlement import settle_stored

    return _stored_results(args, settle_stored)


def cmd_utility_dr(args: argparse.Namespace) -> int:
    """Re-verify stored demand-response releases; verified reduction and payment per event and feeder."""
    from ..utility.reverify.dr import verify_stored

    return _stored_results(args, verify_stored)


def cmd_utility_forecast(args: argparse.Namespace) -> int:
    """Re-verify stored profile scores and samples and print each customer's class; with
    ``--dp-release``, check one DP forecast release instead (docs/privacy.md)."""
    if args.dp_release:
        return _dp_release(args)
    from ..utility.reverify.settlement import forecast_stored

    return _stored_results(args, forecast_stored)


def _dp_release(args: argparse.Namespace) -> int:
    """``utility forecast --dp-release FILE``: the release's format, applet, code hash and
    the policy fields (whole period, hours, epsilon cap, clip, unit) against ``--policy``."""
    from ..applets.profiling import CLASS_NAME
    from ..hub.secure_element import PROFILING_APP_AID
    from ..model.display import shown
    from ..model.formats.dp_forecast import DpForecastRelease
    from ..policy import PolicyError, ReleasePolicy, default_policy, load_policy
    from ..utility.forecasting import verify_dp_release
    from ..utility.settlement import expected_code_hash

    policy = default_policy()
    if args.policy:
        try:
            raw_pol = Path(args.policy).read_bytes()
            doc = json.loads(raw_pol)
            signed = isinstance(doc, dict) and set(doc) == {"policy", "signature"}
            policy = load_policy(raw_pol).policy if signed else ReleasePolicy.from_dict(doc)
        except OSError as exc:
            raise UsageError(f"cannot read {args.policy}: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UsageError(f"{args.policy}: not JSON") from None
        except PolicyError as exc:
            raise UsageError(f"{args.policy}: {exc}") from None
    try:
        raw = Path(args.dp_release).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.dp_release}: {exc.strerror}") from None
    asked = [p for p in args.profiles.split(",") if p] if args.profiles else None
    try:
        rel = DpForecastRelease.from_json(raw)
        verify_dp_release(rel, policy, applet_aid=PROFILING_APP_AID, code_hash=expected_code_hash(CLASS_NAME),
                          asked=asked)
    except ValueError as exc:
        print(f"REJECTED {shown(str(exc))}")
        return EXIT_REJECTED
    print(shown(f"{rel.meter_id} {rel.period_from}..{rel.period_to}: class {rel.klass}, energy {rel.energy_wh} Wh "
                f"(DP noise at epsilon {rel.epsilon_milli / 1000}, clip {rel.clip_wh} Wh, unit {rel.unit_hours} h; "
                f"format, applet and policy fields verified, the figures cannot be)"))
    return EXIT_OK


def cmd_utility_fraud(args: argparse.Namespace) -> int:
    """Re-verify stored feeder sums and recompute balance, alarms and localisation."""
    from ..utility.reverify.fraud import fraud_stored

    return _stored_results(args, fraud_stored)


def cmd_utility_fraud_study(args: argparse.Namespace) -> int:
    """Detection rate, false positives, days to detection, investigations: private vs raw."""
    from ..demo.fraud_study import StudyParams, format_study, run_study

    report = run_study(StudyParams(feeders=args.feeders, days=args.days, seed=args.seed, far=args.far))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_study(report))
    return EXIT_OK




def add_utility_parsers(sub: Any) -> None:
    """``meterhub utility ...``; the service commands are :mod:`.utility_service`."""
    u = sub.add_parser("utility", help="the utility's side").add_subparsers(dest="utility_cmd", required=True, parser_class=_Parser)
    uv = u.add_parser("verify", help="verify a bill statement against signed commitments")
    uv.add_argument("--meter", required=True, help="meter registration (ID.meter.json)")
    uv.add_argument("--uploads", required=True, help="signed batches and commitments (ID.uploads.jsonl)")
    uv.add_argument("--tariff", required=True, help="the customer's signed tariff (JSON)")
    uv.add_argument("--supplier-key", required=True, help="file with the supplier's public key (hex)")
    uv.add_argument("--statement", required=True, help="the hub's bill statement (JSON)")
    uv.add_argument("--data-dir", default="meterhub-data", help="the utility's state (utility.sqlite)")
    uv.add_argument("--metering-point", metavar="MALO", help="the meter's metering point; a v3 statement must name it (default: not checked)")
    uv.add_argument("--contract", metavar="ID", help="the customer's contract id; a v3 statement must name it (default: not checked)")
    uv.set_defaults(func=cmd_utility_verify)
    ub = u.add_parser("bills", help="list stored bill verdicts")
    ub.add_argument("--data-dir", default="meterhub-data", help="the utility's state (utility.sqlite)")
    ub.set_defaults(func=cmd_utility_bills)
    upb = u.add_parser("period-bill", help="a contract period's bill: verified v3 statements plus estimates for missing days")
    upb.add_argument("--meter-id", required=True, help="the meter (registered in utility.sqlite)")
    upb.add_argument("--metering-point", required=True, metavar="MALO", help="the contract's MaLo-ID or MeLo-ID")
    upb.add_argument("--contract", required=True, metavar="ID", help="the contract id")
    upb.add_argument("--from", dest="from_", type=_date, required=True, metavar="DATE", help="first day of the period")
    upb.add_argument("--to", type=_date, required=True, metavar="DATE", help="last day, inclusive")
    upb.add_argument("--statement", action="append", help="a v3 statement or the card's bill parts (a release or its correction) inside the period; repeatable (default: none, all estimated)")
    upb.add_argument("--uploads", action="append", help="ingest these uploads first (late days); repeatable (default: none)")
    upb.add_argument("--export-csv", metavar="FILE", help="write the meter's bill history as CSV (default: none)")
    upb.add_argument("--export-json", metavar="FILE", help="write the meter's bill history as JSON (default: none)")
    upb.add_argument("--data-dir", default="meterhub-data", help="directory holding utility.sqlite and invoices.sqlite (default: meterhub-data)")
    upb.set_defaults(func=cmd_utility_period_bill)
    up = u.add_parser("purge", help="erase one meter's data from the utility's stores (GDPR; docs/personal-data.md)")
    up.add_argument("--meter", required=True, help="the meter id whose data is erased")
    up.add_argument("--data-dir", default="meterhub-data", help="directory holding the utility's stores (default: meterhub-data)")
    up.set_defaults(func=cmd_utility_purge)
    uc = u.add_parser("coverage", help="per meter: days uploaded, billed and unbilled (docs/verification.md V22)")
    uc.add_argument("--meter", help="only this meter (default: every registered meter)")
    uc.add_argument("--data-dir", default="meterhub-data", help="directory holding utility.sqlite (default: meterhub-data)")
    uc.set_defaults(func=cmd_utility_coverage)
    us = u.add_parser("settle", help="verify stored settlement statements; shares per supplier")
    us.add_argument("--data-dir", default="meterhub-data", help="the demo's data directory")
    us.set_defaults(func=cmd_utility_settle)
    uf = u.add_parser("forecast", help="verify stored profile scores and samples; classes per customer")
    uf.add_argument("--data-dir", default="meterhub-data", help="the demo's data directory")
    uf.add_argument("--dp-release", metavar="FILE", default=None,
                    help="instead: check one DP forecast release (meterhub-dp-forecast/1) against the policy "
                    "(default: none, verify the stored exact scores)")
    uf.add_argument("--policy", metavar="FILE", default=None,
                    help="with --dp-release: the household's release policy, JSON as `meterhub hub policy show --json` "
                    "prints or a signed policy file, whose signature is not checked here (default: the default "
                    "policy, calendar months)")
    uf.add_argument("--profiles", metavar="IDS", default=None,
                    help="with --dp-release: the comma-separated profile ids the request named (default: not checked)")
    uf.set_defaults(func=cmd_utility_forecast)
    from .utility_service import add_utility_service_parsers

    add_utility_service_parsers(u)  # serve, push, keys, verify-all (docs/service.md)

    ur = u.add_parser("fraud", help="re-verify stored feeder sums; balance, alarms, localisation (issue 13)")
    ur.add_argument("--data-dir", default="meterhub-data", help="the demo's data directory (default: meterhub-data)")
    ur.add_argument("--study", action="store_true", help="run the simulation study instead (docs/fraud.md)")
    ur.add_argument("--feeders", type=_positive, default=40, help="study: feeders simulated (default: 40)")
    ur.add_argument("--days", type=_number(int, "an integer", 20, 366), default=60, help="study: days (default: 60)")
    ur.add_argument("--seed", type=int, default=13, help="study: seed (default: 13)")
    ur.add_argument("--far", type=_number(float, "a number", 0.0, 0.5, lo_open=True), default=0.05,
                    help="study: target false-alarm rate over the horizon (default: 0.05)")
    ur.add_argument("--json", action="store_true", help="study: machine-readable report")
    ur.set_defaults(func=lambda a: cmd_utility_fraud_study(a) if a.study else cmd_utility_fraud(a))
    udr = u.add_parser("dr", help="re-verify stored demand-response releases; reductions and payments per feeder")
    udr.add_argument("--data-dir", default="meterhub-data", help="the demo's data directory (default: meterhub-data)")
    udr.set_defaults(func=cmd_utility_dr)
