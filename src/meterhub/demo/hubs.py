"""The demo's hub cards: one factory for the provisioned hub the demo, the benchmarks and
the tests build (docs/architecture.md, "Tests").

A demo hub is :func:`meterhub.hub.secure_element.open_hub_card` under the publicly known
demo keys: the issuer's SCP03 keys, and for each data recipient its own SCP03 keys and DAP
key (``demo_scp03_keys(party)``, ``demo_dap_key(party)``). Each recipient reaches its
security domain through its own TSM session (:func:`demo_tsm`) and installs its applets
there (:func:`install_applet`, from the one table :data:`DEMO_APPLETS`), as GPC 2.3.1 §9.3
(delegated management with DAP verification) describes and :mod:`meterhub.utility.tsm`
implements. The keys are demo keys: never provision a real hub with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..card import Card
from ..crypto import ecdsa
from ..hub.aggregation import aggregation_load_file
from ..hub.dr_host import dr_load_file
from ..hub.secure_element import (
    RECIPIENT_SDS,
    SUPPLIER_SD_AID,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    demo_vtn_key,
    export_load_file,
    open_hub_card,
    profiling_load_file,
    settlement_load_file,
)
from ..model.aids import (
    AGGREGATION_APP_AID,
    BILLING_APP_AID,
    DR_APP_AID,
    EXPORT_APP_AID,
    PROFILING_APP_AID,
    SETTLEMENT_APP_AID,
)
from ..tariffs import demo_supplier_key
from ..tariffs.price_index import demo_index_publisher_key
from ..tariffs.profiles import demo_profile_key
from ..utility.fraud import demo_grid_key
from ..utility.tsm import TSM, dap_signer

__all__ = ["DEMO_APPLETS", "DemoApplet", "demo_tsm", "deploy_applet", "install_applet", "open_demo_hub", "provision_demo_hub"]


def _public(key: Callable[[], ecdsa.SigningKey]) -> Callable[[], bytes]:
    return lambda: ecdsa.public_bytes(key())


@dataclass(frozen=True)
class DemoApplet:
    """How the demo installs one applet: by whom (``"supplier"``: the customer's supplier,
    else a recipient of :data:`RECIPIENT_SDS`), from which package, under which AID, and
    with which install parameters (the public key the applet trusts for its inputs)."""

    party: str
    load_file: Callable[[], bytes]
    app_aid: str
    params: Callable[[], bytes] | None


#: The demo's applets, each with its installing party and its install parameters.
DEMO_APPLETS: dict[str, DemoApplet] = {
    # the supplier's tariff signer: the tariffs the billing applet accepts
    "billing": DemoApplet("supplier", billing_load_file, BILLING_APP_AID, _public(demo_supplier_key)),
    # the price-index publisher: the index the settlement applet prices with
    "settlement": DemoApplet("supplier", settlement_load_file, SETTLEMENT_APP_AID, _public(demo_index_publisher_key)),
    # the reference-profile publisher: the profiles the profiling applet scores against
    "profiling": DemoApplet("grid-operator", profiling_load_file, PROFILING_APP_AID, _public(demo_profile_key)),
    # the grid operator's group key: the aggregation groups it signs
    "aggregation": DemoApplet("grid-operator", aggregation_load_file, AGGREGATION_APP_AID, _public(demo_grid_key)),
    # the VTN's event key (the customer also pins it: demo_pinned)
    "dr": DemoApplet("grid-operator", dr_load_file, DR_APP_AID, _public(demo_vtn_key)),
    # consented export: no parameters, the consent names the recipient
    "export": DemoApplet("supplier", export_load_file, EXPORT_APP_AID, None),
}


def open_demo_hub(path: str | Path, *, supplier: str = "supplier", **kwargs: Any) -> Card:
    """Open (provisioning on first use) a hub card under the demo keys: the issuer's, and
    ``supplier``'s in the supplier security domain (each demo supplier, "supplier-a"...,
    has its own). ``kwargs`` go to :func:`open_hub_card` (``policy``, ``customer_key``,
    ``pinned``, ``other_recipients``)."""
    return open_hub_card(
        path,
        issuer_keys=demo_scp03_keys("issuer"),
        supplier_keys=demo_scp03_keys(supplier),
        supplier_dap=demo_dap_key(supplier).public_key(),
        **kwargs,
    )


def demo_tsm(card: Any, party: str, *, sd_aid: str | None = None) -> TSM:
    """A TSM session (not yet opened) of ``party`` with its demo keys: a supplier name
    ("supplier", "supplier-a", ...) reaches the supplier security domain, "grid-operator"
    and "third-party" reach theirs; ``sd_aid`` names another domain (a test's wrong one)."""
    sd = sd_aid or (SUPPLIER_SD_AID if party.startswith("supplier") else RECIPIENT_SDS[party])
    return TSM(card.transmit, demo_scp03_keys(party), sd_aid=sd, dap=dap_signer(sd, demo_dap_key(party)))


_DEFAULT: Any = object()


def deploy_applet(tsm: TSM, name: str, *, params: bytes = _DEFAULT) -> None:
    """Deploy the demo applet ``name`` (a key of :data:`DEMO_APPLETS`) in an open TSM
    session: load the DAP-signed package, install and make selectable (GPC 2.3.1 §11.5).
    ``params`` overrides the install parameters (``b""``: none)."""
    a = DEMO_APPLETS[name]
    p = (a.params() if a.params else b"") if params is _DEFAULT else params
    tsm.deploy(a.load_file(), a.app_aid, params=p)


def install_applet(card: Any, name: str, *, supplier: str = "supplier", params: bytes = _DEFAULT) -> None:
    """Install the demo applet ``name`` in one TSM session of its party (:func:`deploy_applet`)."""
    party = supplier if DEMO_APPLETS[name].party == "supplier" else DEMO_APPLETS[name].party
    with demo_tsm(card, party) as t:
        deploy_applet(t, name, params=params)


def provision_demo_hub(
    path: str | Path, applets: Iterable[str] = (), *, supplier: str = "supplier", **kwargs: Any
) -> Card:
    """A demo hub card (:func:`open_demo_hub`) with the applets ``applets`` installed, each
    by its party (:func:`install_applet`)."""
    card = open_demo_hub(path, supplier=supplier, **kwargs)
    for name in applets:
        install_applet(card, name, supplier=supplier)
    return card


def series_hub(
    path: str | Path, index: Any, profiles: Iterable[Any], meter_id: str, tz: str, interval_minutes: int = 15
) -> Card:
    """A demo hub card with the supplier's settlement applet fed the signed price index
    ``index`` and the grid operator's profiling applet fed the signed load ``profiles``
    (each pushed in its party's TSM session), both paired with ``meter_id``: the hub the
    settlement, forecasting and timing benchmarks release from."""
    from ..hub.secure_element import PROFILING_APP_AID, SETTLEMENT_APP_AID, ReadingsClient
    from ..utility.settlement import AppletMailbox

    card = open_demo_hub(path)
    with demo_tsm(card, "supplier") as t:
        deploy_applet(t, "settlement")
        AppletMailbox(t, SETTLEMENT_APP_AID).push_series(index)
    with demo_tsm(card, "grid-operator") as t:
        deploy_applet(t, "profiling")
        mb = AppletMailbox(t, PROFILING_APP_AID)
        for p in profiles:
            mb.push_series(p)
    for aid in (SETTLEMENT_APP_AID, PROFILING_APP_AID):
        rc = ReadingsClient(card.transmit, aid)
        rc.select()
        rc.pair(meter_id, tz, interval_minutes)
    return card
