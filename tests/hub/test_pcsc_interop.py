"""The hub reached from real PC/SC tools through pcscd and the vsmartcard vpcd driver.

Needs pcscd running with vpcd listening on 127.0.0.1:35963 (scripts/services.sh starts it;
CI installs pcscd, vsmartcard-vpcd and opensc). Without them these tests FAIL, on purpose.

* the hub runs as ``meterhub hub serve`` in a child process (the real entry point);
* pyscard (PC/SC) sees the reader ``Virtual PCD 00 00`` and the hub's ATR;
* ``opensc-tool`` SELECTs the ISD (GPC 2.3.1 §11.9) and reads Card Recognition Data;
* the utility's TSM installs the billing applet over PC/SC (SCP03 level 33, DAP-signed);
* yubikit's independent SCP03 implementation (yubikey-manager) opens a level-33 session
  with the GP test keys 404142..4F, reads the key information template with an empty command
  body (which yubikit encrypts into one padded block) and lists the registry with GET STATUS.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterhub.card.gp import ISD_AID
from meterhub.crypto import ecdsa
from meterhub.protocols.gp.host import parse_get_status_response, parse_key_information

READER = "Virtual PCD 00 00"  # vpcd slot 0, port 35963 (/etc/reader.conf.d/vpcd)
VPCD = "127.0.0.1:35963"
ISD_HEX = "A000000151000000"
BILL_PKG, BILL_MOD, BILL_APP = "A0000006174249", "A000000617424901", "A00000061742490101"


def _readers() -> list[str]:
    from smartcard.System import readers

    try:
        return [str(r) for r in readers()]
    except Exception as exc:  # pyscard's PC/SC exceptions differ between versions
        pytest.fail(f"pcscd is not running ({exc}); run scripts/services.sh")


def _connect(reader: str):
    from smartcard.System import readers

    r = next(r for r in readers() if str(r) == reader)
    conn = r.createConnection()
    conn.connect()
    return conn


def _wait_for_card(proc: subprocess.Popen, bound: float = 30.0) -> None:
    """Until pcscd reports the hub's card in the reader (bounded; not a timing assertion)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hub serve exited early: {proc.stderr.read().decode(errors='replace')}")
        if _card_present():
            return
        time.sleep(0.1)
    pytest.fail(f"the hub's card never appeared in {READER!r}")


def _card_present() -> bool:
    from smartcard.Exceptions import CardConnectionException, NoCardException

    try:
        _connect(READER).disconnect()
        return True
    except (NoCardException, CardConnectionException):
        return False


def _wait_for_empty_slot(bound: float = 10.0) -> None:
    """Before starting our hub, nobody else's card may sit in the slot (bounded wait: pcscd
    notices a card that just left at its next poll)."""
    deadline = time.monotonic() + bound
    while _card_present():
        if time.monotonic() > deadline:
            pytest.fail(f"another card occupies {READER!r} (a leftover 'meterhub hub serve'?)")
        time.sleep(0.1)


