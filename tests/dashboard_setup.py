"""Shared by the dashboard tests: one small demo data directory per test session (built
once, copied per test that changes it), the export applet on a demo household's card,
and an export request through the third party's security domain."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

from meterhub.applets.export import export_request
from meterhub.card.gp import open_card
from meterhub.hub.secure_element import (
    EXPORT_APP_AID,
    RECIPIENT_SDS,
    ReadingsClient,
    demo_dap_key,
    demo_scp03_keys,
    export_load_file,
)
from meterhub.hub.store import HubStore
from meterhub.utility.settlement import AppletMailbox
from meterhub.utility.tsm import TSM, dap_signer

THIRD = RECIPIENT_SDS["third-party"]
METER = "hh-0000"
START = date(2027, 3, 15)
INTERVAL = 60  # hourly readings: a quarter of the demo's work
DAYS = 20  # the demo's DR section needs >= 20 days, fraud >= 5 customers on a feeder
_BUILT: dict[str, Path] = {}


def demo_dir(factory) -> Path:  # type: ignore[no-untyped-def]
    """The session's demo data directory (5 households, 20 days), built on first use."""
    if "dir" not in _BUILT:
        import os

        from meterhub.demo.system import DemoParams, run_demo

        d = factory.mktemp("dashdemo")
        prebuilt = os.environ.get("METERHUB_DASHBOARD_DEMO")  # a directory this function built before
        if prebuilt:
            _BUILT["dir"] = copy_of(Path(prebuilt), d / "data")
            return _BUILT["dir"]
        params = DemoParams(households=5, days=DAYS, start=START, data_dir=d, thieves=1, interval_minutes=INTERVAL)
        run_demo(params)
        from meterhub.demo import dr as dr_demo
        from meterhub.demo import fraud as fraud_demo
        from meterhub.demo import settlement as settlement_demo

        settlement_demo.run(params)
        fraud_demo.run(params, thieves=1)
        dr_demo.run(params)
        _BUILT["dir"] = d
    return _BUILT["dir"]


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("meterhub.lock"))
    return dst


def _tsm(card) -> TSM:  # type: ignore[no-untyped-def]
    return TSM(card.transmit, demo_scp03_keys("third-party"), sd_aid=THIRD, dap=dap_signer(THIRD, demo_dap_key("third-party")))


def install_export(data_dir: Path, meter_id: str = METER) -> None:
    """The third party's export applet on the household's card, fed with its openings."""
    from meterhub.hub.secure_element import VaultClient

    hub = HubStore(data_dir / "hub.sqlite")
    card = open_card(str(data_dir / "hubs" / f"{meter_id}.sqlite"))
    try:
        card.power_on()
        hub.attach(meter_id, VaultClient(card.transmit))  # the card opens the sealed records
        _, tz, interval = hub.meter(meter_id)
        with _tsm(card) as t:
            t.deploy(export_load_file(), EXPORT_APP_AID)
        rc = ReadingsClient(card.transmit, EXPORT_APP_AID)
        rc.select()
        rc.pair(meter_id, tz, interval)
        for k in range(DAYS):
            day = START + timedelta(days=k)
            first, openings = hub.openings(meter_id, day, day)
            rc.put_openings(day, first, openings)
    finally:
        card.close()
        hub.close()


def export(data_dir: Path, consent_id: str, first: date, last: date, meter_id: str = METER, resolution: int = 60) -> bytes:
    """Ask the export applet for a consented period (raises HubRefused when refused)."""
    card = open_card(str(data_dir / "hubs" / f"{meter_id}.sqlite"))
    try:
        card.power_on()
        t = _tsm(card)
        t.open()
        return AppletMailbox(t, EXPORT_APP_AID).request(export_request(consent_id, first, last, resolution), "export")
    finally:
        card.close()
