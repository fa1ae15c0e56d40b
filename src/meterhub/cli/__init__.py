"""The ``meterhub`` command line.

``meterhub demo`` runs the whole system; ``meterhub meter``, ``meterhub hub``
and ``meterhub utility`` let each party act on its own files, in the exchange
formats of docs/formats.md. Exit codes: 0 success, 1 something was rejected,
2 a usage or input error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import EXIT_USAGE, MeterhubError
from .common import _Parser
from .config import LOG_LEVELS
from .demo import add_demo_parser
from .hub import add_hub_parsers
from .meter import add_meter_parsers
from .privacy import add_privacy_parser
from .tariff import add_tariff_parsers
from .utility import add_utility_parsers

__all__ = ["build_parser", "error_line", "main", "report_error"]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="meterhub", description="Privacy-preserving smart metering.")
    p.add_argument("--version", action="version", version=f"meterhub {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML file with defaults per command, e.g. [meter.serve] (default: none; docs/deployment.md)")
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper,
                   help="log level of the meterhub loggers (default: none, Python's: warnings only)")
    p.add_argument("--log-file", metavar="FILE", help="append log records to FILE (default: none, standard error)")
    p.set_defaults(log_format=None)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    add_demo_parser(sub)
    add_meter_parsers(sub)
    add_tariff_parsers(sub)
    add_hub_parsers(sub)
    add_utility_parsers(sub)
    add_privacy_parser(sub)
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
