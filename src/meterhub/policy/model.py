"""The release policy: what the hub may release, to whom, per period (docs/privacy.md).

A policy is a JSON object signed by the customer's P-256 key (created when the hub is
provisioned). The card's privacy guard holds it in persistent, transactional storage
and checks every release against it. Every limit has a default a privacy regulator
would accept and a hard limit that no signed policy can pass:

=====================================  ========  ==========  =========================
limit                                  default   hard limit  defeats
=====================================  ========  ==========  =========================
tariff: distinct unit prices           8         <= 12       prices as powers of a base
tariff: shortest band (minutes)        30        >= 30       15-minute price slots
tariff: highest price (milli-units/kWh) 1000     <= 5000     huge "prices" as a base
tariff: highest / lowest non-zero price 10       <= 100      ditto, at any scale
tariff: changes per billing period     1         <= 1        a new encoding each week
profile: resolution (minutes)          60        >= 60       15-minute weights
profile: highest / lowest non-zero w   1000      <= 10000    weights 1, 2^13, 2^26, 2^39
profile: hours a score isolates        8         >= 4        a single non-zero weight, 1000
                                                             at one hour and 1 elsewhere, or
                                                             two profiles differing by a spike
linear functionals per period+recipient 16       <= 32       a few dozen spread profiles
sampling: one reading in k             100       >= 50       k = 1
sampling: coin tosses per period       1         <= 1        one toss per sub-period
demand response: events per period     6         <= 12       an "event" every day as a
                                                             daily consumption feed
dp: epsilon per period (milli)         1000      <= 10000    a DP release with no noise
dp: hourly clip (Wh)                   5000      <= 100000   (a utility knob; any clip
                                                             keeps the guarantee)
dp: privacy unit (hours)               1         >= 1        a unit shorter than an hour
=====================================  ========  ==========  =========================

A DP forecast release (kind ``dp-forecast``, :mod:`meterhub.model.dp`) spends epsilon,
not functionals: the guard charges its epsilon to the recipient's period and refuses
(``6A84``) what would pass ``dp.epsilon_milli_per_period``.

A demand-response release (kind ``dr``) is not for a whole period: it is for one event
(at most one per recipient and event day, so two windows of one day cannot be
differenced), one functional each, charged to every period from its earliest baseline
day to the event day; the events cap counts per event-day period. Budgets are charged
per calendar time (:func:`meterhub.policy.log.over_budget`), so a new cycle does not
renew what earlier releases over the same days spent.

Periods are cells of one fixed grid (the customer's billing cycle: calendar months by
default, or ``length`` days from ``anchor``); a request must name exactly one cell.
The grid is the customer's, so a recipient cannot choose boundaries, split a month
into days, or overlap periods.

The customer may declare **split days** (``cycle.splits``: a supplier switch, a move-in
or move-out, a contract's start or end): a cell that contains a split day is released as
two pieces, the second starting on the split day. At most :data:`MAX_SPLITS_PER_CELL`
declared splits fall in one cell; the first day of a tariff that takes effect inside a
cell splits it once more (the guard records it when the tariff is installed; at most
one tariff change per period). A cell thus has at most four pieces, and each piece is
billed with its own functionals (docs/privacy.md, "Split periods").

Wire format (canonical JSON: sorted keys, no whitespace)::

    {"policy": {...}, "signature": {"algorithm": "ecdsa-p256-sha256",
     "key_id": hex SHA-256 of the customer's SEC 1 point, "value": hex r||s}}

signed over ``"meterhub/v1/release-policy\\0" || canonical(policy)``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from ..crypto import ecdsa
from ..errors import MeterhubError
from ..protocols.iso7816.sw import SW

__all__ = [
    "DEFAULT_POLICY",
    "HARD_LIMITS",
    "KINDS",
    "MAX_SPLITS_PER_CELL",
    "POLICY_FORMAT",
    "RECIPIENTS",
    "Cycle",
    "PolicyError",
    "PolicyViolation",
    "ReleasePolicy",
    "STRICT_ENTITLEMENTS",
    "SignedPolicy",
    "check_profile",
    "check_support",
    "check_pair_support",
    "check_tariff",
    "default_policy",
    "dump_policy",
    "load_policy",
    "refusal_reason",
    "sign_policy",
    "verify_policy",
]

POLICY_FORMAT = "meterhub-release-policy/1"
DST_POLICY = b"meterhub/v1/release-policy\x00"
#: The data recipients (each has its own security domain on the hub).
RECIPIENTS = ("supplier", "grid-operator", "third-party")
#: Kinds of release: a bill statement, a settlement statement, profile scores, samples,
#: a group's hourly aggregate (masked sums and recovery answers, docs/fraud.md),
#: suspect-profile scores (fraud localisation; counted against the budget like scores)
#: a demand-response reduction for one event (docs/demand-response.md) and a
#: differentially private forecast (noisy energy and class, meterhub.model.dp).
KINDS = ("bill", "settlement", "scores", "samples", "aggregate", "suspects", "dr", "dp-forecast")
MAX_POLICY_BYTES = 4096


class PolicyError(MeterhubError, ValueError):
    """A policy file that is malformed, unsigned, or outside the hard limits."""


class PolicyViolation(MeterhubError):  # noqa: N818 - it is a refusal, raised like ISOException
    """A request the policy refuses: the status word the card answers and a one-line reason."""

    def __init__(self, sw: int, reason: str) -> None:
        super().__init__(reason)
        self.sw = sw
        self.reason = reason


#: Status words the guard answers (ISO/IEC 7816-4 §5.6) and what they mean to the sender.
_REASONS = {
    SW.WRONG_DATA: "malformed, or outside the release policy (tariff, profile, k or period shape)",
    SW.SECURITY_STATUS_NOT_SATISFIED: "not signed by the pinned publisher, or the recipient is not entitled to it",
    SW.CONDITIONS_NOT_SATISFIED: "already released or committed for this period, or an overlapping period",
    0x6A84: "the recipient's budget of linear functionals for this period is used up",
    SW.REFERENCED_DATA_NOT_FOUND: "refers to data the hub does not hold",
    SW.UNKNOWN: "withheld: the applet's output did not pass the guard, or the card's storage failed its integrity check",
    SW.FILE_NOT_FOUND: "no such applet on the card",
    SW.INS_NOT_SUPPORTED: "command not supported by the selected applet",
    SW.WRONG_LENGTH: "wrong length",
    SW.INCORRECT_P1P2: "incorrect parameters P1-P2",
    SW.COMMAND_NOT_ALLOWED: "command not allowed in the applet's state",
    SW.DATA_INVALID: "data invalid (a signature or DAP block that does not verify)",
}


def refusal_reason(sw: int) -> str:
    """The one-line meaning of a guard refusal's status word."""
    return _REASONS.get(sw, "refused")


