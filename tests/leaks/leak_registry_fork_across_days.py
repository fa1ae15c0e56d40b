"""LEAK (not collected: tests/leaks/ holds attacks that still work; see the module text).

The registry check is time-agnostic (docs/fraud.md: "a household's days are alike, so
sums of different days can be differenced as well"), but the equivocation defence binds
only *one day's* span into the masks. A grid operator that forks the registry after a
released day gets, across days, a set of sums that no single chain contains:

* block 0 (every hub): ``F = {v} + P + Q`` valid on day 1; every member of ``F``
  releases day 1 (one span, the masks cancel): ``F(d1)``;
* block 1, forked: the hubs of ``P`` get ``P`` (valid on day 2), the hubs of ``Q`` get
  ``Q`` (valid on day 2). Each chain passes every hub's check ({F, P} and {F, Q}
  isolate nobody), each group's members hold the same chain, so the day-2 masks of
  ``P`` and of ``Q`` cancel: ``P(d2)``, ``Q(d2)``.

``F - P - Q = v``: the released sums put household ``v`` in their span, exactly what
the time-agnostic check refuses on one chain. (Across days the difference is ``v(d1)``
plus the day-to-day changes of ``P`` and ``Q``, the estimate the registry's own rule
counts as a leak.) A fix needs every hub's view of the *whole* registry bound into the
masks or compared between hubs (e.g. the chain head in the mask context once all
members are at one version, or hubs gossiping heads), a protocol change left to the lead.

Run: PYTHONPATH=src:tests python -m pytest -q tests/leaks/leak_registry_fork_across_days.py
"""

from __future__ import annotations

from datetime import date

from meterhub.crypto import ecdsa
from meterhub.model.formats.aggregation import GroupDefinition, GroupMember, demo_group_key
from meterhub.model.group_registry import RegistryBlock, RegistryView, isolated_households

D1, D2 = date(2027, 5, 3), date(2027, 5, 4)
P = [f"p{k}" for k in range(5)]
Q = [f"q{k}" for k in range(5)]


def _g(gid: str, names, day: date) -> GroupDefinition:
    members = tuple(GroupMember(n, n.encode().ljust(32, b"\0")) for n in sorted(names))
    return GroupDefinition(gid, "f", 60, day, day, members).signed(demo_group_key())


def test_a_forked_registry_does_not_isolate_a_household_across_days() -> None:
    key = ecdsa.public_bytes(demo_group_key())
    f, p, q = _g("F", ["v", *P, *Q], D1), _g("P", P, D2), _g("Q", Q, D2)
    b0 = RegistryBlock("f", 0, bytes(32), (f,)).signed(demo_group_key())
    views: dict[str, RegistryView] = {}
    for hub in ["v", *P, *Q]:
        view = RegistryView()
        view.check_extension(b0, [key], lambda d: False)
        views[hub] = view.extended(b0)
    day1_spans = {views[h].day_span(D1) for h in views}
    assert len(day1_spans) == 1  # F's members agree on day 1: F(d1) is learnt
    fork = {"A": RegistryBlock("f", 1, b0.chain_value(), (p,)).signed(demo_group_key()),
            "B": RegistryBlock("f", 1, b0.chain_value(), (q,)).signed(demo_group_key())}
    for hub, view in list(views.items()):
        block = fork["B" if hub in Q else "A"]
        view.check_extension(block, [key], lambda d: d == D1)  # every hub accepts its branch
        views[hub] = view.extended(block)
    assert len({views[h].day_span(D2) for h in P}) == 1  # P's masks cancel on day 2
    assert len({views[h].day_span(D2) for h in Q}) == 1  # Q's too
    released = [f.meter_ids, p.meter_ids, q.meter_ids]
    assert isolated_households(released) == [], "F(d1) - P(d2) - Q(d2) isolates household v"
