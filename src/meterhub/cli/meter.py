"""``meterhub meter``: the meter's side (simulate, serve over DLMS/COSEM and SML, read).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from .common import (
    MAX_METER_DAYS,
    MAX_METER_READINGS,
    UsageError,
    _annual_kwh,
    _date,
    _meter_days,
    _meter_id,
    _Parser,
    _port,
    _seconds,
    _setup_logging,
    _write,
)
from .config import LOG_LEVELS


# -- meter ------------------------------------------------------------------
def cmd_meter_simulate(args: argparse.Namespace) -> int:
    from ..meter.store import MeterStore
    from ..model.formats.sealed import new_home_link_key
    from ..model.timebase import check_interval, check_tz, day_starts

    out = Path(args.out)
    mid = args.meter_id
    try:  # validate before anything is saved: a bad zone must not reach the store
        check_tz(args.tz)
        check_interval(args.interval)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.csv and args.interval > 0 and args.days * (1440 // args.interval) > MAX_METER_READINGS:
        raise UsageError(
            f"--days {args.days} at {args.interval}-minute intervals is {args.days * (1440 // args.interval)} "
            f"readings; at most {MAX_METER_READINGS} (fewer days or a longer interval)"
        )
    if args.csv:
        from ..meter.csv_import import CsvImportError, read_readings_csv

        try:
            starts, readings = read_readings_csv(args.csv, interval_minutes=args.interval)
        except (CsvImportError, OSError) as exc:
            raise UsageError(f"{args.csv}: {exc}") from None
    else:
        from ..meter.load import simulate_load

        try:
            trace = simulate_load(
                mid,
                args.start,
                args.days,
                annual_kwh=args.annual_kwh,
                profile=args.profile,
                interval_minutes=args.interval,
                tz=args.tz,
                seed=args.seed,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        starts, readings = trace.starts, trace.readings_wh
    if not starts:
        raise UsageError("no readings to record")
    from ..model.timebase import local_day_of
    from ..storage.sqlite import data_dir_lock

    by_start = dict(zip(starts, readings, strict=True))
    first_day, last = local_day_of(starts[0], args.tz), local_day_of(starts[-1], args.tz)
    with data_dir_lock(out):
        store = MeterStore(out / "meter.sqlite")
        try:
            known = mid in store.meter_ids()
            if known:
                info = store.info(mid)
                if info.interval_minutes != args.interval or info.tz != args.tz:
                    raise UsageError(f"meter {mid} exists with {info.interval_minutes}-minute intervals in {info.tz}")
            last_day = store.info(mid).last_day if known else None
            # Every new day must be whole before the first one is recorded.
            days: list[tuple[date, list[int]]] = []
            day = first_day
            while day <= last:
                if last_day is None or day > last_day:
                    grid = day_starts(day, args.tz, args.interval)
                    missing = [s for s in grid if s not in by_start]
                    if missing:
                        raise UsageError(f"no reading for {missing[0].isoformat()}: only whole local days are recorded")
                    days.append((day, [by_start[s] for s in grid]))
                day += timedelta(days=1)
            store.provision(mid, args.tz, args.interval, new_home_link_key())
            info = store.info(mid)
            meter = store.load(mid)
            for day, values in days:
                store.record_day(meter, day, values)
            recorded = len(days)
            reg = {
                "format": "meterhub/meter-registration/v1",
                "meter_id": mid,
                "public_key": info.public_key.hex(),
                "tz": info.tz,
                "interval_minutes": info.interval_minutes,
            }
            _write(out / f"{mid}.meter.json", json.dumps(reg, indent=2) + "\n")
            _write(out / f"{mid}.homelink.key", info.home_link_key.hex() + "\n", secret=True)
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

    from ..meter.serve import ServeError, run_serve

    _setup_logging(args)
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
    from ..meter.serve import ServeError, parse_endpoint, read_public, reader_keys

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



def add_meter_parsers(sub: Any) -> None:
    """``meterhub meter simulate|serve|read``."""
    m = sub.add_parser("meter", help="the meter's side").add_subparsers(dest="meter_cmd", required=True, parser_class=_Parser)
    ms = m.add_parser("simulate", help="record days of readings (simulated or from CSV)")
    ms.add_argument("--meter-id", type=_meter_id, required=True,
                    help="the meter's identifier: 1-64 of letters, digits, . _ - (it names the output files)")
    ms.add_argument("--start", type=_date, default=date(2027, 3, 15), help="first local day (YYYY-MM-DD)")
    ms.add_argument("--days", type=_meter_days, default=30,
                    help=f"number of local days to simulate, at most {MAX_METER_DAYS} and {MAX_METER_READINGS} readings in all")
    ms.add_argument("--interval", type=int, default=15, help="minutes: 1, 5, 15, 30 or 60")
    ms.add_argument("--tz", default="Europe/Berlin", help="the meter's IANA time zone (local days)")
    ms.add_argument("--seed", type=int, default=0, help="seed of the simulated consumption")
    ms.add_argument("--annual-kwh", type=_annual_kwh, default=3500.0, help="simulated yearly consumption in kWh")
    ms.add_argument("--profile", default="h0", help="BDEW standard load profile (h0, h0_dyn, g0..g6, l0..l2)")
    ms.add_argument("--csv", help="read readings from CSV (timestamp,Wh) instead of simulating (default: none, simulate)")
    ms.add_argument("--out", required=True, help="directory for the meter's state and output files")
    ms.set_defaults(func=cmd_meter_simulate)
    mv = m.add_parser("serve", help="serve the recorded days over DLMS/COSEM (and SML) until SIGINT/SIGTERM")
    mv.add_argument("--dlms", type=_port, default=4059, metavar="PORT", help="DLMS wrapper port (0: any free port)")
    mv.add_argument("--sml", type=_port, metavar="PORT", help="also push SML files on this port (default: none, no SML)")
    mv.add_argument("--sml-cadence", type=_seconds, default=1.0, metavar="SECONDS", help="seconds between SML pushes")
    mv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    mv.add_argument("--meter-id", type=_meter_id, required=True,
                    help="the meter to serve: 1-64 of letters, digits, . _ - (it names files)")
    mv.add_argument("--data-dir", default="meterhub-data", help="the meter's store (meter.sqlite)")
    mv.add_argument("--days", type=_meter_days,
                    help=f"first simulate this many days (at most {MAX_METER_DAYS} and {MAX_METER_READINGS} "
                    "readings), as `meter simulate` does (default: none, serve what is stored)")
    mv.add_argument("--start", type=_date, default=date(2027, 3, 15), help="first simulated day, with --days")
    mv.add_argument("--interval", type=int, default=15, help="minutes per interval, with --days")
    mv.add_argument("--tz", default="Europe/Berlin", help="the meter's IANA time zone, with --days")
    mv.add_argument("--seed", type=int, default=0, help="seed of the simulated consumption, with --days")
    mv.add_argument("--annual-kwh", type=_annual_kwh, default=3500.0, help="simulated yearly consumption in kWh, with --days")
    mv.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper, default=argparse.SUPPRESS,
                    help="lowest level logged on stderr: connections are info, refusals warning, failures error "
                    "(default: INFO)")
    mv.set_defaults(func=cmd_meter_serve)
    mr = m.add_parser("read", help="read a meter over DLMS/COSEM (public client; management client with --key-file)")
    mr.add_argument("--dlms", required=True, metavar="HOST:PORT", help="the meter's DLMS wrapper endpoint")
    mr.add_argument("--profile", action="store_true", help="also read the load profile 1.0.99.1.0.255 (needs --key-file)")
    mr.add_argument(
        "--key-file", metavar="PATH",
        help="home-link key file (ID.homelink.key, hex): also read register and profile as the management client "
        "(default: none, the public client reads id and clock only)",
    )
    mr.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS", help="one deadline for the whole read")
    mr.set_defaults(func=cmd_meter_read)