SW_BUDGET = 0x6A84  # "not enough memory space": nothing left of the period's budget


#: Declared split days that may fall in one cell of the cycle (a switch and a move).
MAX_SPLITS_PER_CELL = 2
#: Declared split days in one policy (the file stays small).
MAX_SPLITS = 24


@dataclass(frozen=True)
class Cycle:
    """The fixed period grid: calendar-like months from ``anchor`` (``days = 0``), or
    cells of ``days`` days from ``anchor``; ``splits`` are the customer's split days."""

    anchor: date
    days: int = 0  # 0: months
    splits: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        if self.days == 0 and self.anchor.day > 28:
            raise PolicyError("cycle: a monthly anchor must be on day 1..28")
        if not 0 <= self.days <= 366:
            raise PolicyError("cycle: length is 'month' or 1..366 days")
        if len(self.splits) > MAX_SPLITS or list(self.splits) != sorted(set(self.splits)):
            raise PolicyError(f"cycle.splits: at most {MAX_SPLITS} distinct days in ascending order")
        per_cell: dict[date, int] = {}
        for d in self.splits:
            start = self.period_of(d)[0]
            if d == start:
                raise PolicyError(f"cycle.splits: {d} already starts a period")
            per_cell[start] = per_cell.get(start, 0) + 1
            if per_cell[start] > MAX_SPLITS_PER_CELL:
                raise PolicyError(f"cycle.splits: at most {MAX_SPLITS_PER_CELL} split days in one period")

    def pieces(self, day: date, extra: tuple[date, ...] = ()) -> list[tuple[date, date]]:
        """The pieces of the cell that contains ``day``: split at the declared split days
        and at ``extra`` days (a tariff change) inside it, first and last day inclusive."""
        start, end = self.period_of(day)
        cuts = sorted({d for d in (*self.splits, *extra) if start < d <= end})
        bounds = [start, *cuts, end + timedelta(days=1)]
        return [(bounds[k], bounds[k + 1] - timedelta(days=1)) for k in range(len(bounds) - 1)]

    def period_of(self, day: date) -> tuple[date, date]:
        """The grid cell that contains ``day`` (first and last day, inclusive)."""
        if self.days:
            n = (day - self.anchor).days // self.days
            start = self.anchor + timedelta(days=n * self.days)
            return start, start + timedelta(days=self.days - 1)
        n = (day.year - self.anchor.year) * 12 + day.month - self.anchor.month
        if day.day < self.anchor.day:
            n -= 1
        start = _add_months(self.anchor, n)
        return start, _add_months(self.anchor, n + 1) - timedelta(days=1)

    def is_period(self, first: date, last: date) -> bool:
        return self.period_of(first) == (first, last)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"anchor": self.anchor.isoformat(), "length": self.days or "month"}
        if self.splits:  # absent when none, so older policies keep their bytes and digest
            d["splits"] = [s.isoformat() for s in self.splits]
        return d


