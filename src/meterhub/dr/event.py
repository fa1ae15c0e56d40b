"""The compact signed DR event and the baseline algebra (CAISO 10-in-10, PJM High 4 of 5).

An OpenADR 2.0b ``oadrEvent`` (OpenADR 2.0b Profile Specification §8.1, EiEvent)
is signed by the VTN with an XML signature the VEN checks; a secure element cannot
canonicalise XML, so the VTN also signs a *compact event record*
(:class:`DREvent`, docs/formats.md "DR event record") derived field by field from the
OpenADR event, with the same P-256 key. The VEN hands the record to the hub's
demand-response applet, which verifies it against the VTN key pinned at install.

Baselines (docs/demand-response.md, with the sources and which parameters were checked
against them): CAISO "10 in 10" with the load point (day-of) adjustment — CAISO Business
Practice Manual for Metering, "Performance Evaluation Methodologies" (Customer Load
Baseline), CAISO Tariff §4.13.4; 10 days and the ±20 % cap confirmed by CAISO's *Draft
Baseline Accuracy Work Group Proposal* (4 April 2017) §1 — and PJM "High 4 of 5"
(weekends "High 2 of 3") with the Symmetric Additive Adjustment, PJM Manual 11, Section
10 (Customer Baseline Load) (:func:`pjm_coefficients`, :func:`pjm_selection_bounds`).

CAISO: ``N`` similar non-event days ``D`` (named in the signed record, chosen by
the VTN from its public event calendar), event intervals ``E`` and adjustment
intervals ``W`` (the three hours ending one hour before the event) of the event day
``e``. With ``X = sum_{d in D, j in W} m_dj``, ``A = sum_{j in W} m_ej``:

* adjustment factor in permille ``a = 1200`` if ``1000 N A >= 1200 X``, else
  ``clamp(floor(1000 N A / X), 800, 1200)`` (cap of ±20 %);
* scaled reduction ``S = a * sum_{d in D, j in E} m_dj - 1000 N * sum_{j in E} m_ej``,
  reduction in Wh ``S / (1000 N)``.

``S`` is linear in the committed readings once ``a`` and ``D`` are public, so the
utility forms its commitment from the meter's; ``a`` is shown correct by range
proofs on ``1000 N A - a X`` (when ``a > 800``) and ``(a+1) X - 1000 N A - 1``
(when ``a < 1200``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ..crypto import ecdsa
from ..errors import MeterhubError
from ..model.timebase import day_starts, local_day_of

__all__ = [
    "ADJ_CAP_HIGH",
    "ADJ_CAP_LOW",
    "METHOD_CAISO",
    "METHOD_PJM",
    "pjm_coefficients",
    "pjm_excluded",
    "pjm_selection_bounds",
    "DREvent",
    "EventError",
    "SIGNAL_LOAD_SHED",
    "SIGNAL_PRICE",
    "adjustment_factor",
    "event_windows",
    "sign_event",
    "similar_days",
]

EVENT_VERSION = 1
EVENT_DST = b"meterhub/v1/dr-event\0"
DIGEST_DST = b"meterhub/v1/dr-event-digest\0"
SIGNAL_LOAD_SHED = 1  # OpenADR SIMPLE signal (levels 0..3)
SIGNAL_PRICE = 2  # OpenADR ELECTRICITY_PRICE, price in 1e-8 EUR per Wh
METHOD_CAISO = 0  # CAISO 10-in-10 (weekends 4-in-4) with the capped load point adjustment
METHOD_PJM = 1  # PJM High 4 of 5 (weekends High 2 of 3) with the symmetric additive adjustment
METHODS = (METHOD_CAISO, METHOD_PJM)
ADJ_CAP_LOW, ADJ_CAP_HIGH = 800, 1200  # permille, CAISO's ±20 % cap
ADJ_HOURS, ADJ_GAP_HOURS = 3, 1  # adjustment window: 3 h, ending 1 h before the event (both methods)
MAX_BASELINE_DAYS = 10  # CAISO weekdays: 10 in 10
MIN_BASELINE_DAYS = 5  # CAISO weekdays: at least 5 of the 10
WEEKEND_BASELINE_DAYS = 4  # CAISO weekends: 4 in 4 (meterhub requires all 4)
PJM_CANDIDATES = {False: 5, True: 3}  # PJM: 5 weekdays (High 4 of 5), 3 same weekend days (High 2 of 3)
LOOKBACK_DAYS = 45
_HEAD = struct.Struct(">BBIQHBqQB")


class EventError(MeterhubError, ValueError):
    """A malformed, unsigned or inconsistent event record."""


def _text(b: bytes, pos: int) -> tuple[str, int]:
    if pos + 1 > len(b):
        raise EventError("truncated")
    n = b[pos]
    raw = b[pos + 1 : pos + 1 + n]
    if len(raw) != n:
        raise EventError("truncated")
    try:
        return raw.decode(), pos + 1 + n
    except UnicodeDecodeError:
        raise EventError("bad text") from None


def _put_text(s: str) -> bytes:
    raw = s.encode()
    if len(raw) > 255:
        raise EventError("text longer than 255 bytes")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class DREvent:
    """One event as the VTN signed it (docs/formats.md, "DR event record").

    ``start`` is aware UTC, ``duration_minutes`` the event length, ``signal`` load shed
    (``level`` 0..3) or price (``level`` the incentive in 1e-8 EUR per Wh reduced),
    ``price`` the payment per Wh reduced (1e-8 EUR), ``targets`` the VEN/meter ids the
    event is for (``*`` for all), ``baseline_days`` the similar non-event days (CAISO:
    the baseline days; PJM: the candidate days, of which the hub drops the lowest),
    ``method`` the baseline method (:data:`METHOD_CAISO` or :data:`METHOD_PJM`, the
    record's former reserved byte, so CAISO records are unchanged)."""

    event_id: str
    modification: int
    program: str
    created: datetime
    start: datetime
    duration_minutes: int
    signal: int
    level: int
    price: int
    targets: tuple[str, ...]
    baseline_days: tuple[date, ...]
    signature: bytes = b""
    method: int = METHOD_CAISO

    def body(self) -> bytes:
        """Everything but the signature (the signed bytes, after the DST)."""
        if self.signal not in (SIGNAL_LOAD_SHED, SIGNAL_PRICE):
            raise EventError("unknown signal type")
        if self.method not in METHODS:
            raise EventError("unknown baseline method")
        if not 0 < self.duration_minutes < 24 * 60:
            raise EventError("duration out of range")
        if not 0 <= self.price < 1 << 63 or not 0 <= self.modification < 1 << 32:
            raise EventError("price or modification out of range")
        if len(self.targets) > 255 or len(self.baseline_days) > 255:
            raise EventError("too many targets or days")
        out = _HEAD.pack(
            EVENT_VERSION, self.signal, self.modification, int(self.start.timestamp()), self.duration_minutes,
            self.method, self.level, self.price, len(self.targets),
        )
        out += _put_text(self.event_id) + _put_text(self.program)
        out += struct.pack(">Q", int(self.created.timestamp()))
        out += b"".join(_put_text(t) for t in self.targets)
        out += bytes([len(self.baseline_days)])
        out += b"".join(struct.pack(">HBB", d.year, d.month, d.day) for d in self.baseline_days)
        return out

    def to_bytes(self) -> bytes:
        body = self.body()
        return struct.pack(">H", len(body)) + body + self.signature

    @classmethod
    def from_bytes(cls, raw: bytes) -> DREvent:
        """Strict parse; raises :class:`EventError`."""
        raw = bytes(raw)
        if len(raw) < 2 + _HEAD.size:
            raise EventError("event record too short")
        (blen,) = struct.unpack(">H", raw[:2])
        body, sig = raw[2 : 2 + blen], raw[2 + blen :]
        if len(body) != blen or len(body) < _HEAD.size:
            raise EventError("event record truncated")
        ver, signal, mod, start, dur, method, level, price, nt = _HEAD.unpack(body[: _HEAD.size])
        if ver != EVENT_VERSION:
            raise EventError("another event record version")
        pos = _HEAD.size
        event_id, pos = _text(body, pos)
        program, pos = _text(body, pos)
        if pos + 8 > len(body):
            raise EventError("truncated")
        (created,) = struct.unpack(">Q", body[pos : pos + 8])
        pos += 8
        targets = []
        for _ in range(nt):
            t, pos = _text(body, pos)
            targets.append(t)
        if pos >= len(body):
            raise EventError("truncated")
        nd = body[pos]
        pos += 1
        if len(body) != pos + 4 * nd:
            raise EventError("baseline days do not fill the record")
        days = []
        try:
            for k in range(nd):
                y, m, d = struct.unpack(">HBB", body[pos + 4 * k : pos + 4 * k + 4])
                days.append(date(y, m, d))
            ev = cls(
                event_id, mod, program, datetime.fromtimestamp(created, UTC), datetime.fromtimestamp(start, UTC),
                dur, signal, level, price, tuple(targets), tuple(days), sig, method,
            )
        except (ValueError, OverflowError, OSError):
            raise EventError("bad date or time") from None
        if ev.body() != body:
            raise EventError("non-canonical event record")
        if not event_id:
            raise EventError("empty event id")
        return ev

    def digest(self) -> bytes:
        return hashlib.sha256(DIGEST_DST + self.body()).digest()

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.duration_minutes)

    def verify(self, vtn_key: bytes) -> bool:
        """ECDSA P-256 over ``DST || body`` under the pinned VTN key (SEC 1 point)."""
        try:
            key = ecdsa.load_verifying_key(vtn_key)
        except ValueError:
            return False
        return bool(self.signature) and ecdsa.verify(key, EVENT_DST + self.body(), self.signature)

    def targets_meter(self, meter_id: str) -> bool:
        return "*" in self.targets or meter_id in self.targets


