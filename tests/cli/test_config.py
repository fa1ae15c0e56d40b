"""The TOML configuration file and logging configuration of the command line."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.cli import build_parser, main
from meterhub.cli.config import ConfigError, apply_config, config_path, configure_logging


def test_config_sets_defaults_and_flags_override(tmp_path, capsys):
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[meter.simulate]\nmeter-id = "m5"\ndays = 2\nstart = 2027-06-01\nout = "{tmp_path / "out"}"\n')
    assert main(["--config", str(cfg), "meter", "simulate"]) == 0
    assert len((tmp_path / "out" / "m5.uploads.jsonl").read_text().splitlines()) == 2
    assert main(["--config", str(cfg), "meter", "simulate", "--meter-id", "m6", "--days", "1"]) == 0
    assert len((tmp_path / "out" / "m6.uploads.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(("text", "why"), [
    ("[meter.simulate]\nnope = 1\n", "[meter.simulate] nope: unknown option"),
    ("[meter.simulate]\ndays = \"many\"\n", "[meter.simulate] days:"),
    ("[nosuch]\nx = 1\n", "nosuch: unknown table"),
    ("[demo]\njson = 1\n", "[demo] json: must be true or false"),
    ("[logging]\nlevel = \"LOUD\"\n", "[logging] level: one of"),
    ("days = 3\n", "days: unknown option"),
    ("[demo\n", "not TOML"),
])
def test_bad_config_is_a_one_line_usage_error(tmp_path, capsys, text, why):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["--config", str(cfg), "utility", "bills", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and why in err, err


def test_config_path_is_a_top_level_option():
    assert config_path(["--config", "a.toml", "demo"]) == "a.toml"
    assert config_path(["--config=b.toml", "demo"]) == "b.toml"
    assert config_path(["demo", "--config", "x"]) is None
    with pytest.raises(ConfigError):
        config_path(["--config"])


def test_logging_goes_to_the_configured_file(tmp_path):
    log = tmp_path / "meterhub.log"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[logging]\nlevel = "info"\nfile = "{log}"\nformat = "%(levelname)s %(name)s %(message)s"\n')
    try:
        assert main(["--config", str(cfg), "utility", "bills", "--data-dir", str(tmp_path / "none")]) == 2
        logging.getLogger("meterhub.test").info("hello")
        assert "INFO meterhub.test hello" in log.read_text()
    finally:
        configure_logging("WARNING", None)
        lg = logging.getLogger("meterhub")
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
        lg.setLevel(logging.NOTSET)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_any_config_text_is_applied_or_refused_in_one_line(tmp_path_factory, text):
    cfg = tmp_path_factory.mktemp("cfg") / "c.toml"
    cfg.write_text(text, encoding="utf-8")
    try:
        apply_config(build_parser(), str(cfg))
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_each_main_sets_its_own_logging_and_writes_to_the_current_stderr(capsys) -> None:
    """A handler set by one ``main`` must not outlive it: a later ``main`` without log
    options logs Python's default way, and a handler writes to the standard error of
    the moment (pytest's capture closes the stream of an earlier test; a handler bound
    to it turned every later log line into a "Logging error" traceback)."""
    log = logging.getLogger("meterhub.test")
    configure_logging("WARNING", None)
    capsys.readouterr()
    log.warning("first")
    assert "first" in capsys.readouterr().err  # the stream capsys installed after the handler was made
    configure_logging(None, None)
    assert not [h for h in logging.getLogger("meterhub").handlers if getattr(h, "_meterhub_cli", False)]
    assert logging.getLogger("meterhub").level == logging.NOTSET
