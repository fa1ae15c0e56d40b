"""Phantom members (docs/fraud.md): a hostile grid operator lists member keys it holds
for all members of a group but one, and learns that household's hourly readings (it
removes its own masks and holds the self-mask shares sealed to its phantoms). Every hub
now accepts a registry block only if each member of its groups carries a certificate
over (meter id, hub key) from the member certifier the customer pinned (the demo card
issuer), not the grid operator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.hub.secure_element import demo_pinned
from meterhub.model.formats.aggregation import GroupMember, PolicyRefusal, demo_group_key
from meterhub.model.formats.membership import (
    MemberCertificate,
    certify_members,
    demo_member_certifier_key,
)
from meterhub.model.group_registry import RegistryBlock, RegistryView
from meterhub.utility.fraud import (
    GroupRegistry,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
    registry_head,
)
from meterhub.utility.settlement import HubRefused
from meterhub.utility.verifier import Rejected
from test_fraud_guard import DAY, _log, build, hub_key, mailbox

SIGNER = [ecdsa.public_bytes(demo_group_key())]
CERTIFIER = [ecdsa.public_bytes(demo_member_certifier_key())]


def _operator_key() -> bytes:
    """An X25519 key the grid operator holds (it can remove this member's masks itself)."""
    return x25519.X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """Two real hubs (the victim ``v0`` and a neighbour ``n0``), each certified by the card
    issuer that reads its aggregation key; the issuer's directory answers only those."""
    base = tmp_path_factory.mktemp("phantom")
    cards, keys = {}, {}
    for k, mid in enumerate(("v0", "n0")):
        h = make_history(start=DAY, n_days=2, seed=300 + k, meter_id=mid)
        cards[mid] = build(base / f"{mid}.sqlite", h)
        keys[mid] = hub_key(mailbox(cards[mid]))
    issued = {(c.meter_id, c.hub_key): c for c in certify_members(
        demo_member_certifier_key(), [GroupMember(mid, key) for mid, key in keys.items()])}
    yield cards, keys, (lambda mid, key: issued.get((mid, bytes(key))))
    for card in cards.values():
        card.close()


def test_phantom_members_are_refused_by_the_victims_hub(street) -> None:
    """The attack of the residual risk: the victim and four members whose keys the grid
    operator holds (invented ids, and a real neighbour's id under the operator's key).
    The operator's block carries every certificate the issuer gave it; the victim's hub
    refuses the block (``6982``), so it never holds the group and never releases."""
    cards, keys, directory = street
    victim = cards["v0"]
    held = registry_head(mailbox(victim))
    members = {"v0": keys["v0"], "n0": _operator_key()} | {f"x{k}": _operator_key() for k in range(3)}
    sybil = make_group("sybil", "f", members, DAY, DAY + timedelta(days=1), demo_grid_key())
    operator = GroupRegistry("f", demo_grid_key(), directory=directory)
    block = operator.next_block([sybil])
    assert {c.meter_id for c in block.certificates} == {"v0"}  # n0's certificate binds its real key
    with pytest.raises(HubRefused) as ei:
        push_registry(mailbox(victim), [block])
    assert ei.value.sw == 0x6982
    # with n0's real certificate added to the block it is still refused: it binds another key
    n0_cert = directory("n0", keys["n0"])
    forged_in = RegistryBlock("f", 0, bytes(32), (sybil,), certificates=(*block.certificates, n0_cert)
                              ).signed(demo_grid_key())
    with pytest.raises(HubRefused) as ei:
        push_registry(mailbox(victim), [forged_in])
    assert ei.value.sw == 0x6982
    with pytest.raises(HubRefused) as ei:  # so the group is not in the hub's registry
        push_group(mailbox(victim), sybil)
    assert ei.value.sw == 0x6985
    assert registry_head(mailbox(victim)) == held
    assert [e for e in _log(victim) if e.kind in ("aggregate", "recovery")] == []
    # the operator's own tool, told the certifier's key, refuses to publish it too
    checked = GroupRegistry("f", demo_grid_key(), directory=directory, certifier=demo_member_certifier_key().public_key())
    with pytest.raises(Rejected, match="phantom"):
        checked.publish([sybil])


def test_the_reasons_name_the_phantom(street) -> None:
    """The check at block acceptance, one reason per case (the guard answers ``6982``)."""
    _, keys, directory = street
    phantoms = {f"x{k}": _operator_key() for k in range(4)}
    g = make_group("sybil", "f", {"v0": keys["v0"]} | phantoms, DAY, DAY, demo_group_key())
    view = RegistryView()

    def check(*certs: MemberCertificate):
        block = RegistryBlock("f", 0, bytes(32), (g,), certificates=certs).signed(demo_group_key())
        view.check_extension(block, SIGNER, lambda d: False, certifier_keys=CERTIFIER)

    honest = directory("v0", keys["v0"])
    with pytest.raises(PermissionError, match="member x0 of group sybil has no certificate"):
        check(honest)
    # a certificate for another meter id, with the phantom's key: x0 still has none
    other_id = MemberCertificate("n0", phantoms["x0"]).signed(demo_member_certifier_key())
    with pytest.raises(PermissionError, match="member x0 of group sybil has no certificate"):
        check(honest, other_id)
    # a certificate for x0's id but another key
    other_key = MemberCertificate("x0", keys["n0"]).signed(demo_member_certifier_key())
    with pytest.raises(PermissionError, match="member x0 of group sybil is listed with a hub key its certificate"):
        check(honest, other_key)
    # certificates the grid operator made itself (a forged certifier signature)
    forged = [MemberCertificate(mid, key).signed(demo_group_key()) for mid, key in phantoms.items()]
    with pytest.raises(PermissionError, match="certificate of meter x0 does not verify"):
        check(honest, *forged)
    # a genuine signature moved onto another binding does not verify either
    moved = MemberCertificate("x0", phantoms["x0"], honest.signature)
    with pytest.raises(PermissionError, match="certificate of meter x0 does not verify"):
        check(honest, moved)
    # the victim's own membership needs a certificate as well
    with pytest.raises(PermissionError, match="member v0 of group sybil has no certificate"):
        check(*[MemberCertificate(mid, key).signed(demo_member_certifier_key()) for mid, key in phantoms.items()])
    # a colluding certifier (the stated trust assumption) certifies the phantoms: accepted
    check(honest, *[MemberCertificate(mid, key).signed(demo_member_certifier_key()) for mid, key in phantoms.items()])
    # no certifier pinned: every block is refused, not accepted unchecked
    block = RegistryBlock("f", 0, bytes(32), (g,), certificates=(honest,)).signed(demo_group_key())
    with pytest.raises(PolicyRefusal, match="no member certifier pinned"):
        view.check_extension(block, SIGNER, lambda d: False, certifier_keys=[])


def test_the_certifier_is_pinned_for_the_grid_operator() -> None:
    assert demo_pinned().roles()["member-cert/grid-operator"] == tuple(CERTIFIER)
    assert CERTIFIER[0] not in demo_pinned().roles()["group/grid-operator"]  # not the grid operator