def _add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    return date(d.year + m // 12, m % 12 + 1, d.day)


# name -> (default, hard limit, "max" if the limit is an upper bound, "min" if lower)
_LIMITS: dict[str, dict[str, tuple[int, int, str]]] = {
    "tariff": {
        "max_prices": (8, 12, "max"),
        "min_band_minutes": (30, 30, "min"),
        "max_price_milli_per_kwh": (1000, 5000, "max"),
        "max_price_ratio": (10, 100, "max"),
        "max_changes_per_period": (1, 1, "max"),
    },
    "profile": {
        "min_minutes": (60, 60, "min"),
        "max_weight_ratio": (1000, 10000, "max"),
        "min_support_hours": (8, 4, "min"),
    },
    "budget": {"functionals_per_period": (16, 32, "max")},
    "sampling": {"min_k": (100, 50, "min"), "tosses_per_period": (1, 1, "max")},
    "dr": {"events_per_period": (6, 12, "max")},
    "dp": {"epsilon_milli_per_period": (1000, 10000, "max"), "clip_wh": (5000, 100000, "max"),
           "unit_hours": (1, 1, "min")},
}
HARD_LIMITS = {sec: {k: v[1] for k, v in d.items()} for sec, d in _LIMITS.items()}
#: Limits added after policies were first signed: a signed policy without one keeps its
#: signature (canonical bytes unchanged) and gets the default (docs/privacy.md).
_LATER_LIMITS = {("profile", "min_support_hours")}
DEFAULT_ENTITLEMENTS = {
    "supplier": ("bill", "settlement"),
    "grid-operator": ("scores", "samples", "aggregate", "suspects", "dr", "dp-forecast"),
    "third-party": (),
}
#: The strict preset (docs/privacy-evaluation.md): the grid operator forecasts from the
#: differentially private release instead of exact scores and samples; demand response
#: (it pays the customer) and the fraud aggregate (it finds theft) stay exact.
STRICT_ENTITLEMENTS = {
    "supplier": ("bill", "settlement"),
    "grid-operator": ("aggregate", "suspects", "dr", "dp-forecast"),
    "third-party": (),
}


@dataclass(frozen=True)
class ReleasePolicy:
    version: int
    cycle: Cycle
    entitlements: dict[str, tuple[str, ...]]
    limits: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or isinstance(self.version, bool) or not 1 <= self.version < 1 << 31:
            raise PolicyError("version: an integer 1..2^31-1")
        for sec, items in _LIMITS.items():
            got = self.limits.get(sec, {})
            for name, (_, hard, sense) in items.items():
                v = got.get(name)
                if v is None and (sec, name) in _LATER_LIMITS:
                    continue
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise PolicyError(f"{sec}.{name}: a non-negative integer")
                if (sense == "max" and v > hard) or (sense == "min" and v < hard):
                    bound = "at most" if sense == "max" else "at least"
                    raise PolicyError(f"{sec}.{name} = {v} is beyond the hard limit ({bound} {hard})")
            if set(got) - set(items):
                raise PolicyError(f"{sec}: unknown field {sorted(set(got) - set(items))[0]!r}")
        if set(self.limits) - set(_LIMITS):
            raise PolicyError(f"unknown section {sorted(set(self.limits) - set(_LIMITS))[0]!r}")
        if self.limits["sampling"]["min_k"] < 1 or self.limits["budget"]["functionals_per_period"] < 1:
            raise PolicyError("sampling.min_k and budget.functionals_per_period must be positive")
        if self.limits["dp"]["clip_wh"] < 1:
            raise PolicyError("dp.clip_wh must be positive")
        for who, kinds in self.entitlements.items():
            if who not in RECIPIENTS:
                raise PolicyError(f"entitlements: unknown recipient {who!r:.40}")
            if any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
                raise PolicyError(f"entitlements.{who}: distinct kinds of {', '.join(KINDS)}")

    def limit(self, section: str, name: str) -> int:
        got = self.limits[section].get(name)
        return _LIMITS[section][name][0] if got is None else got

    def entitled(self, recipient: str, kind: str) -> bool:
        return kind in self.entitlements.get(recipient, ())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": POLICY_FORMAT,
            "version": self.version,
            "cycle": self.cycle.to_dict(),
            "entitlements": {k: list(v) for k, v in sorted(self.entitlements.items())},
            **{sec: dict(sorted(v.items())) for sec, v in self.limits.items()},
        }

    def canonical_bytes(self) -> bytes:
        return _canonical(self.to_dict())

    def digest(self) -> bytes:
        return hashlib.sha256(b"meterhub/v1/policy-digest\x00" + self.canonical_bytes()).digest()

    @classmethod
    def from_dict(cls, d: Any) -> ReleasePolicy:
        if not isinstance(d, dict):
            raise PolicyError("policy: expected an object")
        allowed = {"format", "version", "cycle", "entitlements", *_LIMITS}
        if set(d) - allowed:
            raise PolicyError(f"policy: unknown field {sorted(set(d) - allowed)[0]!r:.40}")
        if d.get("format") != POLICY_FORMAT:
            raise PolicyError(f"policy: format must be {POLICY_FORMAT!r}")
        cyc = d.get("cycle")
        if not isinstance(cyc, dict) or not {"anchor", "length"} <= set(cyc) <= {"anchor", "length", "splits"}:
            raise PolicyError("cycle: expected {anchor, length} and optionally splits")
        try:
            anchor = date.fromisoformat(cyc["anchor"]) if isinstance(cyc["anchor"], str) else None
        except ValueError:
            anchor = None
        if anchor is None:
            raise PolicyError("cycle.anchor: a date YYYY-MM-DD")
        length = cyc["length"]
        if length == "month":
            days = 0
        elif isinstance(length, int) and not isinstance(length, bool) and length >= 1:
            days = length
        else:
            raise PolicyError("cycle.length: 'month' or a number of days")
        if cyc.get("splits", None) == []:
            raise PolicyError("cycle.splits: omitted when there are none (one canonical form)")
        splits = _dates(cyc.get("splits", []), "cycle.splits")
        ent = d.get("entitlements")
        if not isinstance(ent, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in ent.values()):
            raise PolicyError("entitlements: an object of lists of kinds")
        limits = {}
        for sec in _LIMITS:
            v = d.get(sec)
            if not isinstance(v, dict):
                raise PolicyError(f"{sec}: expected an object")
            limits[sec] = dict(v)
        return cls(d.get("version"), Cycle(anchor, days, splits), {k: tuple(v) for k, v in ent.items()}, limits)  # type: ignore[arg-type]


