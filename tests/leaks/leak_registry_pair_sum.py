"""LEAK (not collected; documented in docs/fraud.md as "sound, not complete").

The registry's small-combination test looks at the reduced rows only. Three groups
``G1 = {v} + X``, ``G2 = {w} + Y``, ``G3 = X + Y`` (``X``, ``Y`` of 5) pass every hub:
nobody is isolated, every two groups differ by at least 6, and the reduced rows
``v - Y``, ``w + Y``, ``X + Y`` have 6, 6 and 10 households. But
``G1 + G2 - G3 = v + w``: the sum of two households, below the minimum of 5.

A complete test is the minimum support of a vector in the span (the minimum distance
of a linear code, hard in general); for supports up to 4 it is "removing some <= 4
columns drops the rank", which needs an enumeration a card cannot afford for a large
feeder. Left as documented.

Run: PYTHONPATH=src:tests python -m pytest -q tests/leaks/leak_registry_pair_sum.py
"""

from __future__ import annotations

from datetime import date

from meterhub.model.formats.aggregation import GroupDefinition, GroupMember, demo_group_key
from meterhub.model.group_registry import isolated_households, reduced_rows, registry_problems

X = [f"x{k}" for k in range(5)]
Y = [f"y{k}" for k in range(5)]


def _g(gid: str, names) -> GroupDefinition:
    members = tuple(GroupMember(n, n.encode().ljust(32, b"\0")) for n in sorted(names))
    return GroupDefinition(gid, "f", 60, date(2027, 1, 1), date(2027, 12, 31), members).signed(demo_group_key())


def test_no_sum_of_two_households_lies_in_an_accepted_registry() -> None:
    groups = [_g("G1", ["v", *X]), _g("G2", ["w", *Y]), _g("G3", [*X, *Y])]
    assert isolated_households(g.meter_ids for g in groups) == []
    cols, rows = reduced_rows(g.meter_ids for g in groups)
    pair = [0] * len(cols)
    pair[cols.index("v")] = pair[cols.index("w")] = 1
    combo = [a + b - c for a, b, c in zip(*(
        [1 if col in g.meter_ids else 0 for col in cols] for g in groups), strict=True)]
    assert combo == pair  # G1 + G2 - G3 = v + w
    assert registry_problems(groups) != [], "the registry is accepted although v + w is in its span"
