"""What every ``meterhub`` subcommand shares: argument types with their bounds, file
helpers that turn an OS error into one usage line, the help formatter that states every
option's default, and the parser class that exits 2 with one line.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from ..errors import EXIT_USAGE, MeterhubError


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



def _setup_logging(args: argparse.Namespace) -> None:
    """Servers log one line per event on stderr (or ``--log-file``) at INFO unless
    ``--log-level`` (before or after the command) says otherwise: connections are
    info, refusals warning, failures error. ``main`` configured any level given."""
    from .config import configure_logging

    if args.log_level is None:
        configure_logging("INFO", args.log_file, args.log_format)



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