def _dates(raw: Any, what: str) -> tuple[date, ...]:
    if not isinstance(raw, list):
        raise PolicyError(f"{what}: a list of dates YYYY-MM-DD")
    out = []
    for v in raw:
        try:
            out.append(date.fromisoformat(v) if isinstance(v, str) and len(v) == 10 else None)
        except ValueError:
            out.append(None)
        if out[-1] is None:
            raise PolicyError(f"{what}: a list of dates YYYY-MM-DD")
    return tuple(d for d in out if d is not None)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def default_policy(*, version: int = 1, anchor: date = date(2000, 1, 1), days: int = 0,
                   entitlements: dict[str, tuple[str, ...]] | None = None,
                   splits: tuple[date, ...] = (), **overrides: dict[str, int]) -> ReleasePolicy:
    """The default policy on a cycle (calendar months unless ``days``; ``splits`` the
    customer's split days); ``overrides`` maps a section to changed limits, e.g.
    ``sampling={"min_k": 200}``; ``entitlements`` replaces the default ones (e.g.
    :data:`STRICT_ENTITLEMENTS`)."""
    limits = {sec: {k: v[0] for k, v in items.items()} for sec, items in _LIMITS.items()}
    for sec, changes in overrides.items():
        if sec not in limits:
            raise PolicyError(f"unknown section {sec!r}")
        limits[sec].update(changes)
    return ReleasePolicy(version, Cycle(anchor, days, tuple(splits)), dict(entitlements or DEFAULT_ENTITLEMENTS), limits)