def sign_event(ev: DREvent, key: ecdsa.SigningKey) -> DREvent:
    from dataclasses import replace

    return replace(ev, signature=ecdsa.sign(key, EVENT_DST + ev.body()))


def event_windows(ev: DREvent, tz: str, interval: int) -> tuple[date, list[int], list[int]]:
    """``(event day, event interval positions, adjustment interval positions)`` in the
    local day's grid; raises :class:`EventError` if the event is off the grid, does not
    cover whole local hours, spans two local days, or its adjustment window starts
    before local midnight."""
    day = local_day_of(ev.start, tz)
    starts = day_starts(day, tz, interval)
    step = timedelta(minutes=interval)
    try:
        first = starts.index(ev.start)
    except ValueError:
        raise EventError("event start is not on the meter's interval grid") from None
    if ev.duration_minutes % interval:
        raise EventError("event duration is not a whole number of intervals")
    n = ev.duration_minutes // interval
    if (first * interval) % 60 or ev.duration_minutes % 60:
        # Nothing finer than one hour leaves the hub (docs/privacy.md, hard limits): a
        # quarter-hour window would release single readings against their baselines.
        raise EventError("an event covers whole local hours")
    if first + n > len(starts) or starts[first + n - 1] + step != ev.end:
        raise EventError("event spans two local days or a clock change")
    per_hour = 60 // interval
    w_first = first - (ADJ_HOURS + ADJ_GAP_HOURS) * per_hour
    if w_first < 0:
        raise EventError("adjustment window starts before local midnight")
    if len(starts) != 24 * per_hour:
        raise EventError("events on clock-change days are not supported")
    return day, list(range(first, first + n)), list(range(w_first, w_first + ADJ_HOURS * per_hour))


