"""The ``meterhub`` command line.

``meterhub demo`` runs the whole system; ``meterhub meter``, ``meterhub hub``
and ``meterhub utility`` let each party act on its own files, in the exchange
formats of docs/formats.md. Exit codes: 0 success, 1 something was rejected,
2 a usage or input error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, MeterhubError
from .config import LOG_LEVELS


class UsageError(MeterhubError):
    """Bad arguments or unreadable input; printed as one line, exit 2."""

    exit_code = EXIT_USAGE


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def _number(
    kind: type, what: str, lo: float, hi: float, *, lo_open: bool = False
) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``),
    with a one-line message otherwise. NaN and the infinities are never numbers here
    (``float("nan")`` compares false with every bound, so it must be refused by name)."""

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
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
_annual_kwh = _number(float, "a number of kWh", 0.0, 1e6, lo_open=True)
# Upper bounds so that a typo cannot allocate gigabytes before any output.
MAX_HOUSEHOLDS, MAX_DEMO_DAYS, MAX_METER_DAYS = 1000, 366, 3660
MAX_METER_READINGS = 400_000  # days x intervals per day: about 50 MB; 3660 days at 15 minutes fit
_households = _number(int, "an integer", 1, MAX_HOUSEHOLDS)
_demo_days = _number(int, "an integer", 1, MAX_DEMO_DAYS)
_meter_days = _number(int, "an integer", 1, MAX_METER_DAYS)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _meter_id(text: str) -> str:
    """A meter id, which names files (``ID.meter.json`` ...): letters, digits, ``.``,
    ``_`` and ``-``, at most 64, not starting with ``.`` or ``-`` (no path, no option)."""
    if not _ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not a meter id (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit): {text!r}"
        )
    return text


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


