"""``meterhub meter serve`` and ``meterhub meter read`` as separate processes.

The server is started as a subprocess on ephemeral ports (``--dlms 0 --sml 0``) and
prints one line with the ports; it is read by ``meter read`` (dlms-cosem's client
inside), by the hub's own DLMS client with the home-link keys over TCP, and by smllib
and pysml (third-party SML parsers) on the SML port. Energies are checked against the
openings the meter sealed for the hub, which nothing in the serving path computes.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sml import SmlBase
from smllib import SmlStreamReader

from meterhub.cli import main
from meterhub.hub.homelink import decode_openings
from meterhub.links.dlms import home_link_suite0_keys, hub_system_title
from meterhub.links.sml import open_sml_link
from meterhub.model.formats.sealed import SealedDay, open_sealed_openings
from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.access import CaptureColumn
from meterhub.protocols.dlms.client import DlmsLinkClient, DlmsLinkError
from meterhub.protocols.dlms.cosem import (
    CLOCK,
    IC_CLOCK,
    IC_PROFILE_GENERIC,
    OPENINGS,
)
from meterhub.protocols.dlms.tcp import wrapper_transport

SERVE_LINE = re.compile(r"^meter (\S+): DLMS on 127\.0\.0\.1:(\d+)(?:, SML on 127\.0\.0\.1:(\d+))?; (\d+) day\(s\), (\d+) Wh$")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "meterhub.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _first_line(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """The server's first stdout line, or fail (never hang) if it does not come."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail("meter serve printed nothing")
    return proc.stdout.readline().strip()


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("meter serve did not stop on a signal")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("meter")
    # The server logs every connection to stderr: a file, so that it never blocks on a full pipe.
    log = (data / "serve.log").open("w+")
    proc = subprocess.Popen(
        _cli("meter", "serve", "--dlms", "0", "--sml", "0", "--sml-cadence", "0.2",
             "--meter-id", "m1", "--data-dir", str(data), "--days", "2"),
        stdout=subprocess.PIPE, stderr=log, text=True, env=_env(),
    )
    try:
        line = _first_line(proc)
        m = SERVE_LINE.match(line)
        assert m, line
        # The openings the meter sealed for the hub give the expected energy.
        key = bytes.fromhex((data / "m1.homelink.key").read_text().strip())
        sealed = [SealedDay.from_json(ln) for ln in (data / "m1.homelink.jsonl").read_text().splitlines() if ln]
        readings = [o.m for s in sealed for o in open_sealed_openings(key, s)]
        yield {
            "proc": proc, "dlms": int(m.group(2)), "sml": int(m.group(3)), "days": int(m.group(4)),
            "energy": int(m.group(5)), "readings": readings, "key": key, "data": data, "log": log,
        }
    finally:
        if proc.poll() is None:
            rc = _stop(proc)
            log.seek(0)
            assert rc == 0, log.read()
        log.close()


def test_serve_announces_ports_and_days(served):
    assert served["days"] == 2
    assert served["energy"] == sum(served["readings"]) > 0
    assert len(served["readings"]) == 192


