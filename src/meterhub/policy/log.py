"""The release log: every release (and every policy change) in one hash chain.

Entry ``n`` is canonical JSON with the fields below; the chain value after it is
``h_n = SHA-256("meterhub/v1/release-log\\0" || h_{n-1} || canonical(entry_n))`` with
``h_{-1}`` 32 zero bytes. The card stores the entries and the head ``(count, h)`` in
one transaction with the released statement, so an entry exists exactly when its
statement does.

========================  ====================================================
field                     meaning
========================  ====================================================
``seq``                   0, 1, 2, ...
``kind``                  ``bill``, ``settlement``, ``scores``, ``samples``, ``suspects``,
                          ``dr``, ``export``, ``aggregate``, ``recovery``, ``policy``,
                          ``consent``, ``revoke``, ``correction`` (the one correction of a
                          bill that listed missing days, after it, for its period)
``recipient``             ``supplier``, ``grid-operator``, ``third-party``; ``customer``
                          for a policy change
``period_from/_to``       the grid cell released (``""`` for a policy change; for ``dr``
                          the event day; its events cap counts in the cell that contains it)
``policy_version``        the policy in force (for ``policy``: the new one)
``applet_aid``            the releasing applet (hex; the guard's own for ``policy``)
``request_digest``        SHA-256 of the request (hex)
``output_digest``         SHA-256 of the released bytes (hex; for ``policy``: the policy's digest)
``functionals``           linear functionals counted against the budget
``samples``               readings released with openings (``samples``, ``export``)
``consent``               the consent an ``export`` used, added or revoked (else ``""``)
``group``                 the aggregation group of an ``aggregate`` or ``recovery``
                          release (present only there)
``support_from``          the first day whose readings the release depends on, when
                          it lies before ``period_from`` (a ``dr`` release: its
                          earliest baseline day; present only there)
``epsilon_milli``         the differential-privacy loss (milli-epsilon) a
                          ``dp-forecast`` release spends (present only there)
========================  ====================================================

**Budgets are charged per calendar time** (:func:`over_budget`), not per cycle label:
a release's functionals count against every cell of the policy's cycle that its
*support* (``support_from or period_from`` .. ``period_to``) intersects, and a new
release fits only if, in every such cell, the functionals of all earlier releases to
the recipient whose support intersects the cell, plus its own, stay within the budget.
Under one cycle that is the per-period budget; after the customer moves the cycle, a
new cell that overlaps spent cells of the old one starts with their spending, so a
cycle change cannot multiply what is released over the same days
(docs/privacy.md "What each recipient may learn").

The DP budget (``dp.epsilon_milli_per_period``) is charged the same way, with
:func:`over_budget` over the entries' ``epsilon_milli`` instead of their functionals
(:func:`epsilon_charges`): a cycle change gives no fresh epsilon over days already
charged either.

An ``aggregate`` entry (one per group and day: the hub's masked hourly sums) counts
the day's hourly intervals in ``functionals``, a ``recovery`` entry (the unmasking
round: the masks shared with the members the grid operator declared missing and the
shares of the present members' self-mask seeds, at most one per group and day) zero; neither counts against the recipient's per-household budget (docs/fraud.md).

Consents are logged too: ``consent`` (added; its recipient and period) and ``revoke``
entries; an ``export`` must name a consent that is in the log, not revoked before it,
for the same recipient and covering the exported period.

:func:`verify_release_log` is the auditor's check: the chain, the sequence, one release
per period/kind/recipient, no overlapping periods, and every period's functionals (and the
epsilon of its ``dp-forecast`` releases) within the budget of the policy then in force
(policies are read from the log itself).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from ..errors import MeterhubError

__all__ = [
    "AGGREGATE_KINDS", "LOG_FORMAT", "DST_LOG", "LogEntry", "LogError", "chain_hash", "charged_span", "epsilon_charges",
    "over_budget",
    "verify_release_log",
]

LOG_FORMAT = "meterhub-release-log/1"
DST_LOG = b"meterhub/v1/release-log\x00"
#: Releases per group and day (docs/fraud.md), outside the per-household budget.
AGGREGATE_KINDS = ("aggregate", "recovery")
_FIELDS = (
    "seq", "kind", "recipient", "period_from", "period_to", "policy_version", "applet_aid",
    "request_digest", "output_digest", "functionals", "samples", "consent",
)

_OPTIONAL = {"group", "support_from", "epsilon_milli"}
#: The one kind that spends differential-privacy budget (meterhub.model.dp).
DP_KIND = "dp-forecast"


class LogError(MeterhubError, ValueError):
    """A log entry that does not parse, or a chain that does not verify."""


@dataclass(frozen=True)
class LogEntry:
    seq: int
    kind: str
    recipient: str
    period_from: str
    period_to: str
    policy_version: int
    applet_aid: str
    request_digest: str
    output_digest: str
    functionals: int
    samples: int = 0
    consent: str = ""
    group: str = ""
    support_from: str = ""
    epsilon_milli: int = 0

    def canonical_bytes(self) -> bytes:
        d = asdict(self)
        if not d["group"]:
            del d["group"]  # only aggregation entries name a group
        if not d["support_from"]:
            del d["support_from"]  # only releases reaching before their period name it (dr)
        if not d["epsilon_milli"]:
            del d["epsilon_milli"]  # only DP releases spend epsilon; older entries keep their bytes
        return json.dumps({"format": LOG_FORMAT, **d}, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> LogEntry:
        try:
            d = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise LogError("log entry is not JSON") from None
        if not isinstance(d, dict) or d.get("format") != LOG_FORMAT or set(d) - _OPTIONAL != {"format", *_FIELDS}:
            raise LogError("log entry: wrong format or fields")
        group, support_from = d.get("group", ""), d.get("support_from", "")
        if not isinstance(group, str) or not isinstance(support_from, str):
            raise LogError("log entry: bad group or support_from")
        eps = d.get("epsilon_milli", 0)
        if not isinstance(eps, int) or isinstance(eps, bool) or eps < 0:
            raise LogError("log entry: bad epsilon_milli")
        ints = ("seq", "policy_version", "functionals", "samples")
        for f in _FIELDS:
            v = d[f]
            ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 0) if f in ints else isinstance(v, str)
            if not ok:
                raise LogError(f"log entry: bad {f}")
        e = cls(**{f: d[f] for f in _FIELDS}, group=group, support_from=support_from, epsilon_milli=eps)
        if e.canonical_bytes() != raw:
            raise LogError("log entry is not in canonical form")
        return e

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def charged_span(e: LogEntry) -> tuple[date, date]:
    """The calendar days whose readings the functionals of release ``e`` depend on."""
    return date.fromisoformat(e.support_from or e.period_from), date.fromisoformat(e.period_to)


def epsilon_charges(entries: Iterable[LogEntry]) -> list[tuple[date, date, int]]:
    """The ``(first, last, epsilon_milli)`` charges of the DP releases among ``entries``,
    for :func:`over_budget` against ``dp.epsilon_milli_per_period``."""
    return [(*charged_span(e), e.epsilon_milli) for e in entries if e.epsilon_milli]


def over_budget(
    cycle: Any, budget: int, charges: Iterable[tuple[date, date, int]], first: date, last: date, functionals: int
) -> tuple[date, int] | None:
    """``None`` if ``functionals`` over the support ``first..last`` fit the budget; else
    the first cell (its first day) they exceed and what earlier releases spent there.

    ``charges`` are the earlier releases to the same recipient as ``(first, last,
    functionals)`` of their support; ``cycle`` has ``period_of(day)`` (the policy's
    :class:`~meterhub.policy.Cycle`). Every cell that ``first..last`` intersects is
    checked with every charge that intersects that cell (module docstring)."""
    charges = [c for c in charges if c[2]]
    a, b = cycle.period_of(first)
    while a <= last:
        spent = sum(f for x, y, f in charges if not (y < a or b < x))
        if spent + functionals > budget:
            return a, spent
        a, b = cycle.period_of(b + timedelta(days=1))
    return None


def chain_hash(prev: bytes, entry: LogEntry | bytes) -> bytes:
    raw = entry.canonical_bytes() if isinstance(entry, LogEntry) else entry
    return hashlib.sha256(DST_LOG + prev + raw).digest()


def verify_release_log(
    raw_entries: Sequence[bytes], head: bytes, *, policies: dict[int, Any] | None = None
) -> list[LogEntry]:
    """Check a release log as an auditor; returns the entries or raises :class:`LogError`.

    ``head`` is the chain value the card reports; ``policies`` maps a policy version to
    its :class:`~meterhub.policy.ReleasePolicy` (the budget check needs them; without
    it the budgets are not checked, everything else is).
    """
    h = bytes(32)
    entries = []
    seen: dict[tuple[str, str, str], LogEntry] = {}
    periods: dict[tuple[str, str], list[tuple[str, str]]] = {}
    charges: dict[str, list[tuple[date, date, int]]] = {}
    spent_eps: dict[str, list[LogEntry]] = {}
    dr_events: dict[tuple[str, str], int] = {}
    consents: dict[str, tuple[str, str, str, bool]] = {}
    version = 0
    for n, raw in enumerate(raw_entries):
        e = LogEntry.from_bytes(raw)
        if e.seq != n:
            raise LogError(f"entry {n}: sequence number {e.seq}")
        h = chain_hash(h, raw)
        if e.kind == "policy":
            if e.policy_version <= version:
                raise LogError(f"entry {n}: policy version {e.policy_version} does not increase")
            version = e.policy_version
            entries.append(e)
            continue
        if e.policy_version != version:
            raise LogError(f"entry {n}: released under policy {e.policy_version}, {version} was in force")
        if e.kind == "consent":
            if e.consent in consents:
                raise LogError(f"entry {n}: consent {e.consent} added twice")
            consents[e.consent] = (e.recipient, e.period_from, e.period_to, True)
            entries.append(e)
            continue
        if e.kind == "revoke":
            if e.consent not in consents:
                raise LogError(f"entry {n}: revokes unknown consent {e.consent}")
            consents[e.consent] = (*consents[e.consent][:3], False)
            entries.append(e)
            continue
        if e.kind in AGGREGATE_KINDS:
            if not e.group or e.period_from != e.period_to:
                raise LogError(f"entry {n}: an aggregation release names one group and one day")
            key3 = (e.recipient, e.kind, e.group + "/" + e.period_from)
            if key3 in seen:
                raise LogError(f"entry {n}: a second {e.kind} for group {e.group} on {e.period_from}")
            if e.kind == "recovery" and (e.recipient, "aggregate", key3[2]) not in seen:
                raise LogError(f"entry {n}: a recovery for group {e.group} on {e.period_from} before the day's release")
            seen[key3] = e
            if policies is not None:
                pol = policies.get(version)
                if pol is None:
                    raise LogError(f"entry {n}: policy version {version} unknown to the auditor")
                if not pol.entitled(e.recipient, "aggregate"):
                    raise LogError(f"entry {n}: {e.recipient} is not entitled to aggregate")
            entries.append(e)
            continue
        if e.group:
            raise LogError(f"entry {n}: only aggregation releases name a group")
        if (e.kind == DP_KIND) != (e.epsilon_milli > 0):
            raise LogError(f"entry {n}: a {DP_KIND} release, and only it, spends a positive epsilon")
        if e.kind == "export":
            c = consents.get(e.consent)
            if c is None or not c[3] or c[0] != e.recipient or e.period_from < c[1] or e.period_to > c[2]:
                raise LogError(f"entry {n}: export without a valid consent {e.consent!r}")
        if e.kind == "correction":  # one per released bill that listed missing days
            orig = seen.get((e.recipient, "bill", e.period_from))
            if orig is None or orig.period_to != e.period_to:
                raise LogError(f"entry {n}: a correction of no released bill for {e.period_from}")
        key = (e.recipient, e.kind, e.period_from)
        if key in seen:
            raise LogError(f"entry {n}: a second {e.kind} release to {e.recipient} for {e.period_from}")
        seen[key] = e
        for a, b in periods.get((e.recipient, e.kind), []):
            if not (e.period_to < a or b < e.period_from):
                raise LogError(f"entry {n}: {e.kind} period {e.period_from}..{e.period_to} overlaps {a}..{b}")
        periods.setdefault((e.recipient, e.kind), []).append((e.period_from, e.period_to))
        pol = policies.get(version) if policies is not None else None
        if policies is not None and pol is None:
            raise LogError(f"entry {n}: policy version {version} unknown to the auditor")
        cell = e.period_from
        if e.kind == "dr" and pol is not None:  # the events cap counts per event-day cell
            try:
                cell = pol.cycle.period_of(date.fromisoformat(e.period_from))[0].isoformat()
            except ValueError:
                raise LogError(f"entry {n}: event day {e.period_from!r:.20} is not a date") from None
            dr_events[(e.recipient, cell)] = dr_events.get((e.recipient, cell), 0) + 1
            if dr_events[(e.recipient, cell)] > pol.limit("dr", "events_per_period"):
                raise LogError(f"entry {n}: {e.recipient} exceeds the demand-response events for {cell}")
        try:
            span = charged_span(e)
        except ValueError:
            raise LogError(f"entry {n}: period or support_from is not a date") from None
        if span[0] > span[1] or (e.support_from and e.kind != "dr"):
            raise LogError(f"entry {n}: support_from must be a dr release's earlier baseline day")
        if pol is not None:
            over = over_budget(pol.cycle, pol.limit("budget", "functionals_per_period"),
                               charges.get(e.recipient, []), *span, e.functionals)
            if over is not None:
                raise LogError(f"entry {n}: {e.recipient} exceeds its budget for the period from {over[0]}")
            if e.epsilon_milli:
                over = over_budget(pol.cycle, pol.limit("dp", "epsilon_milli_per_period"),
                                   epsilon_charges(spent_eps.get(e.recipient, [])), *span, e.epsilon_milli)
                if over is not None:
                    raise LogError(f"entry {n}: {e.recipient} exceeds its epsilon budget for the period from {over[0]}")
            if e.kind != "export" and not pol.entitled(e.recipient, "bill" if e.kind == "correction" else e.kind):
                raise LogError(f"entry {n}: {e.recipient} is not entitled to {e.kind}")
        charges.setdefault(e.recipient, []).append((*span, e.functionals))
        spent_eps.setdefault(e.recipient, []).append(e)
        entries.append(e)
    if h != head:
        raise LogError("the chain does not end in the head the card reports")
    return entries
