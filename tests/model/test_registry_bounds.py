"""The registry's bounds (red team round 4, issue 13; availability): a hub's registry of one
recipient holds at most ``MAX_REGISTRY_MEMBERS`` distinct members and
``MAX_REGISTRY_GROUPS`` groups, refused (``6A84``) before the certificates and the span
test are looked at (docs/fraud.md, "Registry bounds").

Formerly ``tests/leaks/leak_registry_work_unbounded.py``: one block of 256 overlapping
groups of 30-60 members drawn from 1,000 certified meters of the service area passed every
rule and cost the card more than a minute of CPU (68 s in the red team's run).
"""

from __future__ import annotations

import os
import random
import time
from datetime import date, timedelta

import pytest

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.model.formats.aggregation import GroupDefinition, GroupMember
from meterhub.model.formats.membership import demo_certificates, demo_member_certifier_key
from meterhub.model.group_registry import (
    MAX_REGISTRY_GROUPS,
    MAX_REGISTRY_MEMBERS,
    RegistryBlock,
    RegistryFull,
    RegistryView,
)
from meterhub.utility.fraud import demo_grid_key
from meterhub.utility.settlement import HubRefused

DAY = date(2027, 3, 27)
GRID = [ecdsa.public_bytes(demo_grid_key())]
CERTIFIER = [ecdsa.public_bytes(demo_member_certifier_key())]


def _group(gid: str, ids, keys, first=DAY, last=DAY) -> GroupDefinition:
    return GroupDefinition(gid, "f", 60, first, last, tuple(GroupMember(i, keys[i]) for i in sorted(ids))
                           ).signed(demo_grid_key())


def _block(view: RegistryView, groups) -> RegistryBlock:
    return RegistryBlock("f", view.version + 1, view.head, tuple(groups),
                         certificates=tuple(demo_certificates(groups))).signed(demo_grid_key())


def test_the_red_teams_block_is_refused_at_once() -> None:
    rng = random.Random(1)
    keys = {f"m{k:04d}": os.urandom(32) for k in range(1000)}
    groups = [_group(f"g{k}", rng.sample(sorted(keys), rng.randint(30, 60)), keys) for k in range(256)]
    block = _block(RegistryView(), groups)
    t0 = time.process_time()
    with pytest.raises(RegistryFull, match=f"distinct members, at most {MAX_REGISTRY_MEMBERS}"):
        RegistryView().check_extension(block, GRID, (), certifier_keys=CERTIFIER)
    assert time.process_time() - t0 < 5  # the group signatures only; the span test is never reached


def test_a_registry_up_to_the_member_bound_is_admitted_and_one_more_member_is_not() -> None:
    keys = {f"m{k:04d}": os.urandom(32) for k in range(MAX_REGISTRY_MEMBERS + 8)}
    ids = sorted(keys)
    # disjoint groups of eight (no household in their span), exactly at the bound
    groups = [_group(f"g{k}", ids[8 * k : 8 * k + 8], keys) for k in range(MAX_REGISTRY_MEMBERS // 8)]
    view = RegistryView()
    block = _block(view, groups)
    view.check_extension(block, GRID, (), certifier_keys=CERTIFIER)
    view = view.extended(block)
    assert len({m for g in view.groups.values() for m in g.meter_ids}) == MAX_REGISTRY_MEMBERS
    # a group of known members is still admitted; one with new members is not
    again = _block(view, [_group("again", ids[:8], keys, DAY + timedelta(days=1), DAY + timedelta(days=1))])
    view.check_extension(again, GRID, (), certifier_keys=CERTIFIER)
    more = _block(view, [_group("more", ids[-8:], keys)])
    with pytest.raises(RegistryFull, match=f"{MAX_REGISTRY_MEMBERS + 8} distinct members"):
        view.check_extension(more, GRID, (), certifier_keys=CERTIFIER)


def test_the_group_bound() -> None:
    keys = {f"m{k}": os.urandom(32) for k in range(5)}
    one = _group("g0", keys, keys)
    full = RegistryView("f", 0, bytes(32), {f"g{k}": one for k in range(MAX_REGISTRY_GROUPS)})
    with pytest.raises(RegistryFull, match=f"{MAX_REGISTRY_GROUPS + 1} groups, at most {MAX_REGISTRY_GROUPS}"):
        full.check_extension(_block(full, [_group("extra", keys, keys)]), GRID, (), certifier_keys=CERTIFIER)


def test_the_card_refuses_a_registry_beyond_the_bound_with_6a84(tmp_path) -> None:
    from meterhub.utility.fraud import push_registry
    from test_fraud_aggregation import Hub

    hub = Hub(tmp_path / "h.sqlite", make_history(start=DAY, n_days=1, seed=5, meter_id="m0000"))
    try:
        keys = {f"m{k:04d}": os.urandom(32) for k in range(1, MAX_REGISTRY_MEMBERS + 6)}
        keys["m0000"] = hub.key
        ids = sorted(keys)
        groups = [_group(f"g{k}", ids[k * 43 : k * 43 + 43], keys) for k in range(6)]  # 258 members
        with pytest.raises(HubRefused) as ei:
            push_registry(hub.mailbox(), [_block(RegistryView(), groups)])
        assert ei.value.sw == 0x6A84 and "group registry is full" in str(ei.value)
    finally:
        hub.card.close()
