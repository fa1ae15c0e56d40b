"""Signed time series: the grid price index (and, through :mod:`.profiles`, reference load profiles).

A *series* is an integer value per fixed interval from a UTC start, published as
JSON and signed with ECDSA P-256 exactly like a tariff (docs/tariffs.md): the
signature covers a domain-separation prefix and the canonical JSON of the
parsed object, and the signature block names the key by its id (SHA-256 of the
SEC 1 point, :func:`meterhub.tariffs.key_id`). Two kinds share the format:

* ``price-index``: the indexed value of electricity per interval (a day-ahead
  price), in ``1/scale`` currency units per Wh; negative prices are allowed,
  as on the day-ahead market. Default scale 10^8, i.e. 0.01 EUR/MWh, the
  EPEX SPOT day-ahead price tick. Settlement releases ``V = sum index_i*m_i``.
* ``load-profile``: non-negative weights of a reference shape (BDEW SLP or one
  the utility defines), see :mod:`meterhub.tariffs.profiles`.

Every document carries a ``version`` (a hub refuses an older one) and an
``expires`` date (the first day on which it may no longer be accepted). The file
layout, canonical encoding and messages are in docs/formats.md ("Signed series").
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ..crypto import ecdsa
from ..errors import MeterhubError
from ..model import strictjson
from ..model.demo_keys import INDEX_PUBLISHER, demo_signing_key
from .model import canonical_json
from .signing import SIGNATURE_ALGORITHM, key_id

__all__ = [
    "FORMAT",
    "KIND_PRICE_INDEX",
    "KIND_LOAD_PROFILE",
    "SERIES_DIGEST_CONTEXT",
    "Series",
    "SeriesError",
    "SignedSeries",
    "demo_index_publisher_key",
    "dump_series",
    "example_price_index",
    "index_from_csv",
    "load_series",
    "series_signing_message",
    "sign_series",
    "verify_series",
]

FORMAT = "meterhub-series/1"
KIND_PRICE_INDEX = "price-index"
KIND_LOAD_PROFILE = "load-profile"
# Domain separation: one signing context per kind, one digest context.
_SIGNING_CONTEXT = {
    KIND_PRICE_INDEX: b"meterhub/v1/price-index\x00",
    KIND_LOAD_PROFILE: b"meterhub/v1/load-profile\x00",
}
SERIES_DIGEST_CONTEXT = b"meterhub/v1/series-digest\x00"
MAX_FILE_BYTES = 1 << 20
MAX_VALUES = 40_000  # more than a year of hours, a quarter of 15-minute values
MAX_ABS_VALUE = 1 << 40
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_FIELDS = {
    "format", "kind", "series_id", "version", "publisher", "start", "interval_minutes",
    "unit", "scale", "expires", "values",
}


class SeriesError(MeterhubError, ValueError):
    """A malformed, unsigned, expired or mismatching series; the message says which."""


def _name(where: str, v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.fullmatch(v):
        raise SeriesError(f"{where}: {v!r:.60} is not a valid name")
    return v


def _int(where: str, v: Any, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise SeriesError(f"{where}: expected an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise SeriesError(f"{where}: {v} is outside {lo}..{hi}")
    return v


def _check_values(values: tuple[Any, ...], lo: int, hi: int) -> None:
    """Every value an integer (not a bool) in ``lo..hi``; raises :class:`SeriesError`
    naming the first bad one, as :func:`_int` on each in turn. The common case (plain
    ``int`` values in range) is decided by C-level passes (``map``, ``min``, ``max``):
    a profile has up to 40,000 values and is parsed on every card that installs it."""
    if values and set(map(type, values)) == {int} and lo <= min(values) and max(values) <= hi:
        return
    for k, v in enumerate(values):
        _int(f"values[{k}]", v, lo, hi)


@dataclass(frozen=True)
class Series:
    """One integer value per interval from ``start`` (aware UTC, on the minute grid)."""

    kind: str
    series_id: str
    version: int
    publisher: str
    start: datetime
    interval_minutes: int
    unit: str
    scale: int
    expires: date
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in _SIGNING_CONTEXT:
            raise SeriesError(f"kind: unsupported series kind {self.kind!r:.40}")
        _name("series_id", self.series_id)
        _name("publisher", self.publisher)
        _name("unit", self.unit.replace("/", "-") if isinstance(self.unit, str) else self.unit)
        _int("version", self.version, 1, (1 << 53) - 1)
        _int("scale", self.scale, 1, 10**12)
        _int("interval_minutes", self.interval_minutes, 1, 1440)
        if 60 % self.interval_minutes and self.interval_minutes % 60:
            raise SeriesError("interval_minutes must divide an hour or be whole hours")
        if not isinstance(self.start, datetime) or self.start.utcoffset() != timedelta(0):
            raise SeriesError("start must be an aware UTC datetime")
        if self.start.second or self.start.microsecond or self.start.minute % min(self.interval_minutes, 60):
            raise SeriesError("start is not on the interval grid")
        if not isinstance(self.expires, date) or isinstance(self.expires, datetime):
            raise SeriesError("expires must be a date")
        if not isinstance(self.values, tuple) or not 1 <= len(self.values) <= MAX_VALUES:
            raise SeriesError(f"values: expected 1..{MAX_VALUES} integers")
        lo = 0 if self.kind == KIND_LOAD_PROFILE else -MAX_ABS_VALUE
        _check_values(self.values, lo, MAX_ABS_VALUE)

    @property
    def end(self) -> datetime:
        """The end of the last interval (exclusive)."""
        return self.start + timedelta(minutes=self.interval_minutes * len(self.values))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "series_id": self.series_id,
            "version": self.version,
            "publisher": self.publisher,
            "start": self.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "interval_minutes": self.interval_minutes,
            "unit": self.unit,
            "scale": self.scale,
            "expires": self.expires.isoformat(),
            "values": list(self.values),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Series:
        """Strict parse of the ``series`` object; raises :class:`SeriesError`."""
        if not isinstance(d, dict):
            raise SeriesError("series: expected an object")
        unknown = set(d) - _FIELDS
        if unknown:
            raise SeriesError(f"series: unknown field {sorted(unknown)[0]!r:.40}")
        missing = _FIELDS - set(d)
        if missing:
            raise SeriesError(f"series: missing field {sorted(missing)[0]!r}")
        if d["format"] != FORMAT:
            raise SeriesError(f"format: unsupported {d['format']!r:.40} (expected {FORMAT!r})")
        for f in ("kind", "start", "unit", "expires"):
            if not isinstance(d[f], str):
                raise SeriesError(f"{f}: expected a string")
        try:
            start = datetime.strptime(d["start"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise SeriesError(f"start: {d['start']!r:.40} is not a UTC time YYYY-MM-DDTHH:MM:SSZ") from None
        try:
            expires = date.fromisoformat(d["expires"])
        except ValueError:
            raise SeriesError(f"expires: {d['expires']!r:.40} is not a date") from None
        if len(d["expires"]) != 10:
            raise SeriesError("expires: expected YYYY-MM-DD")
        if not isinstance(d["values"], list):
            raise SeriesError("values: expected a list")
        return cls(
            kind=d["kind"],
            series_id=d["series_id"],
            version=d["version"],
            publisher=d["publisher"],
            start=start,
            interval_minutes=d["interval_minutes"],
            unit=d["unit"],
            scale=d["scale"],
            expires=expires,
            values=tuple(d["values"]),
        )

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def digest(self) -> bytes:
        """SHA-256 over a digest DST and the canonical encoding (quoted by applet outputs)."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> bytes:
        # The series is frozen (values a tuple): its digest is computed once, not per
        # statement that quotes it (every score statement quotes 12 profiles).
        return hashlib.sha256(SERIES_DIGEST_CONTEXT + self.canonical_bytes()).digest()

    def check_not_expired(self, today: date) -> None:
        if today >= self.expires:
            raise SeriesError(
                f"{self.kind} {self.series_id} v{self.version} expired on {self.expires} (today is {today})"
            )

    def values_for(self, starts: list[datetime], interval_minutes: int) -> list[int]:
        """The value of the series interval containing each meter interval ``[s, s+interval)``.

        The meter interval must lie inside one series interval (the series interval is a
        multiple of the meter's) and inside the series; raises :class:`SeriesError`.
        """
        key = (tuple(starts), interval_minutes)
        memo = self._values_memo
        hit = memo.get(key)
        if hit is not None:
            return list(hit)
        out = self._values_for(starts, interval_minutes)
        if len(memo) >= 1024:  # bounded: a month of days for a few time zones
            memo.clear()
        memo[key] = tuple(out)
        return out

    @functools.cached_property
    def _values_memo(self) -> dict[tuple[tuple[datetime, ...], int], tuple[int, ...]]:
        # Every customer of a time zone prices the same days: look each day up once.
        return {}

    def _values_for(self, starts: list[datetime], interval_minutes: int) -> list[int]:
        step = self.interval_minutes * 60
        if self.interval_minutes % interval_minutes:
            raise SeriesError(
                f"{self.series_id}: {self.interval_minutes}-minute values cannot price "
                f"{interval_minutes}-minute intervals"
            )
        t0 = self.start.timestamp()
        n = len(self.values)
        out: list[int] = []
        vals = self.values
        for s in starts:
            off = s.timestamp() - t0
            j = int(off // step)
            if off < 0 or j >= n or off % (interval_minutes * 60):
                raise SeriesError(f"{self.series_id} v{self.version} does not cover the interval at {s.isoformat()}")
            out.append(vals[j])
        return out

    def covers(self, first: datetime, end: datetime) -> bool:
        return self.start <= first and end <= self.end


@dataclass(frozen=True)
class SignedSeries:
    """A series with its publisher's signature (64-byte ``r || s``); not yet verified."""

    series: Series
    key_id: str
    signature: bytes


def series_signing_message(series: Series) -> bytes:
    """``DST(kind) || canonical JSON``: what the publisher signs."""
    return _SIGNING_CONTEXT[series.kind] + series.canonical_bytes()


def _verifying(key: Any) -> ecdsa.VerifyingKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.public_key()
    if isinstance(key, (bytes, bytearray)):
        try:
            return ecdsa.load_verifying_key(bytes(key))
        except ValueError:
            raise SeriesError("publisher key is not a valid P-256 point") from None
    return key


def sign_series(series: Series, key: ecdsa.SigningKey) -> SignedSeries:
    return SignedSeries(series, key_id(key), ecdsa.sign(key, series_signing_message(series)))


def verify_series(
    signed: SignedSeries, publisher_key: Any, *, kind: str | None = None, on: date | None = None
) -> Series:
    """The series if ``publisher_key`` signed it (and, optionally, it is of ``kind`` and
    not expired ``on`` a day); raises :class:`SeriesError` otherwise."""
    if not isinstance(signed, SignedSeries):
        raise SeriesError("not a signed series")
    s = signed.series
    if kind is not None and s.kind != kind:
        raise SeriesError(f"expected a {kind}, got a {s.kind}")
    pub = _verifying(publisher_key)
    if signed.key_id != key_id(pub):
        raise SeriesError(f"{s.kind} {s.series_id} is signed by another key ({signed.key_id[:16]}...)")
    if not ecdsa.verify(pub, series_signing_message(s), bytes(signed.signature), low_s=True):
        raise SeriesError(f"{s.kind} {s.series_id} v{s.version}: signature does not verify")
    if on is not None:
        s.check_not_expired(on)
    return s


def load_series(data: bytes | str) -> SignedSeries:
    """Strictly parse a signed series file (bytes or path); does not verify the signature.

    An unsigned document (no ``signature`` block) is refused here already."""
    if isinstance(data, str):
        with open(data, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    if not isinstance(data, (bytes, bytearray)):
        raise SeriesError("expected bytes or a path")
    if len(data) > MAX_FILE_BYTES:
        raise SeriesError("series file too large")
    try:  # the shared strict reader (docs/verification.md, V03)
        doc = strictjson.loads(data, "series file", max_bytes=MAX_FILE_BYTES)
    except strictjson.StrictJSONError as exc:
        raise SeriesError(f"malformed JSON: {str(exc)[:100]}") from None
    if not isinstance(doc, dict):
        raise SeriesError("series file: expected an object")
    if "signature" not in doc:
        raise SeriesError("unsigned series: the file has no signature block")
    if set(doc) != {"series", "signature"}:
        raise SeriesError(f"series file: fields must be series and signature, got {sorted(doc)!r:.60}")
    sig = doc["signature"]
    if not isinstance(sig, dict) or set(sig) != {"algorithm", "key_id", "value"}:
        raise SeriesError("signature: expected algorithm, key_id and value")
    if sig["algorithm"] != SIGNATURE_ALGORITHM:
        raise SeriesError(f"signature.algorithm: unsupported {sig['algorithm']!r:.40}")
    if not isinstance(sig["key_id"], str) or not _HEX64.fullmatch(sig["key_id"]):
        raise SeriesError("signature.key_id: expected 64 lowercase hex digits")
    if not isinstance(sig["value"], str) or not _HEX128.fullmatch(sig["value"]):
        raise SeriesError("signature.value: expected 128 lowercase hex digits (r || s)")
    return SignedSeries(Series.from_dict(doc["series"]), sig["key_id"], bytes.fromhex(sig["value"]))


def dump_series(signed: SignedSeries, *, compact: bool = True) -> bytes:
    """The file form (compact JSON by default: series travel to hubs in STORE DATA blocks)."""
    doc = {
        "series": signed.series.to_dict(),
        "signature": {
            "algorithm": SIGNATURE_ALGORITHM,
            "key_id": signed.key_id,
            "value": bytes(signed.signature).hex(),
        },
    }
    if compact:
        return canonical_json(doc)
    return (json.dumps(doc, indent=1) + "\n").encode()


# ---------------------------------------------------------------- examples


def demo_index_publisher_key() -> ecdsa.SigningKey:
    """A PUBLICLY KNOWN P-256 key for the demo index publisher (derived from a public string)."""
    return demo_signing_key(INDEX_PUBLISHER)


def example_price_index(
    start: date,
    days: int,
    *,
    tz: str = "Europe/Berlin",
    interval_minutes: int = 15,
    seed: int = 2027,
    version: int = 1,
    series_id: str = "de-lu-day-ahead",
    expires: date | None = None,
) -> Series:
    """A realistic synthetic German day-ahead price curve (0.01 EUR/MWh ticks, signed ints).

    Shape after the 2023-2025 EPEX SPOT DE-LU day-ahead market: a base near 85 EUR/MWh,
    morning and evening peaks on working days, a midday solar trough that deepens in
    spring and summer and turns negative on sunny weekends, lower weekend levels, and a
    day-level weather factor (wind) drawn from ``seed``. Deterministic in its inputs.
    """
    import random
    from zoneinfo import ZoneInfo

    from ..model.holidays import german_holidays

    zone = ZoneInfo(tz)
    rng = random.Random(seed * 1_000_003 + start.toordinal())
    t0 = datetime(start.year, start.month, start.day, tzinfo=zone).astimezone(UTC)
    t1 = datetime.combine(start + timedelta(days=days), datetime.min.time(), zone).astimezone(UTC)
    n = int((t1 - t0).total_seconds() // (interval_minutes * 60))
    values: list[int] = []
    day_factor: dict[date, tuple[float, float]] = {}
    for k in range(n):
        local = (t0 + timedelta(minutes=interval_minutes * k)).astimezone(zone)
        d = local.date()
        if d not in day_factor:
            day_factor[d] = (rng.gauss(1.0, 0.18), max(0.0, rng.gauss(1.0, 0.5)))  # wind, sun
        wind, sun = day_factor[d]
        h = local.hour + local.minute / 60
        rest = d.weekday() >= 5 or d in german_holidays(d.year)
        season = 0.5 + 0.5 * math.cos(2 * math.pi * (d.timetuple().tm_yday - 172) / 365.25)  # 1 in June
        price = 85.0 * (0.8 if rest else 1.0) / max(wind, 0.4)
        if not rest:
            price += 35 * math.exp(-((h - 8.0) ** 2) / 2.0)
        price += 55 * math.exp(-((h - 19.0) ** 2) / 3.0)
        price -= 110 * season * sun * math.exp(-((h - 13.0) ** 2) / 6.0)
        price -= 20 * math.exp(-((h - 3.5) ** 2) / 4.0)
        price += rng.gauss(0, 4.0)
        values.append(round(price * 100))  # 0.01 EUR/MWh = 1e-8 EUR/Wh
    return Series(
        kind=KIND_PRICE_INDEX,
        series_id=series_id,
        version=version,
        publisher="demo-index-publisher",
        start=t0,
        interval_minutes=interval_minutes,
        unit="EUR/Wh",
        scale=100_000_000,
        expires=expires or (start + timedelta(days=days + 62)),
        values=tuple(values),
    )


def index_from_csv(
    text: str,
    *,
    series_id: str,
    version: int,
    publisher: str = "csv-import",
    expires: date | None = None,
) -> Series:
    """Import a price index from CSV lines ``start_utc,price_eur_per_mwh`` (ISO 8601 times,
    header optional, e.g. an ENTSO-E transparency or EPEX export); prices are rounded to the
    0.01 EUR/MWh tick. The rows must be contiguous on one interval."""
    rows: list[tuple[datetime, int]] = []
    for ln, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
            raise SeriesError(f"line {ln}: expected start,price")
        try:
            t = datetime.fromisoformat(parts[0].replace("Z", "+00:00"))
            p = float(parts[1])
        except ValueError:
            if not rows and ln == 1:
                continue  # a header
            raise SeriesError(f"line {ln}: cannot parse {line[:60]!r}") from None
        if t.tzinfo is None or not math.isfinite(p):
            raise SeriesError(f"line {ln}: time must carry an offset and the price be finite")
        rows.append((t.astimezone(UTC), round(p * 100)))
    if len(rows) < 2:
        raise SeriesError("need at least two rows")
    step = rows[1][0] - rows[0][0]
    minutes = int(step.total_seconds() // 60)
    for k in range(1, len(rows)):
        if rows[k][0] - rows[k - 1][0] != step:
            raise SeriesError(f"row {k + 1}: not contiguous with the previous row")
    end = rows[-1][0] + step
    return Series(
        kind=KIND_PRICE_INDEX,
        series_id=series_id,
        version=version,
        publisher=publisher,
        start=rows[0][0],
        interval_minutes=minutes,
        unit="EUR/Wh",
        scale=100_000_000,
        expires=expires or (end.date() + timedelta(days=62)),
        values=tuple(v for _, v in rows),
    )
