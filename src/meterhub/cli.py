"""The ``meterhub`` command line.

``meterhub demo`` runs the whole system; ``meterhub meter``, ``meterhub hub``
and ``meterhub utility`` let each party act on its own files, in the exchange
formats of docs/formats.md. Exit codes: 0 success, 1 something was rejected,
2 a usage or input error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from . import __version__

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or unreadable input; printed as one line, exit 2."""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def _number(
    kind: type, what: str, lo: float, hi: float, *, lo_open: bool = False
) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``),
    with a one-line message otherwise."""

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if v > hi or v < lo or (lo_open and v == lo):
            if hi == float("inf"):
                raise argparse.ArgumentTypeError(f"must be at least {lo:g}: {v}")
            left = "(" if lo_open else "["
            raise argparse.ArgumentTypeError(f"must be in {left}{lo:g}, {hi:g}]: {v}")
        return v

    return parse


_positive = _number(int, "an integer", 1, float("inf"))
_port = _number(int, "a port number", 0, 65535)
_fraction = _number(float, "a number", 0.0, 1.0)
_seconds = _number(float, "a number of seconds", 0.0, 86400.0, lo_open=True)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def _lines(path: str, what: str) -> list[str]:
    try:
        text = _read(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None
    return [ln for ln in text.splitlines() if ln.strip()]


def _write(path: str | Path, data: str | bytes) -> None:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        p.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {p}: {exc.strerror}") from None


# -- demo -------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, DemoParams, format_table, run_demo, summary_json, tqdm_progress
    from .tariffs import example_signed_tariff

    params = DemoParams(
        households=args.households,
        days=args.days,
        interval_minutes=args.interval,
        seed=args.seed,
        start=args.start,
        data_dir=Path(args.data_dir),
        business_share=args.business_share,
        price_index_csv=Path(args.price_index) if args.price_index else None,
    )
    if params.price_index_csv is not None:
        from .settlement_demo import check_index_csv

        try:
            check_index_csv(params)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--price-index: {exc}") from None
    progress = None if args.no_progress else tqdm_progress()
    try:
        results = run_demo(params, progress=progress)
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    from .settlement_demo import format_report
    from .settlement_demo import run as run_settlement

    report = run_settlement(params)  # settlement and forecasting (issue 6)
    from .dr_demo import format_report as format_dr
    from .dr_demo import run as run_dr

    dr = run_dr(params)  # demand response (issue 14)
    t = example_signed_tariff().tariff
    if args.json:
        doc = json.loads(summary_json(params, results, t.currency, t.subunits_per_unit))
        doc["settlement"] = report.to_dict()
        doc["demand_response"] = dr.to_dict()
        print(json.dumps(doc, indent=2))
    else:
        print(format_table(results, t.currency, t.subunits_per_unit))
        print()
        print(format_report(report))
        print()
        print(format_dr(dr))
    ok = all(r.verified for r in results) and report.all_verified and dr.all_verified
    return EXIT_OK if ok else EXIT_REJECTED


# -- meter ------------------------------------------------------------------
def cmd_meter_simulate(args: argparse.Namespace) -> int:
    from .exchange import new_home_link_key
    from .meter.store import MeterStore
    from .meter.timebase import day_starts

    out = Path(args.out)
    mid = args.meter_id
    if args.csv:
        from .meter.csv_import import CsvImportError, read_readings_csv

        try:
            starts, readings = read_readings_csv(args.csv, interval_minutes=args.interval)
        except (CsvImportError, OSError) as exc:
            raise UsageError(f"{args.csv}: {exc}") from None
    else:
        from .meter.load import simulate_load

        try:
            trace = simulate_load(
                mid,
                args.start,
                args.days,
                annual_kwh=args.annual_kwh,
                profile=args.profile,
                interval_minutes=args.interval,
                seed=args.seed,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        starts, readings = trace.starts, trace.readings_wh
    store = MeterStore(out / "meter.sqlite")
    try:
        store.provision(mid, args.tz, args.interval, new_home_link_key())
        info = store.info(mid)
        if info.interval_minutes != args.interval or info.tz != args.tz:
            raise UsageError(f"meter {mid} exists with {info.interval_minutes}-minute intervals in {info.tz}")
        meter = store.load(mid)
        by_start = dict(zip(starts, readings, strict=True))
        if not starts:
            raise UsageError("no readings to record")
        from .meter.timebase import local_day_of

        day = local_day_of(starts[0], args.tz)
        last = local_day_of(starts[-1], args.tz)
        recorded = 0
        while day <= last:
            grid = day_starts(day, args.tz, args.interval)
            if meter.last_day is None or day > meter.last_day:
                missing = [s for s in grid if s not in by_start]
                if missing:
                    raise UsageError(f"no reading for {missing[0].isoformat()}: only whole local days are recorded")
                store.record_day(meter, day, [by_start[s] for s in grid])
                recorded += 1
            day += timedelta(days=1)
        reg = {
            "format": "meterhub/meter-registration/v1",
            "meter_id": mid,
            "public_key": info.public_key.hex(),
            "tz": info.tz,
            "interval_minutes": info.interval_minutes,
        }
        _write(out / f"{mid}.meter.json", json.dumps(reg, indent=2) + "\n")
        _write(out / f"{mid}.homelink.key", info.home_link_key.hex() + "\n")
        uploads, sealed = [], []
        for up, se in store.outbox(mid):
            uploads.append(up.to_json())
            sealed.append(se.to_json())
        _write(out / f"{mid}.uploads.jsonl", "\n".join(uploads) + "\n")
        _write(out / f"{mid}.homelink.jsonl", "\n".join(sealed) + "\n")
    finally:
        store.close()
    print(f"meter {mid}: recorded {recorded} new day(s); files in {out}")
    return EXIT_OK


def cmd_meter_serve(args: argparse.Namespace) -> int:
    import contextlib

    from .meter.serve import ServeError, run_serve

    if args.days is not None:
        # Record the days first, exactly as `meter simulate --out DATA_DIR` would
        # (its report goes to stderr: stdout carries the one line with the ports).
        sim = argparse.Namespace(
            out=args.data_dir, meter_id=args.meter_id, start=args.start, days=args.days,
            interval=args.interval, tz=args.tz, seed=args.seed, annual_kwh=args.annual_kwh,
            profile="h0", csv=None,
        )
        with contextlib.redirect_stdout(sys.stderr):
            cmd_meter_simulate(sim)
    try:
        run_serve(
            args.data_dir, args.meter_id, host=args.host, dlms_port=args.dlms, sml_port=args.sml,
            cadence=args.sml_cadence, announce=lambda line: print(line, flush=True),
        )
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


def cmd_meter_read(args: argparse.Namespace) -> int:
    from .meter.serve import ServeError, parse_endpoint, read_public, reader_keys

    try:
        host, port = parse_endpoint(args.dlms)
        keys = reader_keys(args.key_file) if args.key_file else None
        r = read_public(host, port, profile=args.profile, timeout=args.timeout, quiet=True, keys=keys)
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    unit = "Wh" if r.unit == 30 else f"unit {r.unit}"
    role = "public client" if keys is None else "public and management client"
    print(f"meter   {r.meter_id} at {host}:{port} ({role})")
    print(f"clock   0.0.1.0.0.255   {r.clock.isoformat()}")
    if r.energy_wh is not None:
        print(f"energy  1.0.1.8.0.255   {r.energy_wh} x 10^{r.scaler} {unit}")
    if args.profile:
        print(f"profile 1.0.99.1.0.255  {len(r.profile)} rows (interval end, cumulative {unit})")
        for t, v in r.profile:
            print(f"  {t.isoformat()}  {v}")
    return EXIT_OK

def _registration(path: str) -> dict:
    from .crypto import ecdsa
    from .meter.timebase import check_interval, check_tz

    try:
        reg = json.loads(_read(path, "meter registration"))
        if reg.get("format") != "meterhub/meter-registration/v1":
            raise ValueError("not a meterhub meter registration")
        reg["public_key_bytes"] = bytes.fromhex(reg["public_key"])
        ecdsa.load_verifying_key(reg["public_key_bytes"])
        check_interval(reg["interval_minutes"])
        check_tz(reg["tz"])
        if not isinstance(reg["meter_id"], str):
            raise ValueError("meter_id must be a string")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path}: bad meter registration ({exc})") from None
    return reg


def _signed_tariff(path: str, supplier_key_path: str | None):
    from .tariffs import TariffError, load_tariff, verify_tariff

    try:
        signed = load_tariff(_read(path, "tariff"))
    except TariffError as exc:
        raise UsageError(f"{path}: {exc}") from None
    if supplier_key_path is None:
        return signed, signed.tariff
    key = _read(supplier_key_path, "supplier key").strip()
    try:
        tariff = verify_tariff(signed, bytes.fromhex(key.decode()))
    except (TariffError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    return signed, tariff


# -- tariff -----------------------------------------------------------------
def cmd_tariff_example(args: argparse.Namespace) -> int:
    from .crypto import ecdsa
    from .tariffs import demo_supplier_key, dump_tariff, example_signed_tariff

    _write(args.out, dump_tariff(example_signed_tariff()))
    if args.key_out:
        _write(args.key_out, ecdsa.public_bytes(demo_supplier_key()).hex() + "\n")
    print(f"wrote {args.out} (signed with the public demo supplier key; never use it for real)")
    return EXIT_OK


def cmd_tariff_check(args: argparse.Namespace) -> int:
    _, t = _signed_tariff(args.file, args.supplier_key)
    print(
        f"tariff {t.tariff_id} v{t.version}: {len(t.bands)} bands, valid {t.valid_from}..{t.valid_until}"
        + (", signature verified" if args.supplier_key else ", signature NOT checked (no --supplier-key)")
    )
    return EXIT_OK


# -- hub --------------------------------------------------------------------
def cmd_hub_bill(args: argparse.Namespace) -> int:
    from .exchange import FormatError, SealedDay
    from .hub.billing import bill_statement
    from .hub.proving import prove_bill
    from .hub.store import HubError, HubStore
    from .tariffs import TariffError
    from .tariffs.nonlinear import NonLinearTariff

    reg = _registration(args.meter)
    _, tariff = _signed_tariff(args.tariff, args.supplier_key)
    try:
        key = bytes.fromhex(_read(args.key, "home-link key").decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits") from None
    if len(key) != 16:
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits (16 bytes)")
    if args.to < args.from_:
        raise UsageError("--to is before --from")
    hub = HubStore(Path(args.data_dir) / "hub.sqlite")
    try:
        hub.pair_meter(reg["meter_id"], key, reg["tz"], reg["interval_minutes"])
        for n, line in enumerate(_lines(args.homelink, "home-link file"), 1):
            try:
                hub.receive(SealedDay.from_json(line))
            except (FormatError, HubError) as exc:
                raise UsageError(f"{args.homelink}:{n}: {exc}") from None
        try:
            tariff.check_valid_on(args.from_)
            tariff.check_valid_on(args.to)
            first_index, openings = hub.openings(reg["meter_id"], args.from_, args.to)
            if isinstance(tariff, NonLinearTariff):
                # Non-linear tariffs: a proven (v2) statement (docs/nonlinear.md).
                st = prove_bill(
                    meter_id=reg["meter_id"],
                    tariff=tariff,
                    period_from=args.from_,
                    period_to=args.to,
                    first_index=first_index,
                    openings=openings,
                    tz=reg["tz"],
                    interval_minutes=reg["interval_minutes"],
                )
            else:
                prices = tariff.period_prices(
                    args.from_, (args.to - args.from_).days + 1, reg["tz"], reg["interval_minutes"]
                )
                st = bill_statement(
                    meter_id=reg["meter_id"],
                    tariff=tariff,
                    period_from=args.from_,
                    period_to=args.to,
                    first_index=first_index,
                    prices=prices,
                    openings=openings,
                )
        except (HubError, TariffError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        hub.save_statement(reg["meter_id"], args.from_, args.to, st.to_json())
    finally:
        hub.close()
    text = json.dumps(st.to_dict(), indent=2, sort_keys=True) + "\n"
    if args.out:
        _write(args.out, text)
        print(f"bill {st.total / st.subunits_per_unit:.2f} {st.currency} for {reg['meter_id']} -> {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_hub_serve(args: argparse.Namespace) -> int:
    from .hub.serve import ServeError, serve

    try:
        return serve(args.data_dir, args.vpcd)
    except ServeError as exc:
        raise UsageError(str(exc)) from None


# -- utility ----------------------------------------------------------------
def cmd_utility_verify(args: argparse.Namespace) -> int:
    from .exchange import DayUpload, FormatError
    from .hub.proving import statement_from_json
    from .tariffs import dump_tariff
    from .utility.store import UtilityStore

    reg = _registration(args.meter)
    signed, _ = _signed_tariff(args.tariff, args.supplier_key)
    uploads = []
    for n, line in enumerate(_lines(args.uploads, "uploads file"), 1):
        try:
            uploads.append(DayUpload.from_json(line))
        except FormatError as exc:
            print(f"REJECTED {args.uploads}:{n}: {exc}")
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
        for up in uploads:
            res = store.ingest_day(up)
            if not res.accepted:
                print(f"REJECTED upload: {res.reason}")
                return EXIT_REJECTED
        try:
            st = statement_from_json(_read(args.statement, "bill statement"))
        except FormatError as exc:
            print(f"REJECTED {args.statement}: {exc}")
            return EXIT_REJECTED
        verdict = store.verify_statement(st)
    finally:
        store.close()
    if verdict.ok:
        print(
            f"VERIFIED {st.meter_id} {st.period_from}..{st.period_to}: "
            f"{st.total / st.subunits_per_unit:.2f} {st.currency}"
        )
        return EXIT_OK
    print(f"REJECTED {st.meter_id} {st.period_from}..{st.period_to}: {verdict.reason}")
    return EXIT_REJECTED


def cmd_utility_bills(args: argparse.Namespace) -> int:
    from .utility.store import UtilityStore

    path = Path(args.data_dir) / "utility.sqlite"
    if not path.exists():
        raise UsageError(f"no utility database at {path}")
    store = UtilityStore(path)
    try:
        rows = store.bill_verdicts()
    finally:
        store.close()
    for meter_id, pf, pt, ok, reason in rows:
        state = "pending" if ok is None else "verified" if ok else "REJECTED: " + reason
        print(f"{meter_id}\t{pf}..{pt}\t{state}")
    return EXIT_OK if all(r[3] for r in rows) else EXIT_REJECTED


def _stored_results(args: argparse.Namespace, fn_name: str) -> int:
    from . import settlement_demo

    try:
        lines, rejected = getattr(settlement_demo, fn_name)(Path(args.data_dir))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    for line in lines:
        print(line)
    for why in rejected:
        print(f"REJECTED {why}")
    return EXIT_OK if not rejected else EXIT_REJECTED


def cmd_utility_settle(args: argparse.Namespace) -> int:
    """Re-verify stored settlement statements and print each supplier's share."""
    return _stored_results(args, "settle_stored")


