"""OPEN FINDING (red team round 4, issue 13; availability, no privacy loss; not collected:
run it on its own with ``pytest tests/leaks/leak_registry_work_unbounded.py``, about two
minutes; it fails while the hole is open).

A hub checks each registry block over the whole registry (the exact span test: a
fraction-free Gauss-Jordan elimination over every group of every block, then the
two-row search), and the registry has no bound but the block's: 256 groups and 4,096
member certificates. Certificates bind a meter id to a hub key but not to a feeder, so
a hostile grid operator can fill a block with 256 overlapping groups of 30-60 members
drawn from 1,000 certified meters of its whole service area. The block passes every
rule (no small vector in the span) and costs the card more than a minute; every later
block re-checks all groups, so the cost grows with each. The card is single-threaded:
meanwhile it serves no other applet (billing, settlement). Recommended fix: bound the
registry (distinct members, e.g. 256, well above a feeder's 60 plus reconfigurations,
and groups), and bind certificates to a feeder.
"""

from __future__ import annotations

import os
import random
import time
from datetime import date

from meterhub.crypto import ecdsa
from meterhub.model.formats.aggregation import GroupDefinition, GroupMember
from meterhub.model.formats.membership import demo_certificates, demo_member_certifier_key
from meterhub.model.group_registry import RegistryBlock, RegistryView
from meterhub.utility.fraud import demo_grid_key

DAY = date(2027, 3, 27)


def test_one_hostile_block_costs_the_card_more_than_a_minute() -> None:
    rng = random.Random(1)
    keys = {f"m{k:04d}": os.urandom(32) for k in range(1000)}
    groups = []
    for k in range(256):
        ids = sorted(rng.sample(sorted(keys), rng.randint(30, 60)))
        groups.append(GroupDefinition(f"g{k}", "f", 60, DAY, DAY, tuple(GroupMember(i, keys[i]) for i in ids)
                                      ).signed(demo_grid_key()))
    block = RegistryBlock("f", 0, bytes(32), tuple(groups), certificates=tuple(demo_certificates(groups))
                          ).signed(demo_grid_key())
    t0 = time.process_time()
    RegistryView().check_extension(block, [ecdsa.public_bytes(demo_grid_key())], (),
                                   certifier_keys=[ecdsa.public_bytes(demo_member_certifier_key())])
    spent = time.process_time() - t0  # accepted: the block passes every rule
    assert spent < 10, f"one registry block cost the card {spent:.0f} s of CPU"
