"""CLI hygiene (issue 9, "CLI and docs"): every option described with its default in
``--help``, progress bars only on a terminal, ``hub bill`` refusing unverified tariffs."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from meterhub.cli import build_parser, main


def _parsers(p: argparse.ArgumentParser, path: str = "meterhub"):
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name}: subcommand without help"
                yield from _parsers(sub, f"{path} {name}")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_option_has_help_and_shows_its_default() -> None:
    faults: list[str] = []
    n = 0
    for path, parser in _parsers(build_parser()):
        shown = "".join(parser.format_help().split())  # argparse wraps lines, also at hyphens
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                continue
            n += 1
            name = action.option_strings[0] if action.option_strings else action.dest
            if not action.help or action.help is argparse.SUPPRESS:
                faults.append(f"{path} {name}: no help text")
                continue
            text = _flat(formatter._expand_help(action))
            if "".join(text.split()) not in shown:
                faults.append(f"{path} {name}: help not shown as {text!r}")
            if not action.option_strings or action.required:
                continue
            if "(default: " not in text:
                faults.append(f"{path} {name}: default not shown")
            elif action.default not in (None, False, argparse.SUPPRESS) and f"default: {action.default}" not in text:
                faults.append(f"{path} {name}: default {action.default!r} not shown in {text!r}")
    assert n > 50  # the walk reached every subcommand
    assert not faults, "\n".join(faults)


def test_flags_and_absent_values_read_as_words() -> None:
    text = _flat(build_parser()._subparsers._group_actions[0].choices["demo"].format_help())
    assert "(default: off)" in text and "(default: 20)" in text and "(default: 2027-03-15)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


# -- progress bars ------------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_show_progress_needs_a_terminal_and_no_json() -> None:
    from meterhub.cli.common import show_progress

    ns = argparse.Namespace(no_progress=False, json=False)
    assert show_progress(ns, _Tty())
    assert not show_progress(ns, io.StringIO())
    assert not show_progress(argparse.Namespace(no_progress=False, json=True), _Tty())
    assert not show_progress(argparse.Namespace(no_progress=True, json=False), _Tty())


@pytest.mark.parametrize(
    "stream,extra,wants_bar",
    [(io.StringIO, [], False), (_Tty, [], True), (_Tty, ["--json"], False), (_Tty, ["--no-progress"], False)],
)
def test_demo_gets_a_progress_bar_only_on_a_terminal(monkeypatch, tmp_path, stream, extra, wants_bar) -> None:
    import meterhub.demo.system as demo

    seen: list[object] = []

    def fake_run_demo(params, *, progress=None, rng=None, remote=None):  # run_demo's signature
        assert remote is None  # no --server given
        seen.append(progress)
        raise demo.DemoError("stopped by the test")

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.setattr("sys.stderr", stream())
    assert main(["demo", "--data-dir", str(tmp_path), *extra]) == 2
    assert len(seen) == 1 and (seen[0] is not None) == wants_bar


# -- hub bill and the tariff's signature ----------------------------------------------------------
@pytest.fixture()
def bill_files(tmp_path):
    d = tmp_path
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "1", "--start", "2027-06-01", "--out", str(d / "m")]) == 0
    assert main(["tariff", "example", "--out", str(d / "t.json"), "--key-out", str(d / "sup.pub")]) == 0
    m = d / "m"
    base = ["hub", "bill", "--meter", str(m / "m1.meter.json"), "--key", str(m / "m1.homelink.key"),
            "--homelink", str(m / "m1.homelink.jsonl"), "--from", "2027-06-01", "--to", "2027-06-01",
            "--data-dir", str(d / "hub"), "--out", str(d / "st.json")]
    return d, base


def test_hub_bill_without_a_supplier_key_is_refused(bill_files, capsys) -> None:
    d, base = bill_files
    capsys.readouterr()
    assert main([*base, "--tariff", str(d / "t.json")]) == 2
    err = capsys.readouterr().err
    assert "--supplier-key" in err and len(err.strip().splitlines()) == 1
    assert not (d / "st.json").exists() and not (d / "hub").exists()


def test_hub_bill_with_unverified_tariff_bills_and_warns(bill_files, capsys) -> None:
    d, base = bill_files
    capsys.readouterr()
    assert main([*base, "--tariff", str(d / "t.json"), "--unverified-tariff"]) == 0
    assert "NOT verified" in capsys.readouterr().err
    assert json.loads((d / "st.json").read_text())["meter_id"] == "m1"


def _forged(d, how: str):
    from meterhub.crypto import ecdsa
    from meterhub.tariffs import dump_tariff, example_signed_tariff, sign_tariff

    doc = json.loads((d / "t.json").read_text())
    if how == "flipped-signature":
        sig = bytearray(bytes.fromhex(doc["signature"]["value"]))
        sig[5] ^= 1
        doc["signature"]["value"] = sig.hex()
        (d / "bad.json").write_text(json.dumps(doc))
    else:  # signed by someone else's key
        (d / "bad.json").write_bytes(dump_tariff(sign_tariff(example_signed_tariff().tariff, ecdsa.generate_signing_key())))
    return d / "bad.json"


@pytest.mark.parametrize("how", ["flipped-signature", "other-key"])
def test_hub_bill_rejects_a_tariff_that_does_not_verify(bill_files, capsys, how) -> None:
    d, base = bill_files
    bad = _forged(d, how)
    capsys.readouterr()
    assert main([*base, "--tariff", str(bad), "--supplier-key", str(d / "sup.pub")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("REJECTED tariff") and len(out.strip().splitlines()) == 1
    assert not (d / "st.json").exists()
    # --unverified-tariff does not override a key that was given.
    assert main([*base, "--tariff", str(bad), "--supplier-key", str(d / "sup.pub"), "--unverified-tariff"]) == 1


def test_hub_bill_with_an_unreadable_supplier_key_is_a_usage_error(bill_files, capsys) -> None:
    d, base = bill_files
    (d / "junk.pub").write_text("not hex\n")
    capsys.readouterr()
    assert main([*base, "--tariff", str(d / "t.json"), "--supplier-key", str(d / "junk.pub")]) == 2
    assert main([*base, "--tariff", str(d / "t.json"), "--supplier-key", str(d / "absent.pub")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
