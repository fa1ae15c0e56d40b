"""``meterhub hub``: the hub's side (bill, read the SML push, serve the card to vpcd);
the privacy commands are :mod:`.hub_privacy`, the dashboard :mod:`.hub_web`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_REJECTED
from .common import (
    UsageError,
    _date,
    _lines,
    _Parser,
    _read,
    _registration,
    _seconds,
    _setup_logging,
    _write,
)
from .config import LOG_LEVELS


# -- hub --------------------------------------------------------------------
def _bill_tariff(args: argparse.Namespace) -> Any:
    """The tariff ``hub bill`` may bill under: signed by the given supplier key, or, only
    with ``--unverified-tariff``, taken as it is. Returns ``None`` after printing one
    ``REJECTED`` line when the signature does not verify (exit 1); a missing or unreadable
    key is a usage error (exit 2). A hub that bills under an unchecked tariff computes
    whatever prices a forger wrote and releases a statement the utility will reject."""
    from ..crypto import ecdsa
    from ..tariffs import TariffError, load_tariff, verify_tariff

    if args.supplier_key is None and not args.unverified_tariff:
        raise UsageError(
            f"{args.tariff}: cannot verify the tariff without --supplier-key "
            "(--unverified-tariff bills under it unchecked; unsafe)"
        )
    try:
        signed = load_tariff(_read(args.tariff, "tariff"))
    except TariffError as exc:
        raise UsageError(f"{args.tariff}: {exc}") from None
    if args.supplier_key is None:
        print(f"meterhub: warning: tariff {args.tariff} NOT verified (--unverified-tariff)", file=sys.stderr)
        return signed.tariff
    try:
        key = ecdsa.load_verifying_key(bytes.fromhex(_read(args.supplier_key, "supplier key").decode().strip()))
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{args.supplier_key}: not a supplier public key (hex SEC 1 point)") from None
    try:
        return verify_tariff(signed, key)
    except TariffError as exc:
        print(f"REJECTED tariff {args.tariff}: {exc}")
        return None


def cmd_hub_bill(args: argparse.Namespace) -> int:
    from ..model.errors import FormatError
    from ..model.formats.sealed import SealedDay, open_sealed_openings
    from ..tariffs import TariffError

    reg = _registration(args.meter)
    tariff = _bill_tariff(args)
    if tariff is None:
        return EXIT_REJECTED
    try:
        key = bytes.fromhex(_read(args.key, "home-link key").decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits") from None
    if len(key) != 16:
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits (16 bytes)")
    if args.to < args.from_:
        raise UsageError("--to is before --from")
    try:
        tariff.check_valid_on(args.from_)
        tariff.check_valid_on(args.to)
    except (TariffError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    # Authenticate every day with this key before anything is stored, so a wrong key
    # or a forged file leaves the data directory as it was.
    days = []
    for n, line in enumerate(_lines(args.homelink, "home-link file"), 1):
        try:
            sealed = SealedDay.from_json(line)
            if sealed.meter_id != reg["meter_id"]:
                raise FormatError(f"day of meter {sealed.meter_id!r}, not {reg['meter_id']!r}")
            days.append((sealed, open_sealed_openings(key, sealed)))
        except FormatError as exc:
            raise UsageError(f"{args.homelink}:{n}: {exc}") from None
    from ..storage.sqlite import data_dir_lock

    with data_dir_lock(args.data_dir):
        st = _hub_bill_locked(args, reg, key, tariff, days)
    text = json.dumps(st.to_dict(), indent=2, sort_keys=True) + "\n"
    if args.out:
        _write(args.out, text)
        print(f"bill {st.total / st.subunits_per_unit:.2f} {st.currency} for {reg['meter_id']} -> {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _hub_bill_locked(args: argparse.Namespace, reg: dict, key: bytes, tariff: Any, days: list) -> Any:
    """The statement of the tariff's kind (:func:`meterhub.model.billing.issue_statement`):
    v1, v3 with ``--metering-point`` and ``--contract``, or the proven v2 for a
    non-linear tariff (docs/nonlinear.md)."""
    from ..hub.secure_element import VaultClient, open_vault_card
    from ..hub.store import HubError, HubStore
    from ..model.billing import BillJob, issue_statement
    from ..tariffs import TariffError

    if bool(args.metering_point) != bool(args.contract):
        raise UsageError("--metering-point and --contract go together")
    hub = HubStore(Path(args.data_dir) / "hub.sqlite")
    card = None
    try:
        # The meter's hub card seals its records in hub.sqlite (docs/privacy.md): the host holds no key.
        card = open_vault_card(args.card or Path(args.data_dir) / "hubs" / f"{reg['meter_id']}.sqlite")
        hub.attach(reg["meter_id"], VaultClient(card.transmit))
        try:
            hub.pair_meter(reg["meter_id"], key, reg["tz"], reg["interval_minutes"])
        except HubError as exc:
            raise UsageError(str(exc)) from None
        for sealed, openings in days:
            hub.store_openings(sealed.meter_id, sealed.day, sealed.first_index, openings)
        try:
            first_index, openings = hub.openings(reg["meter_id"], args.from_, args.to)
            st = issue_statement(
                BillJob(
                    meter_id=reg["meter_id"],
                    tariff=tariff,
                    period_from=args.from_,
                    period_to=args.to,
                    first_index=first_index,
                    openings=openings,
                    tz=reg["tz"],
                    interval_minutes=reg["interval_minutes"],
                    metering_point=args.metering_point or None,
                    contract_id=args.contract or None,
                )
            )
        except (HubError, TariffError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        hub.save_statement(reg["meter_id"], args.from_, args.to, st.to_json())
    finally:
        hub.close()
        if card is not None:
            card.close()
    return st


def cmd_hub_sml(args: argparse.Namespace) -> int:
    """Read the meter's SML push as its paired hub (TLS with the home-link key)."""
    import ssl

    from ..links.sml import read_sml_push
    from ..meter.serve import ServeError, parse_endpoint
    from ..protocols.sml import extract_values, format_server_id

    try:
        host, port = parse_endpoint(args.sml)
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    try:
        key = bytes.fromhex(_read(args.key, "home-link key").decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits") from None
    if len(key) != 16:
        raise UsageError(f"{args.key}: home-link key must be 32 hex digits (16 bytes)")
    try:
        files = read_sml_push(host, port, key, timeout=args.timeout)
    except ssl.SSLError as exc:
        raise UsageError(f"{host}:{port} is not the meter paired with this key ({exc.reason or exc})") from None
    except TimeoutError:
        raise UsageError(f"no SML file from {host}:{port} within {args.timeout:g} s") from None
    except OSError as exc:
        raise UsageError(f"cannot read SML from {host}:{port}: {exc.strerror or exc}") from None
    for name, (value, scaler, unit) in sorted(extract_values(files[0].messages).items()):
        shown = format_server_id(value) if isinstance(value, bytes) else value
        print(f"{name:<16} {shown}" + (f" x 10^{scaler} (unit {unit})" if unit is not None else ""))
    return EXIT_OK


def cmd_hub_serve(args: argparse.Namespace) -> int:
    from ..hub.serve import HubServeError, serve
    from ..storage.sqlite import data_dir_lock

    _setup_logging(args)
    with data_dir_lock(args.data_dir):
        try:
            return serve(args.data_dir, args.vpcd, dev=args.dev)
        except HubServeError as exc:
            raise UsageError(str(exc)) from None




def add_hub_parsers(sub: Any) -> None:
    """``meterhub hub bill|sml|serve``, the privacy commands and the dashboard."""
    h = sub.add_parser("hub", help="the hub's side").add_subparsers(dest="hub_cmd", required=True, parser_class=_Parser)
    hb = h.add_parser("bill", help="compute a bill statement from the home-link openings")
    hb.add_argument("--meter", required=True, help="meter registration (ID.meter.json)")
    hb.add_argument("--key", required=True, help="home-link key file (hex)")
    hb.add_argument("--homelink", required=True, help="sealed openings (ID.homelink.jsonl)")
    hb.add_argument("--tariff", required=True, help="the supplier's signed tariff (JSON)")
    hb.add_argument("--supplier-key", help="verify the tariff signature with this key (hex); required unless --unverified-tariff (default: none)")
    hb.add_argument(
        "--unverified-tariff", action="store_true",
        help="UNSAFE: bill under the tariff without checking its signature (only without --supplier-key)",
    )
    hb.add_argument("--from", dest="from_", type=_date, required=True, metavar="DATE", help="first day of the bill period")
    hb.add_argument("--to", type=_date, required=True, metavar="DATE", help="last day, inclusive")
    hb.add_argument("--data-dir", default="meterhub-data", help="the hub's state (hub.sqlite)")
    hb.add_argument("--card", metavar="PATH",
                    help="the meter's hub card, which seals its records in hub.sqlite (default: DATA_DIR/hubs/METER.sqlite, "
                    "created with its storage vault if missing)")
    hb.add_argument("--out", help="write the statement here (default: none, to stdout)")
    hb.add_argument(
        "--metering-point", metavar="MALO",
        help="MaLo-ID (11 digits) or MeLo-ID (33 chars); with --contract, a v3 statement with energy per band (default: none, v1)",
    )
    hb.add_argument("--contract", metavar="ID", help="the supplier's contract id, with --metering-point (default: none)")
    hb.set_defaults(func=cmd_hub_bill)
    hm = h.add_parser("sml", help="read the meter's SML push as its paired hub (TLS keyed by the home-link key)")
    hm.add_argument("--sml", required=True, metavar="HOST:PORT", help="the meter's SML port (`meter serve --sml`)")
    hm.add_argument("--key", required=True, help="home-link key file (hex), e.g. ID.homelink.key")
    hm.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS",
                    help="total deadline in seconds")
    hm.set_defaults(func=cmd_hub_sml)
    hs = h.add_parser("serve", help="serve the hub's secure element to pcscd's vpcd driver (docs/pcsc.md)")
    hs.add_argument(
        "--dev", action="store_true",
        help="development card on the public GP test keys 404142..4F (default: off: fresh SCP03 keys, written to "
        "DATA_DIR/scp03-keys.json, and a card on publicly known keys is refused)",
    )
    hs.add_argument("--vpcd", default="127.0.0.1:35963", metavar="HOST:PORT", help="where vpcd listens (35963: reader 'Virtual PCD 00 00')")
    hs.add_argument("--data-dir", default="meterhub-data", help="the hub card's state (card.sqlite, dap-key.pem)")
    hs.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper, default=argparse.SUPPRESS,
                    help="log level of the messages on stderr (default: INFO)")
    hs.set_defaults(func=cmd_hub_serve)
    from .hub_privacy import add_hub_privacy_parsers

    add_hub_privacy_parsers(h)  # hub policy show|set, hub releases (docs/privacy.md)
    from .hub_web import add_hub_dashboard_parser

    add_hub_dashboard_parser(h)  # hub dashboard (docs/dashboards.md)