def cmd_utility_dr(args: argparse.Namespace) -> int:
    """Re-verify stored demand-response releases; verified reduction and payment per event and feeder."""
    from .dr_demo import verify_stored

    try:
        lines, rejected = verify_stored(Path(args.data_dir))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    for line in lines:
        print(line)
    for why in rejected:
        print(f"REJECTED {why}")
    return EXIT_OK if not rejected else EXIT_REJECTED


def cmd_utility_forecast(args: argparse.Namespace) -> int:
    """Re-verify stored profile scores and samples and print each customer's class."""
    return _stored_results(args, "forecast_stored")


# -- parser -----------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own code)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="meterhub", description="Privacy-preserving smart metering.")
    p.add_argument("--version", action="version", version=f"meterhub {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="simulate a neighbourhood: meters, hub and utility")
    d.add_argument("--households", type=_positive, default=20)
    d.add_argument("--days", type=_positive, default=30)
    d.add_argument("--interval", type=int, default=15, help="minutes: 1, 5, 15, 30 or 60")
    d.add_argument("--seed", type=int, default=2027)
    d.add_argument("--start", type=_date, default=date(2027, 3, 15))
    d.add_argument("--data-dir", default="meterhub-data")
    d.add_argument("--json", action="store_true", help="machine-readable summary")
    d.add_argument("--business-share", type=_fraction, default=0.3, help="share of small businesses (0..1)")
    d.add_argument("--price-index", metavar="CSV", help="day-ahead prices 'start,EUR/MWh' for settlement")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("meter", help="the meter's side").add_subparsers(dest="meter_cmd", required=True, parser_class=_Parser)
    ms = m.add_parser("simulate", help="record days of readings (simulated or from CSV)")
    ms.add_argument("--meter-id", required=True)
    ms.add_argument("--start", type=_date, default=date(2027, 3, 15))
    ms.add_argument("--days", type=_positive, default=30)
    ms.add_argument("--interval", type=int, default=15)
    ms.add_argument("--tz", default="Europe/Berlin")
    ms.add_argument("--seed", type=int, default=0)
    ms.add_argument("--annual-kwh", type=float, default=3500.0)
    ms.add_argument("--profile", default="h0")
    ms.add_argument("--csv", help="read readings from CSV (timestamp,Wh) instead of simulating")
    ms.add_argument("--out", required=True, help="directory for the meter's state and output files")
    ms.set_defaults(func=cmd_meter_simulate)
    mv = m.add_parser("serve", help="serve the recorded days over DLMS/COSEM (and SML) until SIGINT/SIGTERM")
    mv.add_argument("--dlms", type=_port, default=4059, metavar="PORT", help="DLMS wrapper port (0: any free port)")
    mv.add_argument("--sml", type=_port, metavar="PORT", help="also push SML files on this port")
    mv.add_argument("--sml-cadence", type=_seconds, default=1.0, metavar="SECONDS")
    mv.add_argument("--host", default="127.0.0.1")
    mv.add_argument("--meter-id", required=True)
    mv.add_argument("--data-dir", default="meterhub-data", help="the meter's store (meter.sqlite)")
    mv.add_argument("--days", type=_positive, help="first simulate this many days, as `meter simulate` does")
    mv.add_argument("--start", type=_date, default=date(2027, 3, 15))
    mv.add_argument("--interval", type=int, default=15)
    mv.add_argument("--tz", default="Europe/Berlin")
    mv.add_argument("--seed", type=int, default=0)
    mv.add_argument("--annual-kwh", type=float, default=3500.0)
    mv.set_defaults(func=cmd_meter_serve)
    mr = m.add_parser("read", help="read a meter over DLMS/COSEM (public client; management client with --key-file)")
    mr.add_argument("--dlms", required=True, metavar="HOST:PORT")
    mr.add_argument("--profile", action="store_true", help="also read the load profile 1.0.99.1.0.255 (needs --key-file)")
    mr.add_argument(
        "--key-file", metavar="PATH",
        help="home-link key file (ID.homelink.key, hex): also read register and profile as the management client "
        "(default: none, the public client reads id and clock only)",
    )
    mr.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS")
    mr.set_defaults(func=cmd_meter_read)

    t = sub.add_parser("tariff", help="tariff files").add_subparsers(dest="tariff_cmd", required=True, parser_class=_Parser)
    te = t.add_parser("example", help="write the signed example tariff")
    te.add_argument("--out", required=True)
    te.add_argument("--key-out", help="also write the demo supplier's public key (hex)")
    te.set_defaults(func=cmd_tariff_example)
    tc = t.add_parser("check", help="validate a tariff file and its signature")
    tc.add_argument("file")
    tc.add_argument("--supplier-key", help="file with the supplier's public key (hex)")
    tc.set_defaults(func=cmd_tariff_check)

    h = sub.add_parser("hub", help="the hub's side").add_subparsers(dest="hub_cmd", required=True, parser_class=_Parser)
    hb = h.add_parser("bill", help="compute a bill statement from the home-link openings")
    hb.add_argument("--meter", required=True, help="meter registration (ID.meter.json)")
    hb.add_argument("--key", required=True, help="home-link key file (hex)")
    hb.add_argument("--homelink", required=True, help="sealed openings (ID.homelink.jsonl)")
    hb.add_argument("--tariff", required=True)
    hb.add_argument("--supplier-key", help="verify the tariff signature with this key")
    hb.add_argument("--from", dest="from_", type=_date, required=True)
    hb.add_argument("--to", type=_date, required=True, help="last day, inclusive")
    hb.add_argument("--data-dir", default="meterhub-data")
    hb.add_argument("--out", help="write the statement here instead of stdout")
    hb.set_defaults(func=cmd_hub_bill)
    hs = h.add_parser("serve", help="serve the hub's secure element to pcscd's vpcd driver (docs/pcsc.md)")
    hs.add_argument("--vpcd", default="127.0.0.1:35963", metavar="HOST:PORT", help="where vpcd listens")
    hs.add_argument("--data-dir", default="meterhub-data")
    hs.set_defaults(func=cmd_hub_serve)

    u = sub.add_parser("utility", help="the utility's side").add_subparsers(dest="utility_cmd", required=True, parser_class=_Parser)
    uv = u.add_parser("verify", help="verify a bill statement against signed commitments")
    uv.add_argument("--meter", required=True, help="meter registration (ID.meter.json)")
    uv.add_argument("--uploads", required=True, help="signed batches and commitments (ID.uploads.jsonl)")
    uv.add_argument("--tariff", required=True)
    uv.add_argument("--supplier-key", required=True, help="file with the supplier's public key (hex)")
    uv.add_argument("--statement", required=True)
    uv.add_argument("--data-dir", default="meterhub-data")
    uv.set_defaults(func=cmd_utility_verify)
    ub = u.add_parser("bills", help="list stored bill verdicts")
    ub.add_argument("--data-dir", default="meterhub-data")
    ub.set_defaults(func=cmd_utility_bills)
    us = u.add_parser("settle", help="verify stored settlement statements; shares per supplier")
    us.add_argument("--data-dir", default="meterhub-data")
    us.set_defaults(func=cmd_utility_settle)
    uf = u.add_parser("forecast", help="verify stored profile scores and samples; classes per customer")
    uf.add_argument("--data-dir", default="meterhub-data")
    uf.set_defaults(func=cmd_utility_forecast)
    udr = u.add_parser("dr", help="re-verify stored demand-response releases; reductions and payments per feeder")
    udr.add_argument("--data-dir", default="meterhub-data", help="the demo's data directory (default: meterhub-data)")
    udr.set_defaults(func=cmd_utility_dr)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import sqlite3

    from .storage import StoreError

    try:
        return int(args.func(args))
    except (UsageError, StoreError) as exc:
        print(f"meterhub: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.DatabaseError as exc:  # a data-dir file that is not what it should be
        print(f"meterhub: error: database: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("meterhub: interrupted; committed work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
