"""A hostile supplier against the hub's guard with tariffs it signs itself (its pinned
tariff key) and GET BANDED BILL (docs/privacy.md, "Per-band energy and registers")."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from helpers import cycle_policy, make_history
from meterhub.demo.hubs import demo_tsm, provision_demo_hub
from meterhub.hub.secure_element import (
    BILLING_APP_AID,
    BillingClient,
    HubError,
)
from meterhub.tariffs import Tariff, demo_supplier_key, dump_tariff, example_tariff, sign_tariff
from test_banded import MALO
from test_guard import _log

START = date(2027, 1, 11)  # a Monday in winter
N_DAYS = 7
SPY_DAY = START + timedelta(days=2)  # a Wednesday the supplier declares a "holiday"


def _hub(tmp_path):
    h = make_history(start=START, n_days=N_DAYS, seed=94)
    card = provision_demo_hub(tmp_path / "b.sqlite", ("billing",), policy=cycle_policy(START, N_DAYS))
    return h, card


def _spy_tariff() -> bytes:
    """Only prices the example tariff already has, every band >= 30 minutes: the policy's
    tariff shape holds. But one weekday is a "holiday" whose 17:00-17:30 is a band alone."""
    d = example_tariff(2027).to_dict()
    d["holidays"] = [SPY_DAY.isoformat()]
    for b in d["bands"]:
        if b["name"].endswith("weekend-day"):
            b["day_types"] = ["weekend"]
    for season in ("winter", "summer"):
        base = next(b for b in d["bands"] if b["name"] == f"{season}-weekend-day")
        for name, start, end in (("a", "06:00", "17:00"), ("spy", "17:00", "17:30"), ("b", "17:30", "22:00")):
            d["bands"].append({**base, "name": f"{season}-hol-{name}", "start": start, "end": end,
                               "day_types": ["holiday"]})
    return dump_tariff(sign_tariff(Tariff.from_dict(d), demo_supplier_key()))


def _spy_season() -> bytes:
    """A season of one day (the others around it): its bands occur on that day only."""
    d = example_tariff(2027).to_dict()
    d["seasons"] = [{"name": "winter", "start": "10-01", "end": "01-12"},
                    {"name": "spy", "start": "01-13", "end": "01-13"},
                    {"name": "late", "start": "01-14", "end": "03-31"},
                    {"name": "summer", "start": "04-01", "end": "09-30"}]
    winter = [b for b in d["bands"] if b["season"] == "winter"]
    for season in ("spy", "late"):
        d["bands"] += [{**b, "name": b["name"].replace("winter", season), "season": season} for b in winter]
    return dump_tariff(sign_tariff(Tariff.from_dict(d), demo_supplier_key()))


def _fed(tmp_path, tariff: bytes):
    h, card = _hub(tmp_path)
    with demo_tsm(card, "supplier") as t:
        t.push_tariff(BILLING_APP_AID, tariff)  # the shape limits hold
    client = BillingClient(card.transmit)
    client.select()
    client.pair("m-test", "Europe/Berlin", 15, bytes(16))
    for d in h.days:
        client.put_openings(d.batch.batch.day, d.first_index, d.openings)
    return h, card, client


def test_a_week_under_the_example_tariff_is_released_band_by_band(tmp_path):
    h, card, client = _fed(tmp_path, dump_tariff(sign_tariff(example_tariff(2027), demo_supplier_key())))
    st3 = client.banded_bill(START, START + timedelta(days=N_DAYS - 1), MALO, "VK-4711")
    assert sum(b.energy_wh for b in st3.bands) == sum(map(sum, h.readings))
    entries = [json.loads(r) for r in _log(card)[1]]
    assert [e["kind"] for e in entries] == ["policy", "bill"] and entries[1]["functionals"] == len(st3.bands) == 5


@pytest.mark.parametrize("tariff", [_spy_tariff, _spy_season], ids=["holiday", "one-day-season"])
def test_a_band_of_chosen_days_is_not_released(tmp_path, tariff):
    """Before the fix the holiday tariff released the energy of 17:00-17:30 of one chosen
    Wednesday as a band of its own (two readings), within the budget (8 of 16)."""
    h, card, client = _fed(tmp_path, tariff())
    before = _log(card)
    client.select()
    with pytest.raises(HubError, match="6A80"):
        client.banded_bill(START, START + timedelta(days=N_DAYS - 1), MALO, "VK-4711")
    assert _log(card) == before  # nothing released, nothing logged
    # The plain bill (one functional) is still answered under that tariff.
    client.select()
    client.bill(START, START + timedelta(days=N_DAYS - 1))
    assert [json.loads(r)["kind"] for r in _log(card)[1]] == ["policy", "bill"]


def test_re_asks_with_altered_requests_get_nothing_new(tmp_path):
    """One bill per period: the same request answers the same bytes; another contract id,
    another metering point, a plain bill or a new tariff for the period is refused (6985)."""
    h, card, client = _fed(tmp_path, dump_tariff(sign_tariff(example_tariff(2027), demo_supplier_key())))
    last = START + timedelta(days=N_DAYS - 1)
    st3 = client.banded_bill(START, last, MALO, "VK-4711")
    assert client.banded_bill(START, last, MALO, "VK-4711") == st3
    for ask in (lambda: client.banded_bill(START, last, MALO, "VK-4712"),
                lambda: client.banded_bill(START, last, "51238696723", "VK-4711"),
                lambda: client.bill(START, last)):
        with pytest.raises(HubError, match="6985"):
            ask()
    v2 = example_tariff(2027).to_dict()
    v2["version"] = 2
    v2["bands"][0]["price"] += 1
    with demo_tsm(card, "supplier") as t:  # the period's one tariff change
        t.push_tariff(BILLING_APP_AID, dump_tariff(sign_tariff(Tariff.from_dict(v2), demo_supplier_key())))
    client.select()
    with pytest.raises(HubError, match="6985"):  # the same period under the new tariff
        client.banded_bill(START, last, MALO, "VK-4711")
    with pytest.raises(HubError, match="6A80"):  # part of the period: not a whole cell
        client.banded_bill(START, last - timedelta(days=1), MALO, "VK-4711")
    entries = [json.loads(r) for r in _log(card)[1]]
    assert [e["kind"] for e in entries] == ["policy", "bill"]