def similar_days(
    event_day: date, calendar: set[date], holidays: set[date], tz: str, *, have_from: date | None = None,
    method: int = METHOD_CAISO,
) -> list[date]:
    """The baseline (CAISO) or candidate (PJM) days of an event on ``event_day``, most
    recent first, within the 45-day lookback, skipping event days (``calendar``),
    clock-change days and days before ``have_from``:

    * CAISO: the last 10 weekdays that are not holidays for a weekday event, the last 4
      weekend days for a weekend event;
    * PJM: the last 5 weekdays that are not holidays for a weekday event, the last 3
      days of the same weekday (Saturdays or Sundays) for a weekend event.

    Fewer are returned when the lookback runs out; the caller decides whether enough are
    left (:func:`check_baseline_days`)."""
    from ..model.timebase import intervals_per_day

    weekend = event_day.weekday() >= 5
    if method == METHOD_PJM:
        want = PJM_CANDIDATES[weekend]
    else:
        want = WEEKEND_BASELINE_DAYS if weekend else MAX_BASELINE_DAYS
    out: list[date] = []
    d = event_day - timedelta(days=1)
    while len(out) < want and (event_day - d).days <= LOOKBACK_DAYS:
        if have_from is not None and d < have_from:
            break
        similar = (d.weekday() >= 5) == weekend and (weekend or d not in holidays)
        if method == METHOD_PJM and weekend:
            similar = d.weekday() == event_day.weekday()
        if similar and d not in calendar and intervals_per_day(d, tz, 60) == 24:
            out.append(d)
        d -= timedelta(days=1)
    return out