def _write(path: str | Path, data: str | bytes, *, secret: bool = False) -> None:
    """Write a file; ``secret`` files (keys) are created readable by the owner only (0600)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        if secret:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # also when the file existed with wider permissions
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        else:
            p.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {p}: {exc.strerror}") from None


def show_progress(args: argparse.Namespace, stream: Any) -> bool:
    """A progress bar only for a person watching: never with ``--no-progress`` or
    ``--json``, and only when ``stream`` (stderr) is a terminal, so logs and pipes
    get no carriage-return noise."""
    if getattr(args, "no_progress", False) or getattr(args, "json", False):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# -- demo -------------------------------------------------------------------
def _deliver_outputs(args: argparse.Namespace, data_dir: Path) -> Any:
    """``demo --server``: the settlement, forecasting, fraud and DR outputs through the
    service as well (:mod:`meterhub.demo.service`); None without ``--server``, the exit
    code if the service refused or rejected one."""
    if not args.server:
        return None
    from ..demo.service import deliver_outputs
    from ..service.remote import RemoteError, RemoteUtility

    remote = RemoteUtility(args.server, args.server_keys)
    try:
        return deliver_outputs(remote, data_dir)
    except RemoteError as exc:
        print(f"meterhub: demo: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    finally:
        remote.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.system import (
        DemoError,
        DemoParams,
        format_table,
        run_demo,
        summary_json,
        tqdm_progress,
    )
    from ..tariffs import example_signed_tariff

    params = DemoParams(
        households=args.households,
        days=args.days,
        interval_minutes=args.interval,
        seed=args.seed,
        start=args.start,
        data_dir=Path(args.data_dir),
        business_share=args.business_share,
        price_index_csv=Path(args.price_index) if args.price_index else None,
        thieves=args.thieves,
    )
    from ..demo.settlement import format_report
    from ..demo.settlement import run as run_settlement
    from ..demo.system import check_params
    from ..storage.sqlite import data_dir_lock

    try:
        check_params(params)  # before anything is written, the lock file included
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    progress = tqdm_progress() if show_progress(args, sys.stderr) else None
    with data_dir_lock(params.data_dir):
        try:
            remote = None
            if args.server:  # deliveries through the utility's HTTP service (docs/service.md)
                from ..service.remote import RemoteUtility

                remote = RemoteUtility(args.server, args.server_keys)
            try:
                results = run_demo(params, progress=progress, remote=remote)
            finally:
                if remote is not None:
                    remote.close()
        except DemoError as exc:
            raise UsageError(str(exc)) from None
        except RuntimeError as exc:
            from ..service.push import PushError
            from ..service.remote import RemoteError

            if isinstance(exc, RemoteError | PushError):
                print(f"meterhub: demo: {exc}", file=sys.stderr)
                return EXIT_REJECTED
            raise
        report = run_settlement(params)  # settlement and forecasting (issue 6)
        from ..demo.fraud import format_report as format_fraud
        from ..demo.fraud import run as run_fraud

        fraud = run_fraud(params, params.thieves)  # fraud detection (issue 13)
        from ..demo.dr import format_report as format_dr
        from ..demo.dr import run as run_dr

        dr = run_dr(params)  # demand response (issue 14)
        from ..demo.privacy import format_privacy, privacy_report

        privacy = privacy_report(params.data_dir)  # what each recipient got (issues 11, 13)
        delivered = _deliver_outputs(args, params.data_dir)  # through the service too (docs/service.md)
        if isinstance(delivered, int):
            return delivered
    events = None
    if args.events:  # daily operations in a scratch directory (docs/billing-operations.md)
        from ..demo.events import format_events, run_events

        events = run_events(params.seed)
    t = example_signed_tariff().tariff
    if args.json:
        doc = json.loads(summary_json(params, results, t.currency, t.subunits_per_unit))
        doc["settlement"] = report.to_dict()
        doc["demand_response"] = dr.to_dict()
        doc["privacy"] = privacy
        doc["fraud"] = fraud.to_dict()
        if delivered is not None:
            doc["service_outputs"] = delivered.to_dict()
        if events is not None:
            doc["events"] = events
        print(json.dumps(doc, indent=2))
    else:
        print(format_table(results, t.currency, t.subunits_per_unit))
        print()
        print(format_report(report))
        print()
        print(format_dr(dr))
        print()
        print(format_privacy(privacy))
        print()
        print(format_fraud(fraud))
        if events is not None:
            print()
            print(format_events(events))
        from .hub_web import dashboards_hint

        print()
        print(dashboards_hint(params.data_dir, results[0].meter_id if results else "ID"))
    ok = (
        all(r.verified for r in results) and report.all_verified and fraud.all_verified and dr.all_verified
        and (events is None or events["all_verified"])
    )
    return EXIT_OK if ok else EXIT_REJECTED


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


def _setup_logging(args: argparse.Namespace) -> None:
    """Servers log one line per event on stderr (or ``--log-file``) at INFO unless
    ``--log-level`` (before or after the command) says otherwise: connections are
    info, refusals warning, failures error. ``main`` configured any level given."""
    from .config import configure_logging

    if args.log_level is None:
        configure_logging("INFO", args.log_file, args.log_format)


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

def _registration(path: str) -> dict:
    from ..crypto import ecdsa
    from ..model import strictjson
    from ..model.timebase import check_interval, check_tz

    try:
        reg = strictjson.loads(_read(path, "meter registration"), "meter registration")
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
    from ..tariffs import TariffError, load_tariff, verify_tariff

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
    from ..crypto import ecdsa
    from ..tariffs import demo_supplier_key, dump_tariff, example_signed_tariff

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
def _bill_tariff(args: argparse.Namespace) -> Any:
    """The tariff ``hub bill`` may bill under: signed by the given supplier key, or, only
    with ``--unverified-tariff``, taken as it is. Returns ``None`` after printing one
    ``REJECTED`` line when the signature does not verify (exit 1); a missing or unreadable
    key is a usage error (exit 2). A hub that bills under an unchecked tariff computes
    whatever prices a forger wrote and releases a statement the utility will reject."""
    from ..crypto import ecdsa
    from ..tariffs import TariffError, load_tariff, verify_tariff

    if args.supplier_key is None and not args.unverified_tariff:
        raise UsageError(
            f"{args.tariff}: cannot verify the tariff without --supplier-key "
            "(--unverified-tariff bills under it unchecked; unsafe)"
        )
    try:
        signed = load_tariff(_read(args.tariff, "tariff"))
    except TariffError as exc:
        raise UsageError(f"{args.tariff}: {exc}") from None
    if args.supplier_key is None:
        print(f"meterhub: warning: tariff {args.tariff} NOT verified (--unverified-tariff)", file=sys.stderr)
        return signed.tariff
    try:
        key = ecdsa.load_verifying_key(bytes.fromhex(_read(args.supplier_key, "supplier key").decode().strip()))
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{args.supplier_key}: not a supplier public key (hex SEC 1 point)") from None
    try:
        return verify_tariff(signed, key)
    except TariffError as exc:
        print(f"REJECTED tariff {args.tariff}: {exc}")
        return None


def cmd_hub_bill(args: argparse.Namespace) -> int:
    from ..model.errors import FormatError
    from ..model.formats.sealed import SealedDay, open_sealed_openings
    from ..tariffs import TariffError

    reg = _registration(args.meter)
    tariff = _bill_tariff(args)
    if tariff is None:
        return EXIT_REJECTED
    try:
        key = bytes.fromhex(_read(args.key, "home-link key").decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits") from None
    if len(key) != 16:
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits (16 bytes)")
    if args.to < args.from_:
        raise UsageError("--to is before --from")
    try:
        tariff.check_valid_on(args.from_)
        tariff.check_valid_on(args.to)
    except (TariffError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    # Authenticate every day with this key before anything is stored, so a wrong key
    # or a forged file leaves the data directory as it was.
    days = []
    for n, line in enumerate(_lines(args.homelink, "home-link file"), 1):
        try:
            sealed = SealedDay.from_json(line)
            if sealed.meter_id != reg["meter_id"]:
                raise FormatError(f"day of meter {sealed.meter_id!r}, not {reg['meter_id']!r}")
            days.append((sealed, open_sealed_openings(key, sealed)))
        except FormatError as exc:
            raise UsageError(f"{args.homelink}:{n}: {exc}") from None
    from ..storage.sqlite import data_dir_lock

    with data_dir_lock(args.data_dir):
        st = _hub_bill_locked(args, reg, key, tariff, days)
    text = json.dumps(st.to_dict(), indent=2, sort_keys=True) + "\n"
    if args.out:
        _write(args.out, text)
        print(f"bill {st.total / st.subunits_per_unit:.2f} {st.currency} for {reg['meter_id']} -> {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _hub_bill_locked(args: argparse.Namespace, reg: dict, key: bytes, tariff: Any, days: list) -> Any:
    """The statement of the tariff's kind (:func:`meterhub.model.billing.issue_statement`):
    v1, v3 with ``--metering-point`` and ``--contract``, or the proven v2 for a
    non-linear tariff (docs/nonlinear.md)."""
    from ..hub.secure_element import VaultClient, open_vault_card
    from ..hub.store import HubError, HubStore
    from ..model.billing import BillJob, issue_statement
    from ..tariffs import TariffError

    if bool(args.metering_point) != bool(args.contract):
        raise UsageError("--metering-point and --contract go together")
    hub = HubStore(Path(args.data_dir) / "hub.sqlite")
    card = None
    try:
        # The meter's hub card seals its records in hub.sqlite (docs/privacy.md): the host holds no key.
        card = open_vault_card(args.card or Path(args.data_dir) / "hubs" / f"{reg['meter_id']}.sqlite")
        hub.attach(reg["meter_id"], VaultClient(card.transmit))
        try:
            hub.pair_meter(reg["meter_id"], key, reg["tz"], reg["interval_minutes"])
        except HubError as exc:
            raise UsageError(str(exc)) from None
        for sealed, openings in days:
            hub.store_openings(sealed.meter_id, sealed.day, sealed.first_index, openings)
        try:
            first_index, openings = hub.openings(reg["meter_id"], args.from_, args.to)
            st = issue_statement(
                BillJob(
                    meter_id=reg["meter_id"],
                    tariff=tariff,
                    period_from=args.from_,
                    period_to=args.to,
                    first_index=first_index,
                    openings=openings,
                    tz=reg["tz"],
                    interval_minutes=reg["interval_minutes"],
                    metering_point=args.metering_point or None,
                    contract_id=args.contract or None,
                )
            )
        except (HubError, TariffError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        hub.save_statement(reg["meter_id"], args.from_, args.to, st.to_json())
    finally:
        hub.close()
        if card is not None:
            card.close()
    return st


def cmd_hub_sml(args: argparse.Namespace) -> int:
    """Read the meter's SML push as its paired hub (TLS with the home-link key)."""
    import ssl

    from ..links.sml import read_sml_push
    from ..meter.serve import ServeError, parse_endpoint
    from ..protocols.sml import extract_values, format_server_id

    try:
        host, port = parse_endpoint(args.sml)
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    try:
        key = bytes.fromhex(_read(args.key, "home-link key").decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits") from None
    if len(key) != 16:
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits (16 bytes)")
    try:
        files = read_sml_push(host, port, key, timeout=args.timeout)
    except ssl.SSLError as exc:
        raise UsageError(f"{host}:{port} is not the meter paired with this key ({exc.reason or exc})") from None
    except TimeoutError:
        raise UsageError(f"no SML file from {host}:{port} within {args.timeout:g} s") from None
    except OSError as exc:
        raise UsageError(f"cannot read SML from {host}:{port}: {exc.strerror or exc}") from None
    for name, (value, scaler, unit) in sorted(extract_values(files[0].messages).items()):
        shown = format_server_id(value) if isinstance(value, bytes) else value
        print(f"{name:<16} {shown}" + (f" x 10^{scaler} (unit {unit})" if unit is not None else ""))
    return EXIT_OK


def cmd_hub_serve(args: argparse.Namespace) -> int:
    from ..hub.serve import HubServeError, serve
    from ..storage.sqlite import data_dir_lock

    _setup_logging(args)
    with data_dir_lock(args.data_dir):
        try:
            return serve(args.data_dir, args.vpcd, dev=args.dev)
        except HubServeError as exc:
            raise UsageError(str(exc)) from None


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
    from ..policy import PolicyError, ReleasePolicy, default_policy, load_policy
    from ..utility.forecasting import DpForecastRelease, verify_dp_release
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


def cmd_privacy_evaluate(args: argparse.Namespace) -> int:
    """Attacks on raw readings against what each recipient receives (docs/privacy-evaluation.md)."""
    try:
        from ..privacy.evaluate import evaluate, format_table, write_plots
    except ImportError as exc:  # the optional extra is missing
        raise UsageError(f"privacy evaluation needs the 'privacy' extra (pip install meterhub[privacy]): {exc}") from None
    if args.plots:
        try:
            Path(args.plots).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create plot directory {args.plots}: {exc.strerror}") from None
    try:
        ev = evaluate(args.households, args.weeks, args.seed, args.start)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(ev.to_dict(), indent=1))
    else:
        print(format_table(ev))
    if args.plots:
        write_plots(ev, args.plots)
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


