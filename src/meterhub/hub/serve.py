"""``meterhub hub serve``: the hub's secure element, reachable from PC/SC tools.

The card (:class:`~meterhub.card.Card` with the GlobalPlatform card manager and the hub's
applets) lives in ``DATA_DIR/card.sqlite``; :class:`~meterhub.card.vpcd.VpcdClient` connects
it to the vsmartcard ``vpcd`` driver of pcscd, so ``opensc-tool``, pyscard, yubikit or
GlobalPlatformPro see it as a card in the reader ``Virtual PCD 00 00`` (docs/pcsc.md).

First start on an empty data directory provisions a *development* card (GPC 2.3.1
§5.1.1.1-2, done by :func:`meterhub.card.gp.provision_isd`): the ISD ``A000000151000000``
with the GlobalPlatform test key set ``404142..4F`` (KVN ``30``) and a DAP key. The DAP key
pair is read from ``DATA_DIR/dap-key.pem`` when present, else generated and written there
(mode 0600) for the issuer's TSM to sign load files with. Rotate the test keys with PUT KEY
(:meth:`meterhub.utility.tsm.TSM.rotate_keys`) before the hub holds anything of value.
Later starts reopen the card as it was: installed applets, keys, counters, life cycle.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from ..card import Card
from ..card.gp import ISD_AID, StaticKeys, open_card, provision_isd
from ..card.gp.registry import isd_aid
from ..card.store import STORAGE_KEY_SUFFIX
from ..card.vpcd import DEFAULT_PORT, VpcdClient, VpcdError, parse_endpoint
from ..crypto import ecdsa
from ..storage import discard_built_file, install_built_file

__all__ = [
    "CARD_FILE",
    "DAP_KEY_FILE",
    "TEST_KEYS",
    "ServeError",
    "build_hub_card",
    "reader_hint",
    "serve",
]

log = logging.getLogger(__name__)

CARD_FILE = "card.sqlite"
DAP_KEY_FILE = "dap-key.pem"
#: GlobalPlatform default test keys 40..4F (ENC = MAC = DEK), key version 30.
TEST_KEYS = StaticKeys.single(0x30, bytes(range(0x40, 0x50)))


class ServeError(Exception):
    """A data directory or endpoint the hub cannot serve from (one line, no traceback)."""


def _dap_key(data_dir: Path) -> ecdsa.SigningKey:
    path = data_dir / DAP_KEY_FILE
    if path.exists():
        try:
            return ecdsa.load_signing_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ServeError(f"{path}: not a P-256 private key in PEM ({exc})") from None
    key = ecdsa.generate_signing_key()
    # Written whole or not at all (a kill must not leave an empty key file behind).
    tmp = data_dir / f".{DAP_KEY_FILE}.new"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(ecdsa.signing_key_pem(key))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(data_dir)
    return key


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_hub_card(data_dir: str | Path, *, keys: StaticKeys = TEST_KEYS) -> Card:
    """Open (or on first use provision) the hub card stored in ``data_dir``.

    Importing :mod:`meterhub.applets` registers the applet classes, so instances that
    the TSM installed earlier are rebuilt from the store (no code comes from the store).
    """
    import meterhub.applets  # noqa: F401 - registers the hub's applet classes

    d = Path(data_dir)
    path = d / CARD_FILE
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # First start: provision under a temporary name and rename into place, so a
            # kill during provisioning leaves no half-provisioned card (docs/operations.md).
            dap = _dap_key(d)
            tmp = d / f".{CARD_FILE}.new"
            discard_built_file(tmp, (STORAGE_KEY_SUFFIX,))
            new = open_card(tmp)
            provision_isd(new, [keys], dap_key=dap)
            new.close()
            install_built_file(tmp, path, (STORAGE_KEY_SUFFIX,))  # its storage key moves with it
            log.warning(
                "provisioned a development card in %s: ISD %s with the GP test keys (KVN %02X); "
                "rotate them with PUT KEY",
                d,
                ISD_AID,
                keys.kvn,
            )
        card = open_card(path)
    except OSError as exc:
        raise ServeError(f"cannot use data directory {d}: {exc.strerror or exc}") from None
    except Exception as exc:  # a file that is not a card store (sqlite3.DatabaseError, ...)
        raise ServeError(f"{path}: not a meterhub card store ({exc})") from None
    if isd_aid(card.store) is None:
        card.close()
        raise ServeError(f"{path}: card store without an issuer security domain (damaged or emptied)")
    return card


def _endpoint(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reader_hint(port: int) -> str:
    """The PC/SC reader name a stock vpcd gives the slot on ``port`` (vsmartcard
    ``vpcd.h``: first slot on VPCDPORT 35963, the next on 35964; pcscd names readers
    ``NAME %02X %02X``); empty for a port a stock configuration does not use."""
    slot = port - DEFAULT_PORT
    return f" (reader 'Virtual PCD 00 {slot:02X}')" if 0 <= slot < 2 else ""


def serve(
    data_dir: str | Path,
    vpcd: str = "127.0.0.1:35963",
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> int:
    """Serve the hub card of ``data_dir`` to vpcd at ``HOST:PORT`` until stopped.

    Stops on SIGINT/SIGTERM (when run in the main thread) or when ``stop`` is set;
    reconnects with backoff whenever pcscd is not there. ``ready`` is set once the card
    is built. Returns 0 (the CLI exit code).
    """
    try:
        host, port = parse_endpoint(vpcd)
    except VpcdError as exc:
        raise ServeError(str(exc)) from None
    try:  # a name that does not resolve is a usage error, not something to retry
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(f"cannot resolve vpcd host {host!r}: {exc.strerror}") from None
    card = build_hub_card(data_dir)
    card_path = Path(data_dir) / CARD_FILE

    def announce(sock: socket.socket) -> None:
        # From the connected socket, not the argument: the address actually reached.
        peer, local = sock.getpeername(), sock.getsockname()
        print(
            f"meterhub hub serve: card {card_path} connected to vpcd at {_endpoint(peer)} "
            f"from {_endpoint(local)}{reader_hint(peer[1])}",
            file=sys.stderr,
            flush=True,
        )

    client = VpcdClient(card, host, port, on_connect=announce)
    watcher: threading.Thread | None = None
    if stop is not None:
        watcher = threading.Thread(
            target=lambda: (stop.wait(), client.stop()), name="hub-serve-stop", daemon=True
        )
        watcher.start()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: client.stop())
    print(
        f"meterhub hub serve: card {card_path}, connecting to vpcd at {host}:{port}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    if ready is not None:
        ready.set()
    try:
        client.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        card.close()
    return 0
