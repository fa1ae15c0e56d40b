"""The household the customer's dashboard serves: its data directory, card and keys
(:mod:`meterhub.web.customer`; docs/dashboards.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import MeterhubError
from ...tariffs import Tariff, TariffError, load_tariff

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
VIEWS = ("day", "week", "month")
_NAV = (("/", "Consumption"), ("/bills", "Bills"), ("/releases", "Releases"), ("/consents", "Consents"),
        ("/dr", "Demand response"))


class DashboardError(MeterhubError, ValueError):
    """A data directory, meter or file the dashboard cannot serve; the message says which."""


@dataclass
class Household:
    """One household's hub: its store of openings, its card, the customer key, its tariff."""

    data_dir: Path
    meter_id: str
    tz: str
    interval_minutes: int
    tariff: Tariff
    tariff_label: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def card_path(self) -> Path:
        return self.data_dir / "hubs" / f"{self.meter_id}.sqlite"

    @property
    def key_path(self) -> Path:
        from ...hub.secure_element import customer_key_path

        return customer_key_path(self.card_path)


def open_household(data_dir: str | Path, meter_id: str | None = None, tariff_file: str | Path | None = None) -> Household:
    """Check the data directory (``hub.sqlite``, ``hubs/ID.sqlite`` and its customer key)
    and pick the meter: ``meter_id``, or the only card in ``hubs/``."""
    from ...hub.store import HubError, HubStore
    from ...tariffs import example_signed_tariff

    d = Path(data_dir)
    if not (d / "hub.sqlite").is_file():
        raise DashboardError(f"{d}: no hub.sqlite (run `meterhub demo --data-dir {d}` first)")
    cards = sorted(p.name.removesuffix(".sqlite") for p in (d / "hubs").glob("*.sqlite")) if (d / "hubs").is_dir() else []
    if meter_id is None:
        if len(cards) != 1:
            raise DashboardError(f"{d}: {len(cards)} hub cards; name one with --meter ({', '.join(cards[:8]) or 'none'})")
        meter_id = cards[0]
    if meter_id not in cards:
        raise DashboardError(f"{d}: no hub card for meter {meter_id!r}")
    from ...hub.secure_element import VaultClient, open_vault_card

    hub = HubStore(d / "hub.sqlite")
    try:
        card = open_vault_card(d / "hubs" / f"{meter_id}.sqlite")
        try:
            with hub.attached(meter_id, VaultClient(card.transmit)):
                _, tz, interval = hub.meter(meter_id)
        finally:
            card.close()
    except HubError as exc:
        raise DashboardError(str(exc)) from None
    finally:
        hub.close()
    try:
        raw = Path(tariff_file).read_bytes() if tariff_file else None
        signed = load_tariff(raw) if raw is not None else example_signed_tariff()
    except OSError as exc:
        raise DashboardError(f"cannot read the tariff {tariff_file}: {exc.strerror}") from None
    except TariffError as exc:
        raise DashboardError(f"{tariff_file}: {exc}") from None
    tariff = signed.tariff
    if not isinstance(tariff, Tariff):
        raise DashboardError("the dashboard shows time-of-use tariffs only")
    label = f"{tariff.tariff_id} v{tariff.version}" + ("" if tariff_file else " (the shipped example tariff)")
    h = Household(d, meter_id, tz, interval, tariff, label)
    if not h.key_path.is_file():
        raise DashboardError(f"no customer key at {h.key_path}")
    return h
