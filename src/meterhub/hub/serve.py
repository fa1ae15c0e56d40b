"""``meterhub hub serve``: the hub's secure element, reachable from PC/SC tools.

The card (:class:`~meterhub.card.Card` with the GlobalPlatform card manager and the hub's
applets) lives in ``DATA_DIR/card.sqlite``; :class:`~meterhub.card.vpcd.VpcdClient` connects
it to the vsmartcard ``vpcd`` driver of pcscd, so ``opensc-tool``, pyscard, yubikit or
GlobalPlatformPro see it as a card in the reader ``Virtual PCD 00 00`` (docs/pcsc.md).

First start on an empty data directory provisions the card (GPC 2.3.1 §5.1.1.1-2, done by
:func:`meterhub.card.gp.provision_isd` and :func:`meterhub.hub.secure_element.open_hub_card`):
the ISD ``A000000151000000`` with a DAP key, one supplementary security domain per data
recipient (supplier, grid operator, third party), and the privacy guard with the
customer's key (``card.sqlite.customer.pem``, 0600), the pinned publisher keys and the
default release policy, as the demo's hubs are provisioned (docs/privacy.md). The DAP key
pair is read from ``DATA_DIR/dap-key.pem`` when present, else generated and written there
(0600) for the issuer's TSM to sign load files with; the recipients' SDs verify DAP
signatures with the same key (their TSMs' own keys are set with PUT KEY by the issuer).

* Without ``--dev`` every security domain gets fresh random SCP03 keys, written to
  ``DATA_DIR/scp03-keys.json`` (0600) for the TSMs, and a card that still holds a
  publicly known key set (the GlobalPlatform test keys ``404142..4F``, or meterhub's
  demo keys) is refused (:func:`publicly_known_keys`): rotate them with PUT KEY
  (:meth:`meterhub.utility.tsm.TSM.rotate_keys`) first.
* With ``--dev`` the ISD gets the GlobalPlatform test key set ``404142..4F`` (KVN ``30``)
  and the recipients' SDs meterhub's demo keys, so PC/SC tools reach it with their
  default keys (tests/test_pcsc_interop.py). Never for a hub that holds real readings.

Later starts reopen the card as it was: installed applets, keys, counters, life cycle.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from pathlib import Path

from ..card import Card
from ..card.gp import ISD_AID, StaticKeys, open_card, provision_isd
from ..card.gp.registry import isd_aid
from ..card.gp.sd import SD_CLASS_NAME
from ..card.vpcd import DEFAULT_PORT, VpcdClient, VpcdError, parse_endpoint
from ..crypto import ecdsa
from ..errors import MeterhubError
from ..storage.sqlite import StoreError, discard_built_file, install_built_file, write_secret
from .secure_element import (
    CARD_SIDECARS,
    RECIPIENT_SDS,
    customer_key_path,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)

__all__ = [
    "CARD_FILE",
    "DAP_KEY_FILE",
    "KEYS_FILE",
    "TEST_KEYS",
    "HubServeError",
    "ServeError",
    "build_hub_card",
    "publicly_known_keys",
    "reader_hint",
    "serve",
]

log = logging.getLogger(__name__)

CARD_FILE = "card.sqlite"
DAP_KEY_FILE = "dap-key.pem"
#: The SCP03 key sets a production first start generates (0600; for the TSMs).
KEYS_FILE = "scp03-keys.json"
#: GlobalPlatform default test keys 40..4F (ENC = MAC = DEK), key version 30.
TEST_KEYS = StaticKeys.single(0x30, bytes(range(0x40, 0x50)))
#: Parties whose meterhub demo keys (:func:`demo_scp03_keys`) are derived from public strings.
_DEMO_PARTIES = ("issuer", "supplier", "grid-operator", "third-party", "supplier-a", "supplier-b", "supplier-c")


def _known_key_material() -> set[bytes]:
    """ENC||MAC||DEK of every publicly known key set (the GP test keys, the demo keys)."""
    known = {TEST_KEYS.enc + TEST_KEYS.mac + TEST_KEYS.dek}
    for party in _DEMO_PARTIES:
        k = demo_scp03_keys(party)
        known.add(k.enc + k.mac + k.dek)
    return known


def publicly_known_keys(card: Card) -> list[tuple[str, int]]:
    """The (security domain AID, KVN) of every key set on ``card`` that is publicly known:
    the GlobalPlatform test keys ``404142..4F`` or a meterhub demo key set. A card with any
    of them is open to anyone who has read the GP specification or this repository."""
    known = _known_key_material()
    found = []
    for rec in card.registry:
        if rec.class_name != SD_CLASS_NAME:
            continue
        for name in card.store.keys(rec.aid.raw):
            if name[:1] == b"K" and len(name) == 2 and card.store.get(rec.aid.raw, name) in known:
                found.append((rec.aid.raw.hex().upper(), name[1]))
    return found


def _fresh_keys(kvn: int = 0x01) -> StaticKeys:
    """A random AES-128 SCP03 key set (ENC, MAC, DEK) from :mod:`secrets`."""
    return StaticKeys(kvn, secrets.token_bytes(16), secrets.token_bytes(16), secrets.token_bytes(16))


def _keys_doc(keys: dict[str, tuple[str, StaticKeys]]) -> bytes:
    doc = {
        "format": "meterhub/scp03-keys/v1",
        "security_domains": [
            {"party": party, "aid": aid, "kvn": k.kvn, "enc": k.enc.hex(), "mac": k.mac.hex(), "dek": k.dek.hex()}
            for party, (aid, k) in keys.items()
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


class HubServeError(MeterhubError):
    """A data directory or endpoint the hub cannot serve from (one line, no traceback)."""


#: The name this error had before the meter's ``ServeError`` made it ambiguous.
ServeError = HubServeError


def _dap_key(data_dir: Path) -> ecdsa.SigningKey:
    path = data_dir / DAP_KEY_FILE
    if path.exists():
        try:
            return ecdsa.load_signing_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise HubServeError(f"{path}: not a P-256 private key in PEM ({exc})") from None
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


def build_hub_card(data_dir: str | Path, *, dev: bool = False) -> Card:
    """Open (or on first use provision) the hub card stored in ``data_dir`` (module
    docstring): with the privacy guard; fresh SCP03 keys unless ``dev``; a card on publicly
    known keys is refused unless ``dev`` (:class:`HubServeError`).

    Importing :mod:`meterhub.applets` registers the applet classes, so instances that
    the TSM installed earlier are rebuilt from the store (no code comes from the store).
    """
    import meterhub.applets  # noqa: F401 - registers the hub's applet classes

    d = Path(data_dir)
    path = d / CARD_FILE
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _provision(d, path, dev=dev)
        card = open_card(path)
    except StoreError as exc:
        raise HubServeError(str(exc)) from None
    except OSError as exc:
        raise HubServeError(f"cannot use data directory {d}: {exc.strerror or exc}") from None
    except Exception as exc:  # a file that is not a card store (sqlite3.DatabaseError, ...)
        raise HubServeError(f"{path}: not a meterhub card store ({exc})") from None
    if isd_aid(card.store) is None:
        card.close()
        raise HubServeError(f"{path}: card store without an issuer security domain (damaged or emptied)")
    if not dev:
        public = publicly_known_keys(card)
        if public:
            card.close()
            which = ", ".join(f"{aid} KVN {kvn:02X}" for aid, kvn in public)
            raise HubServeError(
                f"{path}: the card holds publicly known keys ({which}); rotate them with PUT KEY "
                "or serve with --dev (never for real readings)"
            )
    return card


def _provision(d: Path, path: Path, *, dev: bool) -> None:
    """First start: provision under a temporary name and rename into place, so a kill
    during provisioning leaves no half-provisioned card (docs/operations.md). The key files
    beside the card (storage key ``.sk``, customer key) move first, so a card in place
    always finds them; the SCP03 key file is written before the card exists."""
    dap = _dap_key(d)
    tmp = d / f".{CARD_FILE}.new"
    discard_built_file(tmp, CARD_SIDECARS)
    if dev:
        issuer = TEST_KEYS
        recipients = {name: (demo_scp03_keys(name), demo_dap_key(name).public_key()) for name in RECIPIENT_SDS}
    else:
        issuer = _fresh_keys()
        recipients = {name: (_fresh_keys(), dap.public_key()) for name in RECIPIENT_SDS}
        keys = {"issuer": (ISD_AID.raw.hex().upper(), issuer)} | {n: (RECIPIENT_SDS[n], k) for n, (k, _) in recipients.items()}
        write_secret(d / KEYS_FILE, _keys_doc(keys))
    new = open_card(tmp)
    provision_isd(new, [issuer], dap_key=dap)
    new.close()
    supplier_keys, supplier_dap = recipients.pop("supplier")
    card = open_hub_card(
        tmp, issuer_keys=issuer, supplier_keys=supplier_keys, supplier_dap=supplier_dap, other_recipients=recipients
    )
    card.close()
    install_built_file(tmp, path, CARD_SIDECARS)  # storage and customer keys move first
    if dev:
        log.warning(
            "provisioned a development card in %s: ISD %s with the GP test keys (KVN %02X), "
            "recipients on the public demo keys; never use it for real readings",
            d,
            ISD_AID,
            TEST_KEYS.kvn,
        )
    else:
        print(
            f"meterhub hub serve: provisioned {path} with fresh SCP03 keys, written to {d / KEYS_FILE} (0600); "
            f"customer key {customer_key_path(path)} (0600)",
            file=sys.stderr,
            flush=True,
        )


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
    dev: bool = False,
) -> int:
    """Serve the hub card of ``data_dir`` to vpcd at ``HOST:PORT`` until stopped.

    Stops on SIGINT/SIGTERM (when run in the main thread) or when ``stop`` is set;
    reconnects with backoff whenever pcscd is not there. ``ready`` is set once the card
    is built. ``dev``: a development card on the public test keys (module docstring). Returns 0 (the CLI exit code).
    """
    try:
        host, port = parse_endpoint(vpcd)
    except VpcdError as exc:
        raise HubServeError(str(exc)) from None
    try:  # a name that does not resolve is a usage error, not something to retry
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HubServeError(f"cannot resolve vpcd host {host!r}: {exc.strerror}") from None
    card = build_hub_card(data_dir, dev=dev)
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
        def _stop_when_set() -> None:
            stop.wait()
            client.stop()

        watcher = threading.Thread(target=_stop_when_set, name="hub-serve-stop", daemon=True)
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