DEFAULT_POLICY = default_policy()


@dataclass(frozen=True)
class SignedPolicy:
    policy: ReleasePolicy
    key_id: str
    signature: bytes


def _key_id(key: ecdsa.SigningKey | ecdsa.VerifyingKey | bytes) -> str:
    point = key if isinstance(key, bytes) else ecdsa.public_bytes(key)
    return hashlib.sha256(point).hexdigest()


def sign_policy(policy: ReleasePolicy, customer_key: ecdsa.SigningKey) -> SignedPolicy:
    return SignedPolicy(policy, _key_id(customer_key), ecdsa.sign(customer_key, DST_POLICY + policy.canonical_bytes()))


def dump_policy(signed: SignedPolicy) -> bytes:
    return _canonical(
        {
            "policy": signed.policy.to_dict(),
            "signature": {"algorithm": "ecdsa-p256-sha256", "key_id": signed.key_id, "value": signed.signature.hex()},
        }
    )


def load_policy(raw: bytes | str) -> SignedPolicy:
    """Strict parse of a signed policy file (no trust yet); raises :class:`PolicyError`."""
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError("policy file too large")
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PolicyError("policy file is not JSON") from None
    if not isinstance(d, dict) or set(d) != {"policy", "signature"}:
        raise PolicyError("expected {policy, signature}")
    sig = d["signature"]
    if not isinstance(sig, dict) or set(sig) != {"algorithm", "key_id", "value"} or sig["algorithm"] != "ecdsa-p256-sha256":
        raise PolicyError("signature: expected {algorithm: ecdsa-p256-sha256, key_id, value}")
    try:
        value = bytes.fromhex(sig["value"]) if isinstance(sig["value"], str) else b""
    except ValueError:
        value = b""
    if len(value) != 64 or not isinstance(sig["key_id"], str):
        raise PolicyError("signature: value must be 128 hex digits")
    return SignedPolicy(ReleasePolicy.from_dict(d["policy"]), sig["key_id"], value)


def verify_policy(signed: SignedPolicy, customer_key: ecdsa.VerifyingKey | bytes) -> ReleasePolicy:
    """The policy if the customer's key signed it; raises :class:`PolicyError`."""
    vk = ecdsa.load_verifying_key(customer_key) if isinstance(customer_key, bytes) else customer_key
    if signed.key_id != _key_id(vk) or not ecdsa.verify(vk, DST_POLICY + signed.policy.canonical_bytes(), signed.signature):
        raise PolicyError("the policy is not signed by the customer's key")
    return signed.policy


# ---------------------------------------------------------------- input shape checks


def check_tariff(tariff: Any, policy: ReleasePolicy) -> None:
    """Raise :class:`PolicyViolation` (``6A80``) unless the tariff's price structure is
    within the policy: few distinct prices, long bands, plausible and close prices.
    A non-linear tariff is checked on its base bands; its rows are price schedules
    of the same band structure."""
    base = getattr(tariff, "base", tariff)
    bands = base.bands
    prices = {b.price for b in bands}
    lim = policy.limits["tariff"]
    if len(prices) > lim["max_prices"]:
        raise PolicyViolation(SW.WRONG_DATA, f"tariff has {len(prices)} distinct prices, the policy allows {lim['max_prices']}")
    for b in bands:
        length = (b.end_minute - b.start_minute) % 1440 or 1440
        if length < lim["min_band_minutes"]:
            raise PolicyViolation(SW.WRONG_DATA, f"tariff band {b.name} lasts {length} min, the policy needs {lim['min_band_minutes']}")
    # price [subunits/Wh] * 1000 Wh/kWh / subunits_per_unit * 1000 milli <= max
    top = max(prices)
    if top * 1_000_000 > lim["max_price_milli_per_kwh"] * base.subunits_per_unit:
        raise PolicyViolation(SW.WRONG_DATA, "tariff price above the policy's plausible maximum")
    nonzero = [p for p in prices if p]
    if nonzero and max(nonzero) > lim["max_price_ratio"] * min(nonzero):
        raise PolicyViolation(SW.WRONG_DATA, f"tariff prices span more than {lim['max_price_ratio']}x")