@contextlib.contextmanager
def _slot_lock(bound: float = 300.0) -> Iterator[None]:
    """vpcd slot 0 takes one card: test runs sharing this machine take turns (flock)."""
    with open(Path(tempfile.gettempdir()) / "meterhub-vpcd-35963.lock", "a+") as f:
        deadline = time.monotonic() + bound
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("vpcd slot 0 stayed busy (another test run holds it)")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _die_with_parent() -> None:
    """Child side of Popen: SIGTERM when pytest dies (Linux prctl PR_SET_PDEATHSIG), so a
    killed test run never leaves a hub attached to the vpcd slot."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    names = _readers()
    if READER not in names:
        pytest.fail(f"no {READER!r} among PC/SC readers {names}: is vsmartcard-vpcd installed?")
    data = tmp_path_factory.mktemp("hub")
    code = "import sys; from meterhub.cli import main; sys.exit(main())"
    with _slot_lock():
        _wait_for_empty_slot()
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "hub", "serve", "--dev", "--vpcd", VPCD, "--data-dir", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        try:
            _wait_for_card(proc)
            yield data
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
    assert rc == 0, "hub serve did not stop cleanly on SIGTERM"


@pytest.mark.interop
def test_pyscard_sees_the_reader_and_the_atr(hub: Path) -> None:
    from meterhub.card import build_atr

    conn = _connect(READER)
    try:
        assert bytes(conn.getATR()) == build_atr()
        data, sw1, sw2 = conn.transmit(list(bytes.fromhex("00A4040008" + ISD_HEX + "00")))
        assert (sw1, sw2) == (0x90, 0x00)
        assert bytes(data)[:2] == b"\x6f" + bytes([len(data) - 2])  # FCI template
    finally:
        conn.disconnect()


def _opensc_index() -> str:
    out = subprocess.run(
        ["opensc-tool", "--list-readers"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+.*" + re.escape(READER) + r"\s*$", line)
        if m:
            return m.group(1)
    pytest.fail(f"opensc-tool does not list {READER!r}:\n{out}")


@pytest.mark.interop
def test_opensc_tool_selects_the_isd(hub: Path) -> None:
    res = subprocess.run(
        ["opensc-tool", "-r", _opensc_index(), "-s", "00A4040008" + ISD_HEX, "-s", "80CA006600"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    answers = re.findall(r"Received \(SW1=0x([0-9A-Fa-f]{2}), SW2=0x([0-9A-Fa-f]{2})\)", res.stdout)
    assert len(answers) == 2, res.stdout
    assert answers[0][0].upper() in ("90", "61"), res.stdout  # SELECT ISD: 9000 or 61xx
    assert answers[1] == ("90", "00"), res.stdout
    assert "66 31 73 2F 06 07 2A 86 48 86 FC 6B" in res.stdout  # Card Recognition Data (GPC §H.2)


def _yubikit_session(keys=None):
    from smartcard.System import readers
    from ykman.pcsc import ScardSmartCardConnection
    from yubikit.core.smartcard import SmartCardProtocol
    from yubikit.core.smartcard.scp import KeyRef, Scp03KeyParams, ScpKid, StaticKeys

    r = next(r for r in readers() if str(r) == READER)
    conn = ScardSmartCardConnection(r.createConnection())
    proto = SmartCardProtocol(conn)
    proto.select(bytes.fromhex(ISD_HEX))
    params = Scp03KeyParams(ref=KeyRef(ScpKid.SCP03, 0x30), keys=keys or StaticKeys.default())
    try:
        proto.init_scp(params)  # INITIALIZE UPDATE, EXTERNAL AUTHENTICATE P1 = 33
    except Exception:
        proto.close()
        raise
    return proto


def _yubikit_get_status(proto, p1: int) -> list:
    """GET STATUS (GPC 2.3.1 §11.4), tag-E3 format, following 6310."""
    from yubikit.core.smartcard import ApduError

    raw, p2 = b"", 0x02
    while True:
        try:
            raw += proto.send_apdu(0x80, 0xF2, p1, p2, b"\x4f\x00")
            break
        except ApduError as e:
            if e.sw == 0x6A88:
                break
            assert e.sw == 0x6310, hex(e.sw)
            raw += e.data  # R-MAC checked and decrypted by yubikit
            p2 = 0x03
    return parse_get_status_response(raw, p1, tagged=True)


@pytest.mark.interop
def test_tsm_over_pcsc_and_yubikit_scp03_level_33(hub: Path) -> None:
    from meterhub.applets.billing import BillingApplet
    from meterhub.card.gp import make_load_file
    from meterhub.hub.serve import DAP_KEY_FILE, TEST_KEYS
    from meterhub.utility.tsm import TSM, PcscTransport, dap_signer

    # The issuer's TSM installs the billing applet through PC/SC (pcscd -> vpcd -> hub).
    dap = ecdsa.load_signing_key((hub / DAP_KEY_FILE).read_bytes())
    transport = PcscTransport(READER)
    try:
        tsm = TSM(transport, TEST_KEYS, dap=dap_signer(ISD_AID, dap)).open()
        assert tsm.client.scp.security_level == 0x33
        tsm.deploy(
            make_load_file(BILL_PKG, {BILL_MOD: BillingApplet}),
            BILL_APP,  # no install key: signer keys are the privacy guard's pinned ones
        )
    finally:
        transport.close()

    # yubikit, an independent SCP03 implementation, sees it.
    proto = _yubikit_session()
    try:
        # GET DATA key information template: an empty body, which yubikit encrypts into
        # one block 80 00..00 that the hub must accept (Amendment D §6.2.6).
        info = parse_key_information(proto.send_apdu(0x80, 0xCA, 0x00, 0xE0))
        assert {(k.key_id, k.kvn, k.key_type, k.length) for k in info} == {
            (1, 0x30, 0x88, 16),
            (2, 0x30, 0x88, 16),
            (3, 0x30, 0x88, 16),
        }
        isd = _yubikit_get_status(proto, 0x80)
        assert [e.aid.raw.hex().upper() for e in isd] == [ISD_HEX]
        apps = {e.aid.raw.hex().upper(): e for e in _yubikit_get_status(proto, 0x40)}
        assert apps[BILL_APP].life_cycle == 0x07
        assert apps[BILL_APP].elf_aid.raw.hex().upper() == BILL_PKG
        elfs = {e.aid.raw.hex().upper() for e in _yubikit_get_status(proto, 0x20)}
        assert BILL_PKG in elfs
        # yubikit also manages: DELETE the package and its applet (P2 80: related objects)
        proto.send_apdu(0x80, 0xE4, 0x00, 0x80, bytes.fromhex("4F07" + BILL_PKG))
        assert BILL_APP not in {e.aid.raw.hex().upper() for e in _yubikit_get_status(proto, 0x40)}
    finally:
        proto.close()


@pytest.mark.interop
def test_yubikit_with_wrong_keys_is_refused(hub: Path) -> None:
    from yubikit.core.smartcard.scp import StaticKeys

    wrong = bytes(range(0x50, 0x60))
    with pytest.raises(ValueError, match="Incorrect SCP parameters"):
        _yubikit_session(StaticKeys(wrong, wrong, wrong))


@pytest.mark.interop
def test_services_script_is_idempotent() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"
    env = dict(os.environ)
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    assert READER in _readers()
