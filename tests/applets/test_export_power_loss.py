"""Power loss at every write of a consent, a consented export and a revocation (issue 11):
nothing exported without being logged, nothing logged without being exported, and a
consent or revocation is either in force and logged, or neither."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from helpers import SettlementHub as Hub
from helpers import make_history
from meterhub.card import PowerLoss
from meterhub.crypto import ecdsa
from meterhub.demo.hubs import demo_tsm, deploy_applet, open_demo_hub
from meterhub.hub.secure_element import (
    EXPORT_APP_AID,
    RECIPIENT_SDS,
    GuardClient,
    ReadingsClient,
    customer_key_path,
    demo_dap_key,
    demo_scp03_keys,
)
from meterhub.policy import verify_release_log
from meterhub.policy.consent import Consent, dump_consent, sign_consent, sign_revocation
from meterhub.utility.settlement import AppletMailbox, HubRefused
from meterhub.utility.tsm import TSM, dap_signer

THIRD = RECIPIENT_SDS["third-party"]
_SIDECARS = ("", ".sk", ".customer.pem")


def _open(path: Path):
    card = open_demo_hub(path)
    return card


def _copy(src: Path, dst: Path) -> None:
    for x in _SIDECARS:
        shutil.copyfile(f"{src}{x}", f"{dst}{x}")


def _log(card) -> tuple[int, list[bytes]]:
    g = GuardClient(card.transmit)
    g.select()
    count, head = g.head()
    raws = g.raw_entries()
    verify_release_log(raws, head)
    return count, raws


def _export(card, h):
    t = demo_tsm(card, "third-party")
    t.open()
    req = _request(h)
    return AppletMailbox(t, EXPORT_APP_AID).request(req, "export")


def _request(h) -> bytes:
    from meterhub.applets.export import export_request

    return export_request("advice-1", h.start, h.start + timedelta(days=1), 60)


def _consent(h) -> Consent:
    return Consent(consent_id="advice-1", recipient="third-party", purpose="energy advice", resolution_minutes=60,
                   period_from=h.start, period_to=h.start + timedelta(days=1), expires=h.start + timedelta(days=40))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Three closed cards: exporter installed and fed; + a consent; + one export."""
    d = tmp_path_factory.mktemp("bases")
    h = make_history(n_days=2, seed=71)
    hub = Hub(d / "none.sqlite", h)
    t = TSM(hub.card.transmit, demo_scp03_keys("third-party"), sd_aid=THIRD,
            dap=dap_signer(THIRD, demo_dap_key("third-party")))
    with t:
        deploy_applet(t, "export")
    rc = ReadingsClient(hub.card.transmit, EXPORT_APP_AID)
    rc.select()
    rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
    for day in h.days:
        rc.put_openings(day.batch.batch.day, day.first_index, day.openings)
    hub.card.close()
    key = ecdsa.load_signing_key(customer_key_path(d / "none.sqlite").read_bytes())
    _copy(d / "none.sqlite", d / "consent.sqlite")
    card = _open(d / "consent.sqlite")
    g = GuardClient(card.transmit)
    g.select()
    g.add_consent(dump_consent(sign_consent(_consent(h), key)))
    card.close()
    _copy(d / "consent.sqlite", d / "exported.sqlite")
    card = _open(d / "exported.sqlite")
    _export(card, h)
    card.close()
    return d, h, key


def _tear_each_write(tmp_path: Path, base: Path, op, check) -> set[int]:
    """Run ``op(card)`` on copies of ``base``, tearing at write 1, 2, ...; ``check`` the
    restarted card with the log growth (0 or 1). Returns the growths seen."""
    probe = tmp_path / "probe.sqlite"
    _copy(base, probe)
    card = _open(probe)
    c0, _ = _log(card)
    start = card.store.write_points
    op(card)
    points = card.store.write_points - start
    card.close()
    assert points >= 2
    seen = set()
    for n in range(1, points + 1):
        path = tmp_path / f"t{n}.sqlite"
        _copy(base, path)
        card = _open(path)
        count0, raws0 = _log(card)
        base_pt = card.store.write_points

        def tear(what, k, base_pt=base_pt, n=n):
            if k - base_pt == n:
                raise PowerLoss(what)

        card.store.fault_hook = tear
        with pytest.raises(PowerLoss):
            op(card)
        card = _open(path)
        count, raws = _log(card)
        assert count in (count0, count0 + 1), n
        assert raws[: len(raws0)] == raws0, n  # the chain only grows
        seen.add(count - count0)
        check(card, count - count0, raws)
        card.close()
    return seen


def test_power_loss_at_every_write_of_a_consent(bases, tmp_path):
    d, h, key = bases
    signed = dump_consent(sign_consent(_consent(h), key))

    def op(card):
        g = GuardClient(card.transmit)
        g.select()
        g.add_consent(signed)

    def check(card, grew, raws):
        if grew:  # logged: in force
            assert json.loads(raws[-1])["kind"] == "consent"
            assert _export(card, h)
        else:  # not logged: not in force, and it can be given again
            with pytest.raises(HubRefused) as e:
                _export(card, h)
            assert e.value.sw == 0x6982
            op(card)
            assert _log(card)[0] == len(raws) + 1

    assert _tear_each_write(tmp_path, d / "none.sqlite", op, check) == {0, 1}


def test_power_loss_at_every_write_of_an_export(bases, tmp_path):
    d, h, _ = bases

    def check(card, grew, raws):
        got = _export(card, h)  # the recipient asks again after the restart
        count2, raws2 = _log(card)
        assert count2 == len(raws) + (0 if grew else 1)  # exactly one export, logged
        entry = json.loads(raws2[-1])
        assert entry["kind"] == "export" and entry["output_digest"] == hashlib.sha256(got).hexdigest()

    assert _tear_each_write(tmp_path, d / "consent.sqlite", lambda card: _export(card, h), check) == {0, 1}


def test_power_loss_at_every_write_of_a_revocation(bases, tmp_path):
    d, h, key = bases
    revocation = sign_revocation("advice-1", key)

    def op(card):
        g = GuardClient(card.transmit)
        g.select()
        g.revoke_consent(revocation)

    def check(card, grew, raws):
        if grew:  # logged: in force at once
            assert json.loads(raws[-1])["kind"] == "revoke"
            with pytest.raises(HubRefused) as e:
                _export(card, h)
            assert e.value.sw == 0x6982
        else:  # not logged: the consent still holds (the re-ask answers the logged export)
            got = _export(card, h)
            assert _log(card)[0] == len(raws)
            assert json.loads(raws[-1])["output_digest"] == hashlib.sha256(got).hexdigest()

    assert _tear_each_write(tmp_path, d / "exported.sqlite", op, check) == {0, 1}
