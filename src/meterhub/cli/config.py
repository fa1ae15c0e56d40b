"""The configuration file (TOML) and logging configuration of the command line.

``meterhub --config meterhub.toml COMMAND ...`` reads defaults for every
command from a TOML file (Python's ``tomllib``, TOML 1.0). Tables are named by
the command path; keys are the command's long options without ``--`` (``-`` or
``_``)::

    [logging]
    level = "INFO"            # DEBUG, INFO, WARNING (default), ERROR
    file = "meterhub.log"     # default: standard error
    format = "%(asctime)s %(levelname)s %(name)s: %(message)s"

    [demo]
    households = 50
    data-dir = "/var/lib/meterhub"

    [meter.serve]
    dlms = 4059
    meter-id = "m1"

    [hub.serve]
    vpcd = "127.0.0.1:35963"

Options given on the command line override the file. An unknown table or key,
or a value of the wrong type, is a usage error (exit 2) naming the file, table
and key; nothing runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import EXIT_USAGE, MeterhubError

__all__ = ["ConfigError", "apply_config", "config_path", "configure_logging", "LOG_LEVELS"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOGGING_KEYS = {"level", "file", "format"}
DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConfigError(MeterhubError, ValueError):
    """A configuration file that cannot be used (one line, exit 2)."""

    exit_code = EXIT_USAGE
    what = "config"


def config_path(argv: Sequence[str]) -> str | None:
    """The ``--config`` value among the top-level options (before the command)."""
    for k, tok in enumerate(argv):
        if tok == "--config":
            if k + 1 >= len(argv):
                raise ConfigError("--config needs a file")
            return argv[k + 1]
        if tok.startswith("--config="):
            return tok.split("=", 1)[1]
        if not tok.startswith("-"):
            return None  # the command: its own options follow
    return None


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _convert(where: str, action: argparse.Action, value: Any) -> Any:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false")
        return value
    typ = action.type
    if isinstance(typ, str):  # a type name registered with parser.register(); meterhub uses none
        raise ConfigError(f"{where}: option type {typ!r} cannot be read from a config file")
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: must be a list of strings")
        return [_convert_scalar(where, typ, v) for v in value]
    return _convert_scalar(where, typ, value)


def _convert_scalar(where: str, typ: Callable[[str], Any] | None, value: Any) -> Any:
    """One value through the option's ``type`` (a callable; ``None`` keeps strings)."""
    if isinstance(value, bool | dict | list | dt.datetime | dt.time):
        raise ConfigError(f"{where}: unsupported value {value!r:.40}")
    if isinstance(value, dt.date):
        value = value.isoformat()
    if typ is None:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string")
        return value
    try:
        return typ(value if isinstance(value, str) else str(value))
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _apply(parser: argparse.ArgumentParser, table: dict[str, Any], where: str, top: bool) -> None:
    subs = _subcommands(parser)
    by_dest = {a.dest: a for a in parser._actions if a.option_strings}
    for key, value in table.items():
        if isinstance(value, dict) and key in subs:
            _apply(subs[key], value, f"{where}.{key}" if where else key, False)
            continue
        if top and key == "logging":
            if not isinstance(value, dict) or not set(value) <= _LOGGING_KEYS:
                raise ConfigError(f"[logging]: keys are {', '.join(sorted(_LOGGING_KEYS))}")
            for k, v in value.items():
                if not isinstance(v, str):
                    raise ConfigError(f"[logging] {k}: must be a string")
            if "level" in value and value["level"].upper() not in LOG_LEVELS:
                raise ConfigError(f"[logging] level: one of {', '.join(LOG_LEVELS)}")
            parser.set_defaults(
                log_level=value.get("level", "WARNING").upper(),
                log_file=value.get("file"),
                log_format=value.get("format"),
            )
            continue
        dest = key.replace("-", "_")
        action = by_dest.get(dest)
        label = f"[{where}] {key}" if where else key
        if action is None or dest in ("help", "version", "config") or top:
            raise ConfigError(f"{label}: unknown {'table' if isinstance(value, dict) else 'option'}")
        parser.set_defaults(**{dest: _convert(label, action, value)})
        action.required = False  # given by the file


def apply_config(parser: argparse.ArgumentParser, path: str) -> None:
    """Read ``path`` and set the defaults of the commands it names (module docstring)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not TOML ({exc})") from None
    try:
        _apply(parser, data, "", True)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is when a record is written, not the stream
    of the moment it was made: ``main`` may run more than once in a process whose
    standard error is replaced in between (an embedding host, pytest's capture), and a
    handler left on a closed stream turns every later log line into a traceback."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str | None, file: str | None, fmt: str | None = None) -> None:
    """Route the ``meterhub`` loggers to ``file`` (or standard error) at ``level``; with
    neither given Python's default holds (warnings to standard error). Each call replaces
    what an earlier call set, so a second ``main`` in the same process logs as its own
    options say."""
    log = logging.getLogger("meterhub")
    for h in list(log.handlers):
        if getattr(h, "_meterhub_cli", False):
            log.removeHandler(h)
            h.close()
    if level is None and file is None and fmt is None:
        log.setLevel(logging.NOTSET)
        return
    level = level or "WARNING"
    fmt = fmt or DEFAULT_LOG_FORMAT
    handler: logging.Handler = logging.FileHandler(file, encoding="utf-8") if file else _StderrHandler()
    handler.setFormatter(logging.Formatter(fmt))
    handler._meterhub_cli = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(level)
