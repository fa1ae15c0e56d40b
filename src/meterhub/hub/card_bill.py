"""A bill through the hub's card: the host side of ``hub bill`` on the guarded path.

The host hands the card what it received (the meter's pairing, the supplier's signed
tariff, the sealed days from the home link) and asks the billing applet for the bill;
the card's privacy guard (:mod:`meterhub.card.guard`) decides what leaves: one whole
piece of the customer's cycle, one bill per piece and recipient, the tariff within the
policy's limits, the budget, a release-log entry. Nothing here computes a bill.

Days are delivered sealed (PUT DAY P1 ``00``), so the host never needs the openings in
the clear; a day the card already holds is accepted again (idempotent), a gap is
recorded by the card and a missing day delivered later fills it (docs/privacy.md,
"Gaps and corrections").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from ..applets.readings import encode_day
from ..model.formats.bill_parts import BillParts
from ..model.formats.sealed import SealedDay
from ..model.formats.statements import BillStatement
from .proving import ProvenBillStatement
from .secure_element import BillingClient
from .store import HubError

__all__ = ["deliver_to_card", "bill_through_card"]


def deliver_to_card(
    transmit: Callable[[bytes], bytes],
    *,
    meter_id: str,
    tz: str,
    interval_minutes: int,
    home_link_key: bytes,
    tariff: bytes | None,
    days: Sequence[SealedDay],
    app_aid: str | None = None,
) -> BillingClient:
    """Pair the meter (once), put the signed tariff (PUT TARIFF; the card checks its
    signer and the policy) and the sealed days, in day order. Raises :class:`HubError`
    with the card's one-line reason."""
    c = BillingClient(transmit, app_aid) if app_aid else BillingClient(transmit)
    c.select()
    c.pair(meter_id, tz, interval_minutes, home_link_key)
    if tariff is not None:
        c.put_tariff(tariff)
    for sealed in sorted(days, key=lambda s: s.day):
        if sealed.meter_id != meter_id:
            raise HubError(f"day {sealed.day} is of meter {sealed.meter_id!r}, not {meter_id!r}")
        try:
            c.put_day(encode_day(sealed))
        except HubError as exc:
            raise HubError(f"day {sealed.day}: {exc}") from None
    return c


def bill_through_card(
    client: BillingClient,
    first: date,
    last: date,
    *,
    metering_point: str | None = None,
    contract_id: str | None = None,
    correction: bool = False,
) -> BillStatement | ProvenBillStatement | BillParts:
    """GET BILL (v1/v2), or GET BANDED BILL with the billing system's keys (bill parts:
    a whole piece's v3 statement as one part, or the held runs and the missing days; or
    with ``correction`` the one correction of such a release)."""
    if metering_point is None and contract_id is None:
        if correction:
            raise HubError("a correction is of a banded bill (metering point and contract)")
        return client.bill(first, last)
    if not (metering_point and contract_id):
        raise HubError("the metering point and the contract go together")
    return client.banded_bill_parts(first, last, metering_point, contract_id, correction=correction)
