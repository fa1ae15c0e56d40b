"""The hub's rules for aggregation groups (issue 13; docs/fraud.md): :class:`GroupPolicy`,
which the card's privacy guard applies to the groups and recovery requests of
:mod:`meterhub.model.formats.aggregation`, and the demo grid operator's group key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...crypto import ecdsa
from ...errors import MeterhubError
from ..demo_keys import GRID_OPERATOR_GROUP, demo_signing_key

if TYPE_CHECKING:
    from .aggregation import GroupDefinition


MIN_GROUP_SIZE = 5
FIXED_INTERVAL_MINUTES = 60


class PolicyRefusal(MeterhubError):
    """A group or request the hub's policy refuses; the message says which rule."""


@dataclass(frozen=True)
class GroupPolicy:
    """The hub's rules for aggregation groups (issue 13), enforced by the card's privacy
    guard (:mod:`meterhub.card.guard`) over all groups of one recipient, whichever of its
    aggregation applets admitted them:

    1. the group definition is signed by the recipient's group-signing key that the
       customer pinned at provisioning (``group/<recipient>``);
    2. the hub's meter is a member, listed with the asking applet's own key;
    3. at least ``min_size`` members;
    4. the fixed interval (``interval_minutes``, hourly by default);
    5. no two groups of this hub differ by fewer than ``min_size`` members (symmetric
       difference), which would isolate a household by subtraction; equal member
       sets are allowed (they reveal nothing new), a reused group id with other
       content is not;
    6. a recovery (the unmasking round) leaves at least ``min_size`` members present,
       names only other members, each once (missing or present, never both), and
       happens at most once per group and day; the guard also keeps, per group-day,
       which kind it answered for each member and refuses the other kind, and answers
       one naming members missing only for a present set that
       :func:`meterhub.model.group_registry.recovery_problems` admits over the day's groups
       in its registry and the present sets it answered that day.

    Pure checks with no state of their own; the guard holds the groups.
    """

    min_size: int = MIN_GROUP_SIZE
    interval_minutes: int = FIXED_INTERVAL_MINUTES

    def admit(self, group: GroupDefinition, signer_keys: Sequence[bytes], meter_id: str, own_key: bytes,
              known: Sequence[GroupDefinition]) -> None:
        """Raise :class:`PermissionError` (signature) or :class:`PolicyRefusal`."""
        keys = []
        for k in signer_keys:
            try:
                keys.append(ecdsa.load_verifying_key(k))
            except ValueError:
                continue
        if not keys:
            raise PolicyRefusal("no group-signing key pinned for this recipient")
        if not any(group.verify(k) for k in keys):
            raise PermissionError("group definition is not signed by the pinned group-signing key")
        me = group.member(meter_id)
        if me is None:
            raise PolicyRefusal(f"meter {meter_id} is not a member of group {group.group_id}")
        if me.hub_key != own_key:
            raise PolicyRefusal("the group lists another key for this hub")
        if len(group.members) < self.min_size:
            raise PolicyRefusal(f"group of {len(group.members)} is below the minimum of {self.min_size}")
        if group.interval_minutes != self.interval_minutes:
            raise PolicyRefusal(f"groups aggregate fixed {self.interval_minutes}-minute intervals")
        ids = group.meter_ids
        for other in known:
            if other.group_id == group.group_id:
                if other.body() != group.body():
                    raise PolicyRefusal(f"group id {group.group_id} is taken by another definition")
                continue
            diff = len(ids ^ other.meter_ids)
            if 0 < diff < self.min_size:
                raise PolicyRefusal(
                    f"group {group.group_id} differs from group {other.group_id} by {diff} "
                    f"member(s), fewer than {self.min_size}"
                )

    def check_recovery(self, group: GroupDefinition, meter_id: str, missing: tuple[str, ...],
                       present: tuple[str, ...] = ()) -> None:
        if meter_id in missing or meter_id in present:
            raise PolicyRefusal("a hub cannot recover its own masks")
        unknown = [m for m in (*missing, *present) if group.member(m) is None]
        if unknown:
            raise PolicyRefusal(f"{unknown[0]} is not a member of group {group.group_id}")
        named = (*missing, *present)
        if len(set(named)) != len(named):
            raise PolicyRefusal("a member is named twice")
        remain = len(group.members) - len(missing)
        if remain < self.min_size:
            raise PolicyRefusal(f"{remain} members would remain, fewer than {self.min_size}")


def demo_group_key() -> ecdsa.SigningKey:
    """A PUBLICLY KNOWN P-256 key with which the demo grid operator signs group
    definitions and its own suspect profiles (derived from a public string; the demo
    customers pin it as ``group/grid-operator`` and ``load-profile/grid-operator``).
    Demo and tests only."""
    return demo_signing_key(GRID_OPERATOR_GROUP)