# -- parser -----------------------------------------------------------------
class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default: ``(default: X)``, ``(default: off)`` for a
    flag, ``(required)`` for a required option. Help that already says ``default:`` (an
    option whose absence means something other than a value) is left as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default:" in text or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)"
        if action.nargs == 0 and isinstance(action.const, bool):
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse's own code)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="meterhub", description="Privacy-preserving smart metering.")
    p.add_argument("--version", action="version", version=f"meterhub {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML file with defaults per command, e.g. [meter.serve] (default: none; docs/deployment.md)")
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper,
                   help="log level of the meterhub loggers (default: none, Python's: warnings only)")
    p.add_argument("--log-file", metavar="FILE", help="append log records to FILE (default: none, standard error)")
    p.set_defaults(log_format=None)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="simulate a neighbourhood: meters, hub and utility")
    d.add_argument("--households", type=_households, default=20,
                   help=f"number of simulated households (meters), at most {MAX_HOUSEHOLDS}")
    d.add_argument("--days", type=_demo_days, default=30, help=f"number of local days to simulate, at most {MAX_DEMO_DAYS}")
    d.add_argument("--interval", type=int, default=15, help="minutes: 1, 5, 15, 30 or 60")
    d.add_argument("--seed", type=int, default=2027, help="seed of the simulated consumption")
    d.add_argument("--start", type=_date, default=date(2027, 3, 15), help="first local day (YYYY-MM-DD)")
    d.add_argument("--data-dir", default="meterhub-data", help="directory for every party's SQLite state")
    d.add_argument("--json", action="store_true", help="machine-readable summary")
    d.add_argument("--business-share", type=_fraction, default=0.3, help="share of small businesses (0..1)")
    d.add_argument("--events", action="store_true", help="also run the daily-operations events: tariff change, supplier switch, a lost day estimated and corrected (default: off)")
    d.add_argument("--price-index", metavar="CSV", help="day-ahead prices 'start,EUR/MWh' for settlement (default: none, the demo's seeded example index)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar (there is none unless stderr is a terminal)")
    d.add_argument("--server", help="also deliver through the utility's HTTP service at this URL (default: none)")
    d.add_argument("--server-keys", default="meterhub-data/api-keys.json",
                   help="the service's keys file, where the demo enrols its parties (default: meterhub-data/api-keys.json)")
    d.add_argument("--thieves", type=_number(int, "an integer", 0, 1000), default=2,
                   help="customers who tamper with their meters, for the fraud section (default: 2)")
    d.set_defaults(func=cmd_demo)

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

    t = sub.add_parser("tariff", help="tariff files").add_subparsers(dest="tariff_cmd", required=True, parser_class=_Parser)
    te = t.add_parser("example", help="write the signed example tariff")
    te.add_argument("--out", required=True, help="where to write the signed tariff (JSON)")
    te.add_argument("--key-out", help="also write the demo supplier's public key (hex) (default: none, not written)")
    te.set_defaults(func=cmd_tariff_example)
    tc = t.add_parser("check", help="validate a tariff file and its signature")
    tc.add_argument("file", help="signed tariff file (JSON)")
    tc.add_argument("--supplier-key", help="file with the supplier's public key (hex) (default: none, signature not checked)")
    tc.set_defaults(func=cmd_tariff_check)

    h = sub.add_parser("hub", help="the hub's side").add_subparsers(dest="hub_cmd", required=True, parser_class=_Parser)
    hb = h.add_parser("bill", help="compute a bill statement from the home-link openings")
    hb.add_argument("--meter", required=True, help="meter registration (ID.meter.json)")
    hb.add_argument("--key", required=True, help="home-link key file (hex)")
    hb.add_argument("--homelink", required=True, help="sealed openings (ID.homelink.jsonl)")
    hb.add_argument("--tariff", required=True, help="the supplier's signed tariff (JSON)")
    hb.add_argument("--supplier-key", help="verify the tariff signature with this key (hex); required unless --unverified-tariff (default: none)")
    hb.add_argument(
        "--unverified-tariff", action="store_true",
        help="UNSAFE: bill under the tariff without checking its signature (only without --supplier-key)",
    )
    hb.add_argument("--from", dest="from_", type=_date, required=True, metavar="DATE", help="first day of the bill period")
    hb.add_argument("--to", type=_date, required=True, metavar="DATE", help="last day, inclusive")
    hb.add_argument("--data-dir", default="meterhub-data", help="the hub's state (hub.sqlite)")
    hb.add_argument("--card", metavar="PATH",
                    help="the meter's hub card, which seals its records in hub.sqlite (default: DATA_DIR/hubs/METER.sqlite, "
                    "created with its storage vault if missing)")
    hb.add_argument("--out", help="write the statement here (default: none, to stdout)")
    hb.add_argument(
        "--metering-point", metavar="MALO",
        help="MaLo-ID (11 digits) or MeLo-ID (33 chars); with --contract, a v3 statement with energy per band (default: none, v1)",
    )
    hb.add_argument("--contract", metavar="ID", help="the supplier's contract id, with --metering-point (default: none)")
    hb.set_defaults(func=cmd_hub_bill)
    hm = h.add_parser("sml", help="read the meter's SML push as its paired hub (TLS keyed by the home-link key)")
    hm.add_argument("--sml", required=True, metavar="HOST:PORT", help="the meter's SML port (`meter serve --sml`)")
    hm.add_argument("--key", required=True, help="home-link key file (hex), e.g. ID.homelink.key")
    hm.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS",
                    help="total deadline in seconds")
    hm.set_defaults(func=cmd_hub_sml)
    hs = h.add_parser("serve", help="serve the hub's secure element to pcscd's vpcd driver (docs/pcsc.md)")
    hs.add_argument(
        "--dev", action="store_true",
        help="development card on the public GP test keys 404142..4F (default: off: fresh SCP03 keys, written to "
        "DATA_DIR/scp03-keys.json, and a card on publicly known keys is refused)",
    )
    hs.add_argument("--vpcd", default="127.0.0.1:35963", metavar="HOST:PORT", help="where vpcd listens (35963: reader 'Virtual PCD 00 00')")
    hs.add_argument("--data-dir", default="meterhub-data", help="the hub card's state (card.sqlite, dap-key.pem)")
    hs.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper, default=argparse.SUPPRESS,
                    help="log level of the messages on stderr (default: INFO)")
    hs.set_defaults(func=cmd_hub_serve)
    from .hub_privacy import add_hub_privacy_parsers

    add_hub_privacy_parsers(h)  # hub policy show|set, hub releases (docs/privacy.md)
    from .hub_web import add_hub_dashboard_parser

    add_hub_dashboard_parser(h)  # hub dashboard (docs/dashboards.md)

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

    pv = sub.add_parser("privacy", help="measured privacy: attacks on simulated households").add_subparsers(
        dest="privacy_cmd", required=True, parser_class=_Parser)
    pe = pv.add_parser("evaluate", help="occupancy, appliance and trait attacks on raw readings and on each "
                       "recipient's releases (needs the 'privacy' extra)")
    pe.add_argument("--households", type=_number(int, "an integer", 4, 100000), default=40,
                    help="simulated households, half to train and half to test (default 40, at least 4)")
    pe.add_argument("--weeks", type=_number(int, "an integer", 1, 52), default=4,
                    help="weeks of 15-minute readings per household (default 4)")
    pe.add_argument("--seed", type=_number(int, "an integer", 0, 2**32 - 1), default=0,
                    help="seed of the simulation, the coin tosses and the classifiers (default 0)")
    pe.add_argument("--start", type=_date, default=date(2027, 2, 1), help="first day (default 2027-02-01)")
    pe.add_argument("--json", action="store_true", help="machine-readable results (format meterhub-privacy-evaluation/1)")
    pe.add_argument("--plots", metavar="DIR", help="write PNG charts of each attack by data source to DIR")
    pe.set_defaults(func=cmd_privacy_evaluate)

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
    return p


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one place that turns an error into the CLI's one-line message and exit code.

    Every meterhub error carries its exit code and optional label
    (:class:`meterhub.errors.MeterhubError`: 2 usage or an unusable environment, 1
    rejected); a data-dir file that is not an SQLite database is a usage error."""
    import sqlite3

    if isinstance(exc, MeterhubError):
        label = f"{exc.what}: " if exc.what else ""
        return f"meterhub: error: {label}{exc}", exc.exit_code
    if isinstance(exc, sqlite3.DatabaseError):  # a data-dir file that is not what it should be
        return f"meterhub: error: database: {exc}", EXIT_USAGE
    raise TypeError(f"not a meterhub error: {type(exc).__name__}")


def report_error(exc: BaseException) -> int:
    """Print :func:`error_line`'s message to stderr and return its exit code."""
    line, code = error_line(exc)
    print(line.splitlines()[0] if line else line, file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError, apply_config, config_path, configure_logging

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        path = config_path(argv)
        if path is not None:
            apply_config(parser, path)
    except ConfigError as exc:
        return report_error(exc)
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_level, args.log_file, args.log_format)
    except OSError as exc:
        print(f"meterhub: error: log file: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    import sqlite3

    try:
        return int(args.func(args))
    except (MeterhubError, sqlite3.DatabaseError) as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        print("meterhub: interrupted; committed work is kept", file=sys.stderr)
        return 130