def check_profile(series: Any, policy: ReleasePolicy) -> None:
    """Raise :class:`PolicyViolation` (``6A80``) unless a reference profile is at the
    policy's resolution or coarser, non-negative, with a bounded weight range, and
    spread over at least ``min_support_hours`` (:func:`check_support`)."""
    lim = policy.limits["profile"]
    if series.interval_minutes < lim["min_minutes"] or series.interval_minutes % 60:
        raise PolicyViolation(SW.WRONG_DATA, f"profile {series.series_id} has {series.interval_minutes}-minute weights, the policy needs whole hours >= {lim['min_minutes']} min")
    if any(v < 0 for v in series.values):
        raise PolicyViolation(SW.WRONG_DATA, f"profile {series.series_id} has negative weights")
    nonzero = [v for v in series.values if v]
    if not nonzero:
        raise PolicyViolation(SW.WRONG_DATA, f"profile {series.series_id} is all zero")
    if max(nonzero) > lim["max_weight_ratio"] * min(nonzero):
        raise PolicyViolation(SW.WRONG_DATA, f"profile {series.series_id} weights span more than {lim['max_weight_ratio']}x")
    check_support(series.values, series.interval_minutes, policy, name=f"profile {series.series_id}")


def check_support(weights: Sequence[int], minutes: int, policy: ReleasePolicy, *, name: str = "profile") -> None:
    """Raise :class:`PolicyViolation` (``6A80``) if the weights, with the energy released
    beside every score, isolate fewer than ``profile.min_support_hours`` hours.

    The recipient gets ``E = sum M_h`` with every score ``sum w_h M_h``, so it can form
    ``score - c E = sum (w_h - c) M_h`` for any ``c``: the fewest hours such a functional
    can depend on is the number of weights that differ from the most common weight. A
    single non-zero weight (``c = 0``), or 1000 at one hour and 1 elsewhere (``c = 1``),
    isolates one hour and is refused; a constant profile (a multiple of ``E``) isolates
    nothing and passes. Checked on the whole series when it is pushed and on the
    weights of the released period when a score is computed."""
    if not weights:
        return
    need = policy.limit("profile", "min_support_hours")
    support = (len(weights) - max(Counter(weights).values())) * minutes
    if 0 < support < need * 60:
        raise PolicyViolation(
            SW.WRONG_DATA,
            f"{name} isolates {support / 60:g} hours from the energy, the policy needs at least {need}",
        )


def check_pair_support(
    a: Sequence[int], b: Sequence[int], minutes: int, policy: ReleasePolicy, *, name: str = "profiles"
) -> None:
    """Raise :class:`PolicyViolation` (``6A80``) if two profiles released together, with
    the energy, isolate fewer than ``profile.min_support_hours`` hours.

    From the scores of ``a`` and ``b`` and ``E`` the recipient forms ``x a + y b + c`` for
    any ``x, y, c``; it is zero on the hours whose points ``(a_h, b_h)`` lie on one line, so
    the fewest hours it can depend on is ``n`` minus the most points on a line that does
    not hold them all (all on one line: ``b`` adds nothing to ``a`` and ``E``). ``h0`` and
    ``h0`` plus one spike differ by that spike and are refused. If a line misses fewer
    than ``S`` points, at most ``S - 1`` distinct points are off it, so two of any ``S + 1``
    distinct points lie on it: the lines through those pairs are the only candidates."""
    n = len(a)
    need = policy.limit("profile", "min_support_hours") * 60
    if n != len(b) or n * minutes < need:
        return
    pts = Counter(zip(a, b, strict=True))
    if len(pts) < 3:
        return
    big = max(max(map(abs, a)), max(map(abs, b))) >= 1 << 30  # products beyond int64: exact ints
    dtype = object if big else np.int64
    xs = np.array([p[0] for p in pts], dtype=dtype)
    ys = np.array([p[1] for p in pts], dtype=dtype)
    counts = np.array(list(pts.values()), dtype=np.int64)
    k = min(len(pts), -(-need // minutes) + 1)
    for i in range(k):
        for j in range(i + 1, k):
            dx, dy = xs[j] - xs[i], ys[j] - ys[i]
            on = int(counts[(dx * (ys - ys[i]) - dy * (xs - xs[i])) == 0].sum())
            off = (n - on) * minutes
            if 0 < off < need:
                raise PolicyViolation(
                    SW.WRONG_DATA,
                    f"{name} together isolate {off / 60:g} hours from the energy, the policy needs at least {need // 60}",
                )
