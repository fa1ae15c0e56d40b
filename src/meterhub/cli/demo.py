"""``meterhub demo``: the whole-system demo and its sections (:mod:`meterhub.demo`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_REJECTED
from .common import (
    MAX_DEMO_DAYS,
    MAX_HOUSEHOLDS,
    UsageError,
    _date,
    _demo_days,
    _fraction,
    _households,
    _number,
    show_progress,
)


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




def add_demo_parser(sub: Any) -> None:
    """``meterhub demo``."""
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
