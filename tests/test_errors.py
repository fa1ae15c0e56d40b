"""One error root: every exception class in meterhub derives from MeterhubError
(src/meterhub/errors.py), carries its CLI exit code, and the CLI maps them in one place."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import meterhub
from meterhub.card.store import PowerLoss, StorageIntegrityError
from meterhub.cli import error_line
from meterhub.cli.common import UsageError
from meterhub.errors import EXIT_REJECTED, EXIT_USAGE, MeterhubError
from meterhub.model.errors import FormatError, Rejected

#: Deliberately outside the root: a simulated tear is a BaseException so that applet
#: code catching Exception cannot swallow it (card/store.py, JCRE §7.6).
_NOT_ERRORS = {PowerLoss}


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(meterhub.__path__, "meterhub."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:  # an optional extra (e.g. psycopg) not installed here
            assert exc.name and not exc.name.startswith("meterhub"), exc
            continue
        names.append(info.name)
    return names


def _exception_classes() -> list[type[BaseException]]:
    seen: dict[str, type[BaseException]] = {}
    for name in _all_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("meterhub"):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(seen.values())


def test_every_exception_class_derives_from_meterhub_error() -> None:
    classes = _exception_classes()
    assert len(classes) > 60  # the walk really found the project's exceptions
    strays = sorted(
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if c not in _NOT_ERRORS and not issubclass(c, MeterhubError)
    )
    assert strays == [], f"exception classes outside MeterhubError: {strays}"


def test_exception_class_names_are_unique() -> None:
    names: dict[str, list[str]] = {}
    for c in _exception_classes():
        names.setdefault(c.__name__, []).append(c.__module__)
    assert {n: m for n, m in names.items() if len(m) > 1} == {}


def test_every_error_carries_a_valid_exit_code() -> None:
    for c in _exception_classes():
        if c in _NOT_ERRORS:
            continue
        assert c.exit_code in (EXIT_REJECTED, EXIT_USAGE), c  # type: ignore[attr-defined]


def test_powerloss_stays_outside_exception() -> None:
    assert not issubclass(PowerLoss, Exception)


@pytest.mark.parametrize(
    ("exc", "line", "code"),
    [
        (UsageError("bad --from"), "meterhub: error: bad --from", EXIT_USAGE),
        (FormatError("bill statement must be a JSON object"),
         "meterhub: error: bill statement must be a JSON object", EXIT_REJECTED),
        (Rejected("sum t_i*C_i != bill*G + R*H"), "meterhub: error: sum t_i*C_i != bill*G + R*H", EXIT_REJECTED),
        (StorageIntegrityError("value altered"), "meterhub: error: card store: value altered", EXIT_USAGE),
    ],
)
def test_cli_maps_errors_in_one_place(exc: MeterhubError, line: str, code: int) -> None:
    assert error_line(exc) == (line, code)


def test_standard_library_bases_are_kept() -> None:
    # existing `except ValueError` clauses keep catching format errors
    assert issubclass(FormatError, ValueError)
    from meterhub.tariffs import TariffError

    assert issubclass(TariffError, ValueError) and issubclass(TariffError, MeterhubError)


def test_main_reports_an_uncaught_meterhub_error_as_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that lets a party's error escape (here the hub store's) still ends in
    one line and the error's exit code, not a traceback."""
    import argparse

    import meterhub.cli as cli
    from meterhub.hub.store import HubError

    def boom(args: argparse.Namespace) -> int:
        raise HubError("no readings for day 2027-03-01 from meter M1\nsecond line")

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser()
        p.add_argument("--log-level", default=None)  # None: main leaves logging alone
        p.add_argument("--log-file", default=None)
        p.add_argument("--log-format", default=None)
        p.set_defaults(func=boom)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    code = cli.main([])
    err = capsys.readouterr().err
    assert code == HubError.exit_code == EXIT_REJECTED
    assert err == "meterhub: error: no readings for day 2027-03-01 from meter M1\n"