def check_baseline_days(ev: DREvent, event_day: date) -> None:
    """What the applet checks of the signed day set itself (the VTN chose it): the count
    the method needs, distinct days of the event day's kind within the lookback."""
    days = ev.baseline_days
    weekend = event_day.weekday() >= 5
    if ev.method == METHOD_PJM:
        if len(days) != PJM_CANDIDATES[weekend]:
            raise EventError(f"PJM needs {PJM_CANDIDATES[weekend]} candidate days")
        if weekend and any(d.weekday() != event_day.weekday() for d in days):
            raise EventError("PJM weekend candidates are the event's weekday")
    elif weekend:
        if len(days) != WEEKEND_BASELINE_DAYS:
            raise EventError("a weekend event needs 4 baseline days")
    elif not MIN_BASELINE_DAYS <= len(days) <= MAX_BASELINE_DAYS:
        raise EventError("need 5 to 10 baseline days")
    if len(set(days)) != len(days) or any(not 0 < (event_day - d).days <= LOOKBACK_DAYS for d in days):
        raise EventError("baseline days must be distinct and within 45 days before the event")
    if any((d.weekday() >= 5) != weekend for d in days):
        raise EventError("baseline days are not of the event day's kind")


def pjm_excluded(totals: list[int], days: tuple[date, ...]) -> int:
    """PJM High X of Y: the index of the candidate day dropped, the one with the lowest
    event-window usage; among equal lowest, the most recent (meterhub's tie rule, so
    that the choice is unique and provable: :func:`pjm_selection_bounds`)."""
    if len(totals) != len(days) or not totals:
        raise EventError("one total per candidate day")
    low = min(totals)
    return max((k for k, t in enumerate(totals) if t == low), key=lambda k: days[k])


def pjm_selection_bounds(excluded: int, days: tuple[date, ...]) -> list[tuple[int, int]]:
    """The values ``U_k - U_excluded + c >= 0`` that prove the dropped day's usage over
    the event window was the lowest: ``(k, c)`` for every other candidate, ``c = -1``
    (strictly higher) for days more recent than the dropped one, ``0`` for older ones."""
    if not 0 <= excluded < len(days):
        raise EventError("excluded candidate out of range")
    return [(k, -1 if days[k] > days[excluded] else 0) for k in range(len(days)) if k != excluded]


def pjm_coefficients(n_sel: int, e_len: int, w_len: int) -> tuple[int, int, int, int, int]:
    """PJM's CBL with the symmetric additive adjustment, scaled to integers:
    ``(k_B, k_A, k_X, k_E, denominator)`` with ``S = k_B B + k_A A + k_X X + k_E E``
    and reduction ``S / denominator`` Wh, where over the ``n_sel`` selected days
    ``B = sum_{D,E} m``, ``X = sum_{D,W} m``, and on the event day ``A = sum_W m``,
    ``E = sum_E m``. Per interval ``cbl_j = B_j / n + (A - X / n) / |W|``, so
    ``sum_E (cbl_j - m_j) = B / n + |E| (A - X / n) / |W| - E``; times ``n |W|``."""
    return w_len, n_sel * e_len, -e_len, -n_sel * w_len, n_sel * w_len


def adjustment_factor(n_days: int, a_sum: int, x_sum: int) -> int:
    """The capped load point adjustment in permille (module docstring)."""
    if 1000 * n_days * a_sum >= ADJ_CAP_HIGH * x_sum:
        return ADJ_CAP_HIGH
    return max(ADJ_CAP_LOW, min(ADJ_CAP_HIGH, (1000 * n_days * a_sum) // x_sum))
