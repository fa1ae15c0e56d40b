"""``meterhub hub dashboard``: the customer's dashboard on the hub's host (docs/dashboards.md)."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from ..errors import EXIT_OK
from .common import UsageError

__all__ = ["add_hub_dashboard_parser", "dashboards_hint", "loopback"]


def loopback(host: str) -> bool:
    """``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboards_hint(data_dir: Any, meter_id: str) -> str:
    """The demo's closing lines: how to open both dashboards on its data (docs/dashboards.md)."""
    return (
        "Dashboards (docs/dashboards.md):\n"
        f"  customer: meterhub hub dashboard --data-dir {data_dir} --meter {meter_id}   then open http://127.0.0.1:8765/\n"
        f"  utility:  meterhub utility keys add --keys {data_dir}/api-keys.json --party operator --role grid "
        f"--key-out {data_dir}/operator.key\n"
        f"            meterhub utility serve --db {data_dir}/utility.sqlite --keys {data_dir}/api-keys.json"
        f"   then open http://127.0.0.1:8750/dashboard/ and sign in with the key in {data_dir}/operator.key"
    )


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def cmd_hub_dashboard(args: argparse.Namespace) -> int:
    import uvicorn

    from ..web.customer import DashboardError, create_customer_app, open_household

    host, port = args.listen
    if not loopback(host) and not args.allow_remote:
        raise UsageError(f"--listen {host}: not a loopback address; the customer's dashboard shows every reading "
                         "(add --allow-remote to serve it beyond this machine, e.g. behind an authenticating proxy)")
    try:
        h = open_household(args.data_dir, args.meter, args.tariff)
    except DashboardError as exc:
        raise UsageError(str(exc)) from None
    app = create_customer_app(h, allow_remote=args.allow_remote)
    print(f"customer dashboard of {h.meter_id}: http://{host if ':' not in host else '[' + host + ']'}:{port}/ "
          "(Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return EXIT_OK


def add_hub_dashboard_parser(h: Any) -> None:
    """Add ``dashboard`` to the ``hub`` subcommands."""
    d = h.add_parser("dashboard", help="the customer's web dashboard: consumption, bills, releases, consents, DR")
    d.add_argument("--data-dir", default="meterhub-data", help="the hub's data directory (hub.sqlite, hubs/ID.sqlite)")
    d.add_argument("--meter", help="the household's meter id (default: none, the only card in hubs/)")
    d.add_argument("--tariff", help="the customer's signed tariff file (default: none, the shipped example tariff)")
    d.add_argument("--listen", type=_listen, default="127.0.0.1:8765", help="HOST:PORT, loopback only unless "
                   "--allow-remote (default: 127.0.0.1:8765)")
    d.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --listen address and Host header")
    d.set_defaults(func=cmd_hub_dashboard)
