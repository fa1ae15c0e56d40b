"""``meterhub privacy evaluate``: attacks on simulated households (docs/privacy-evaluation.md).
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from .common import (
    UsageError,
    _date,
    _number,
    _Parser,
)


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




def add_privacy_parser(sub: Any) -> None:
    """``meterhub privacy evaluate``."""
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
