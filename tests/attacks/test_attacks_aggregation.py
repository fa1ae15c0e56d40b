"""A hostile grid operator against the aggregation rules (docs/fraud.md): recovery claims,
groups that differ by fewer than the minimum, and a chain of groups that no single hub's
own groups reveal, refused over the whole group registry (meterhub.model.group_registry)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.model.formats.aggregation import (
    AggregationRequest,
    GroupDefinition,
    GroupMember,
    PolicyRefusal,
    RecoveryRequest,
    demo_group_key,
)
from meterhub.model.formats.membership import demo_directory
from meterhub.model.group_registry import RegistryBlock, RegistryView, isolated_households
from meterhub.utility.fraud import (
    GroupRegistry,
    demo_grid_key,
    make_group,
    push_group,
    push_registry,
)
from meterhub.utility.settlement import HubRefused
from meterhub.utility.verifier import Rejected
from test_fraud_guard import DAY, _log, build, hub_key, hubs, mailbox  # noqa: F401 - the fixture


def _group(hubs, gid: str, ids):  # noqa: F811
    return make_group(gid, "f", {i: hubs[i][2] for i in ids}, DAY, DAY + timedelta(days=1), demo_grid_key())


def test_recovery_claims_that_would_unmask_are_refused(hubs):  # noqa: F811
    ids = sorted(hubs)[:6]
    g = hubs.publish(_group(hubs, "claims", ids))
    card = hubs[ids[0]][0]
    push_group(mailbox(card), g)
    mailbox(card).send(b"\x10" + AggregationRequest("claims", DAY).to_bytes(), "release")
    before = len(_log(card))
    for missing in ((ids[4], ids[5]),  # 4 would remain: their sum minus the asker's masks
                    (ids[0],),  # its own masks
                    ("g-nobody",)):  # not a member
        with pytest.raises(HubRefused) as e:
            mailbox(card).send(b"\x11" + RecoveryRequest("claims", DAY, missing).to_bytes(), "recover")
        assert e.value.sw == 0x6985, missing
    assert len(_log(card)) == before  # nothing released, nothing logged


def test_groups_differing_by_fewer_than_five_are_refused_at_every_member(hubs):  # noqa: F811
    ids = sorted(hubs)
    base = hubs.publish(_group(hubs, "claims", ids[:6]))  # (published by the test above if it ran)
    card = hubs[ids[1]][0]
    push_group(mailbox(card), base)
    before = len(_log(card))
    for gid, members in (("plus1", ids[:7]),  # {ids[6]} alone is the difference
                         ("swap", [*ids[1:6], ids[6]])):  # differs by {ids[0], ids[6]}
        g = _group(hubs, gid, members)
        for who in members:  # every member refuses the registry block, and so the group
            mb = mailbox(hubs[who][0])
            with pytest.raises(HubRefused) as e:
                mb.send(b"\x03" + hubs.registry.next_block([g]).to_bytes(), "registry")
            assert e.value.sw == 0x6985, (gid, who)
            with pytest.raises(HubRefused) as e:
                push_group(mailbox(hubs[who][0]), g)
            assert e.value.sw == 0x6985, (gid, who)
        with pytest.raises(Rejected, match="isolate household|differ by"):  # the honest operator's own tool
            hubs.registry.publish([g])
    assert len(_log(card)) == before


# -- the chain of groups (formerly tests/leaks/leak_aggregate_chain.py) ------------------------

V, A, P, Q_ = ["v"], [f"a{i}" for i in range(4)], [f"p{i}" for i in range(5)], [f"q{i}" for i in range(5)]
WHOLE_YEAR = (date(2027, 1, 1), date(2027, 12, 31))


def _fake(gid: str, names, keys=None, valid=WHOLE_YEAR) -> GroupDefinition:
    keys = keys or {}
    members = tuple(GroupMember(n, keys.get(n, n.encode().ljust(32, b"\0"))) for n in sorted(names))
    return GroupDefinition(gid, "feeder-1", 60, valid[0], valid[1], members).signed(demo_group_key())


def _chain(keys=None, valid=WHOLE_YEAR) -> list[GroupDefinition]:
    return [_fake("G1", V + A, keys, valid), _fake("G2", A + P, keys, valid), _fake("G3", P + Q_, keys, valid),
            _fake("G4", Q_, keys, valid)]


def test_the_chain_isolates_v_and_no_hubs_own_groups_show_it() -> None:
    groups = _chain()
    # G1 - G2 + G3 - G4 = v: exact, over the rationals
    assert isolated_households(g.meter_ids for g in groups) == ["v"]
    for k in range(1, 4):  # fewer than four of them isolate no one
        for sub in itertools.combinations(groups, k):
            assert isolated_households(g.meter_ids for g in sub) == []
    # each hub's own groups pass its pairwise rule (what the guard alone checked before)
    for n in V + A + P + Q_:
        own = [g for g in groups if n in g.meter_ids]
        assert all(len(x.meter_ids ^ y.meter_ids) >= 5 for x, y in itertools.combinations(own, 2))


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_the_chain_is_refused_in_any_order_of_publication(order) -> None:
    """Whatever the order of publication, a block is refused before the registry holds
    all four groups: the one that completes the chain (v isolated) or, earlier, the one
    that completes ``G2 - G3 + G4 = {a1..a4}``, a sum of four households."""
    groups = _chain()
    signer = [ecdsa.public_bytes(demo_group_key())]
    view = RegistryView()
    refused = None
    for i in order:
        block = RegistryBlock("feeder-1", view.version + 1, view.head, (groups[i],)).signed(demo_group_key())
        try:
            view.check_extension(block, signer, lambda d: False)
        except PolicyRefusal as exc:
            refused = str(exc)
            break
        view = view.extended(block)
    assert refused is not None and len(view.groups) < 4
    assert "isolate household v" in refused or "combination of 4 households (a0, a1, a2, a3)" in refused
    assert isolated_households(g.meter_ids for g in view.groups.values()) == []
    # all four in one block: refused as well, naming v
    with pytest.raises(PolicyRefusal, match="isolate household v"):
        RegistryView().check_extension(
            RegistryBlock("feeder-1", 0, bytes(32), tuple(groups)).signed(demo_group_key()), signer, lambda d: False)


def test_the_chain_across_days_is_refused_too() -> None:
    """Groups on different days cannot be subtracted exactly, but a household's days are
    alike: the registry check takes all intervals together, as the pairwise rule does."""
    days = [(DAY + timedelta(days=k), DAY + timedelta(days=k)) for k in range(4)]
    groups = [_fake(g.group_id, g.meter_ids, valid=d) for g, d in zip(_chain(), days, strict=True)]
    reg = GroupRegistry("feeder-1", demo_group_key(), directory=demo_directory)
    reg.publish(groups[:3])
    with pytest.raises(Rejected, match="isolate household v"):
        reg.publish(groups[3:])
    # (G1, G2 and G3 were fine: what the victim's hub released was checked against them)


def test_the_chain_is_refused_by_the_victims_hub(tmp_path) -> None:
    """On the card: the victim's hub and a q hub hold the registry with G1..G3 and
    release; the block with G4 is refused (6985), so G4 never gets into their registry
    and no q hub admits it."""
    cards = {}
    for name in ("v", "q0"):
        h = make_history(start=DAY, n_days=1, seed=ord(name[0]), meter_id=name)
        card = build(tmp_path / f"{name}.sqlite", h)
        cards[name] = (card, hub_key(mailbox(card)))
    keys = {n: k for n, (_, k) in cards.items()}
    groups = _chain(keys, (DAY, DAY + timedelta(days=30)))
    reg = GroupRegistry("feeder-1", demo_group_key(), directory=demo_directory)
    reg.publish(groups[:3])
    for card, _ in cards.values():
        push_registry(mailbox(card), reg)
        with pytest.raises(HubRefused) as e:
            mailbox(card).send(b"\x03" + reg.next_block(groups[3:]).to_bytes(), "G4")
        assert e.value.sw == 0x6985
    push_group(mailbox(cards["v"][0]), groups[0])  # G1 is fine on its own
    mailbox(cards["v"][0]).send(b"\x10" + AggregationRequest("G1", DAY).to_bytes(), "release")
    with pytest.raises(HubRefused) as e:  # G4 is not in the registry the q hub holds
        push_group(mailbox(cards["q0"][0]), groups[3])
    assert e.value.sw == 0x6985
    for card, _ in cards.values():
        card.close()