def test_meter_read_public_gets_clock_only(served, capsys):
    assert main(["meter", "read", "--dlms", f"127.0.0.1:{served['dlms']}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("meter   m1 at 127.0.0.1:") and out[0].endswith("(public client)")
    clock = datetime.fromisoformat(out[1].split()[-1])
    assert clock.tzinfo is not None and abs(clock - datetime.now(clock.tzinfo)) < timedelta(minutes=5)
    assert len(out) == 2  # the register is not in the public client's object list


def test_meter_read_profile_needs_the_key(served, capsys):
    assert main(["meter", "read", "--dlms", f"127.0.0.1:{served['dlms']}", "--profile"]) == 2
    assert "needs the management association" in capsys.readouterr().err


def test_meter_read_clock_and_register_with_the_key(served, capsys):
    key_file = str(served["data"] / "m1.homelink.key")
    for _ in range(2):  # the reader resumes above the meter's invocation counter each time
        assert main(["meter", "read", "--dlms", f"127.0.0.1:{served['dlms']}", "--key-file", key_file]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].endswith("(public and management client)")
        assert out[2].split()[2:] == [str(served["energy"]), "x", "10^0", "Wh"]
        assert len(out) == 3  # no profile unless asked


def test_meter_read_bad_or_wrong_key_is_one_line(served, tmp_path, capsys):
    target = f"127.0.0.1:{served['dlms']}"
    garbled, short, wrong = tmp_path / "garbled.key", tmp_path / "short.key", tmp_path / "wrong.key"
    garbled.write_text("not hex\n")
    short.write_text("00ff\n")
    wrong.write_text("11" * 16 + "\n")
    for path, needle in ((garbled, "not a home-link key file"), (short, "16 bytes"),
                         (tmp_path / "missing.key", "not a home-link key file"),
                         (wrong, "refused the management association (wrong home-link key?)")):
        assert main(["meter", "read", "--dlms", target, "--key-file", str(path)]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err


def test_meter_read_profile_as_a_subprocess(served):
    out = subprocess.run(
        _cli("meter", "read", "--dlms", f"127.0.0.1:{served['dlms']}", "--profile",
             "--key-file", str(served["data"] / "m1.homelink.key")),
        capture_output=True, text=True, timeout=120, env=_env(),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[3].split()[2] == "192"
    rows = [ln.split() for ln in lines[4:]]
    assert len(rows) == 192
    assert rows[0][0] == "2027-03-15T00:15:00+01:00" and rows[-1][0] == "2027-03-17T00:00:00+01:00"
    cumulative = [int(v) for _, v in rows]
    running = 0
    for got, wh in zip(cumulative, served["readings"], strict=True):
        running += wh
        assert got == running


def test_hub_reads_openings_over_tcp_with_the_home_link_key(served):
    send, close = wrapper_transport("127.0.0.1", served["dlms"], 1, timeout=10)
    try:
        client = DlmsLinkClient(
            send, keys=home_link_suite0_keys(served["key"]), system_title=hub_system_title("m1")
        )
        client.associate()
        day = date(2027, 3, 16)
        params = axdr.structure([
            CaptureColumn(IC_CLOCK, CLOCK, 2).encode(),
            axdr.octet_string(axdr.encode_datetime(datetime.fromisoformat("2027-03-16T00:15:00+01:00"))),
            axdr.octet_string(axdr.encode_datetime(datetime.fromisoformat("2027-03-17T00:00:00+01:00"))),
            axdr.array([]),
        ])
        raw = client.get(IC_PROFILE_GENERIC, OPENINGS, 2, (1, params))
        first, openings = decode_openings(raw, day, "Europe/Berlin", 15)
        client.release()
    finally:
        close()
    assert first == 96
    assert [o.m for o in openings] == served["readings"][96:]


@pytest.mark.interop
def test_stock_gurux_management_client_reads_meter_serve(served):
    """Issue 9, "Stock DLMS head-ends": gurux-dlms's stock secure client (HIGH_GMAC,
    AUTHENTICATION_ENCRYPTION, its title and the derived keys, nothing else) reads clock,
    register, load profile and openings from `meter serve`, then releases."""
    from gurux_dlms.objects import GXDLMSClock, GXDLMSProfileGeneric, GXDLMSRegister

    from gurux_link import GuruxTcp, gurux_management_client

    link = GuruxTcp(gurux_management_client(home_link_suite0_keys(served["key"]), b"GRXSERV1"), served["dlms"])
    try:
        link.associate()
        clock = link.read(GXDLMSClock("0.0.1.0.0.255"), 2).time.value
        assert abs(clock.timestamp() - time.time()) < 300
        register = GXDLMSRegister("1.0.1.8.0.255")
        link.read(register, 3)
        assert link.read(register, 2).value == served["energy"]
        profile, openings = GXDLMSProfileGeneric("1.0.99.1.0.255"), GXDLMSProfileGeneric("0.128.96.4.0.255")
        for pg in (profile, openings):
            link.read(pg, 3)
            link.read(pg, 2)
        running = 0
        for row, wh, opening in zip(profile.buffer, served["readings"], openings.buffer, strict=True):
            running += wh
            assert int(row[1]) == running and int(opening[2]) == wh
        link.release()
    finally:
        link.sock.close()


@pytest.mark.interop
def test_dlms_cosem_client_reads_openings_with_the_derived_keys(served):
    """dlms-cosem's own client (third party), HLS-GMAC + suite 0 with the documented
    key schedule, reads the openings object from the served meter over TCP."""
    from dlms_cosem import cosem, utils
    from dlms_cosem import enumerations as E
    from dlms_cosem.client import DlmsClient
    from dlms_cosem.io import BlockingTcpIO, TcpTransport
    from dlms_cosem.security import HighLevelSecurityGmacAuthentication

    keys = home_link_suite0_keys(served["key"])
    client = DlmsClient(
        transport=TcpTransport(1, 1, BlockingTcpIO("127.0.0.1", served["dlms"], timeout=10)),
        authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
        encryption_key=keys.encryption_key,
        authentication_key=keys.authentication_key,
        client_system_title=b"DLMSCOSM",
    )
    target = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(0, 128, 96, 4, 0), 2)
    with client.session() as s:
        rows = utils.parse_as_dlms_data(s.get(target))
    assert [int(r[2]) for r in rows] == served["readings"]
    assert [int(r[1]) for r in rows] == list(range(192))


def test_wrong_home_link_key_is_refused_over_tcp(served):
    send, close = wrapper_transport("127.0.0.1", served["dlms"], 1, timeout=10)
    try:
        client = DlmsLinkClient(send, keys=home_link_suite0_keys(bytes(16)), system_title=b"MHHEVIL1")
        with pytest.raises(DlmsLinkError, match="association refused"):
            client.associate()
    finally:
        close()


def _sml_bytes(port: int, minimum: int, key: bytes) -> bytes:
    """Bytes from the SML push port, read as the paired hub (TLS with the identity
    derived from the home-link key), until at least ``minimum`` complete files arrived."""
    buf = b""
    deadline = time.monotonic() + 30
    with open_sml_link("127.0.0.1", port, key, timeout=10) as s:
        while buf.count(bytes.fromhex("1b1b1b1b1a")) < minimum:
            if time.monotonic() > deadline:
                pytest.fail("no SML files pushed")
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf


@pytest.mark.interop
def test_sml_port_pushes_files_smllib_and_pysml_read(served):
    data = _sml_bytes(served["sml"], 2, served["key"])
    reader = SmlStreamReader()
    reader.add(data)
    frame = reader.get_frame()
    assert frame is not None
    values = {e.obis.obis_code: e.get_value() for e in frame.get_obis()}
    assert values["1-0:1.8.0*255"] == served["energy"]
    # mean power of the last interval in W: Wh x 60 / 15
    assert values["1-0:16.7.0*255"] == served["readings"][-1] * 4
    start = data.index(bytes.fromhex("1b1b1b1b01010101"))
    end, msgs = SmlBase.find_frame(data[start:])
    assert msgs is not None
    entries = {e["objName"]: e for e in msgs[1]["messageBody"]["valList"]}
    assert entries["1-0:1.8.0*255"]["value"] == served["energy"]


def test_meter_read_errors_are_one_line_exit_2(capsys):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for target, needle in ((f"127.0.0.1:{port}", "refused"), ("nonsense", "HOST:PORT"),
                           ("127.0.0.1:99999", "HOST:PORT"), (":4059", "HOST:PORT")):
        assert main(["meter", "read", "--dlms", target]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err


def test_meter_read_times_out_on_a_silent_peer(capsys):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        rc = main(["meter", "read", "--dlms", f"127.0.0.1:{port}", "--timeout", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no answer" in err and len(err.strip().splitlines()) == 1, err


def test_meter_read_of_a_non_dlms_peer_is_one_line(served, capsys):
    # The SML port speaks no DLMS: the reader must fail cleanly, not hang or trace.
    assert main(["meter", "read", "--dlms", f"127.0.0.1:{served['sml']}", "--timeout", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meterhub: error:") and len(err.strip().splitlines()) == 1, err


def test_serve_without_days_or_store_is_a_usage_error(tmp_path):
    out = subprocess.run(
        _cli("meter", "serve", "--dlms", "0", "--meter-id", "m1", "--data-dir", str(tmp_path / "none")),
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert out.returncode == 2
    assert "pass --days" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == ""


def test_serve_on_a_busy_port_is_a_usage_error(served):
    out = subprocess.run(
        _cli("meter", "serve", "--dlms", str(served["dlms"]), "--meter-id", "m1",
             "--data-dir", str(served["data"])),
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert out.returncode == 2, out.stderr
    assert "cannot listen" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_serve_loads_the_store_again_and_stops_on_sigint(served, tmp_path):
    # A second meter in its own store, served from what is there (no --days), then SIGINT.
    data = tmp_path / "second"
    assert main(["meter", "simulate", "--meter-id", "m2", "--days", "1", "--out", str(data)]) == 0
    proc = subprocess.Popen(
        _cli("meter", "serve", "--dlms", "0", "--meter-id", "m2", "--data-dir", str(data)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    line = _first_line(proc)
    m = SERVE_LINE.match(line)
    assert m and m.group(1) == "m2" and m.group(3) is None and m.group(4) == "1", line
    assert _stop(proc, signal.SIGINT) == 0
    # Unknown meter in an existing store: one line, exit 2.
    out = subprocess.run(
        _cli("meter", "serve", "--dlms", "0", "--meter-id", "nope", "--data-dir", str(data)),
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    reg = json.loads((data / "m2.meter.json").read_text())
    assert reg["meter_id"] == "m2"


def test_hub_sml_reads_the_push_as_the_paired_hub(served, tmp_path, capsys):
    key_file = served["data"] / "m1.homelink.key"
    assert main(["hub", "sml", "--sml", f"127.0.0.1:{served['sml']}", "--key", str(key_file)]) == 0
    lines = dict(ln.split(None, 1) for ln in capsys.readouterr().out.splitlines())
    assert lines["1-0:1.8.0*255"] == f"{served['energy']} x 10^0 (unit 30)"
    assert lines["1-0:16.7.0*255"] == f"{served['readings'][-1] * 4} x 10^0 (unit 27)"
    # a neighbour's (or another meter's) key: refused in one line, nothing printed
    other = tmp_path / "other.key"
    other.write_text("00" * 16 + "\n")
    assert main(["hub", "sml", "--sml", f"127.0.0.1:{served['sml']}", "--key", str(other)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "is not the meter paired with this key" in out.err
    assert len(out.err.strip().splitlines()) == 1
    # the DLMS port speaks no TLS: one line too
    assert main(["hub", "sml", "--sml", f"127.0.0.1:{served['dlms']}", "--key", str(key_file),
                 "--timeout", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meterhub: error:") and len(err.strip().splitlines()) == 1, err
