"""Meter exchange: an operator-signed registration continues a metering point.

When the metering point operator (Messstellenbetreiber) replaces a meter, the
new meter (new id, new key) must not be trusted on first use. The operator
signs a **registration record** (``meterhub/meter-registration-record/v1``):

```json
{"format": "meterhub/meter-registration-record/v1", "meter_id": "m1-b",
 "public_key": "04…", "tz": "Europe/Berlin", "interval_minutes": 15,
 "metering_point": "51238696781", "valid_from": "2027-06-15",
 "register_start_wh": 0,
 "replaces": {"meter_id": "m1", "last_day": "2027-06-14", "final_register_wh": 123456}}
```

(``replaces`` is ``null`` for a first installation). The signature is ECDSA
P-256/SHA-256 over ``"meterhub/v1/meter-registration-record\\0" || canonical
JSON`` (sorted keys, no whitespace), 64-byte ``r || s`` hex, low-S. The utility
registers the meter only under a record that verifies with the pinned operator
key, and checks the readings against it: the new meter's first signed register
is ``register_start_wh`` and the old meter's last (``last_day``) is
``final_register_wh`` (version-2 batches). A period spanning the exchange is
billed from both meters' commitments: :func:`meter_segments` splits it by
meter, each part verified against its own meter's key and chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..crypto import ecdsa
from ..model import strictjson
from ..model.errors import FormatError
from ..model.ids import check_metering_point

__all__ = [
    "RegistrationRecord",
    "sign_registration",
    "verify_registration",
    "meter_segments",
    "register_signed",
    "check_exchange_registers",
]

RECORD_FORMAT = "meterhub/meter-registration-record/v1"
_DST = b"meterhub/v1/meter-registration-record\x00"
_FIELDS = {"format", "meter_id", "public_key", "tz", "interval_minutes", "metering_point", "valid_from",
           "register_start_wh", "replaces"}


@dataclass(frozen=True, slots=True)
class RegistrationRecord:
    meter_id: str
    public_key: bytes  # 65-byte SEC 1 P-256 point
    tz: str
    interval_minutes: int
    metering_point: str
    valid_from: date
    register_start_wh: int
    replaces: tuple[str, date, int] | None  # (old meter id, its last day, its final register)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT, "meter_id": self.meter_id, "public_key": self.public_key.hex(),
            "tz": self.tz, "interval_minutes": self.interval_minutes, "metering_point": self.metering_point,
            "valid_from": self.valid_from.isoformat(), "register_start_wh": self.register_start_wh,
            "replaces": None if self.replaces is None else {
                "meter_id": self.replaces[0], "last_day": self.replaces[1].isoformat(),
                "final_register_wh": self.replaces[2]},
        }

    def canonical(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def sign_registration(record: RegistrationRecord, operator_key: ecdsa.SigningKey) -> str:
    """The signed record as JSON ``{"record": {...}, "signature": "<128 hex>"}``."""
    sig = ecdsa.sign(operator_key, _DST + record.canonical())
    return json.dumps({"record": record.to_dict(), "signature": sig.hex()}, sort_keys=True)


def _nonneg(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 64:
        raise FormatError(f"registration record {what} must be an integer in [0, 2^64)")
    return v


def verify_registration(text: str | bytes, operator_key: ecdsa.VerifyingKey) -> RegistrationRecord:
    """Parse strictly and verify the operator's signature (low-S); a one-line
    :class:`FormatError` for anything else."""
    o = strictjson.loads(text, "registration record")
    if not isinstance(o, dict) or set(o) != {"record", "signature"}:
        raise FormatError("registration record needs exactly record and signature")
    r, sig = o["record"], strictjson.hex_bytes(o["signature"], "registration signature")
    if not isinstance(r, dict) or set(r) != _FIELDS or r["format"] != RECORD_FORMAT:
        raise FormatError(f"registration record must have exactly the fields of {RECORD_FORMAT}")
    for k in ("meter_id", "tz"):
        if not isinstance(r[k], str) or not 0 < len(r[k].encode()) < 256:
            raise FormatError(f"registration record {k} must be a non-empty string")
    key = strictjson.hex_bytes(r["public_key"], "registration public_key")
    try:
        ecdsa.load_verifying_key(key)
    except ValueError:
        raise FormatError("registration record public_key is not a P-256 point") from None
    rep = r["replaces"]
    replaces = None
    if rep is not None:
        if not isinstance(rep, dict) or set(rep) != {"meter_id", "last_day", "final_register_wh"}:
            raise FormatError("registration record replaces must be null or {meter_id, last_day, final_register_wh}")
        if not isinstance(rep["meter_id"], str) or not rep["meter_id"]:
            raise FormatError("registration record replaces.meter_id must be a non-empty string")
        replaces = (rep["meter_id"], strictjson.iso_date(rep["last_day"], "replaces.last_day"),
                    _nonneg(rep["final_register_wh"], "replaces.final_register_wh"))
    rec = RegistrationRecord(
        r["meter_id"], key, r["tz"], _nonneg(r["interval_minutes"], "interval_minutes"),
        check_metering_point(r["metering_point"]), strictjson.iso_date(r["valid_from"], "valid_from"),
        _nonneg(r["register_start_wh"], "register_start_wh"), replaces,
    )
    if replaces is not None and replaces[1] + timedelta(days=1) != rec.valid_from:
        raise FormatError("registration record: the old meter's last day must be the day before valid_from")
    if len(sig) != 64 or not ecdsa.verify(operator_key, _DST + rec.canonical(), sig, low_s=True):
        raise FormatError("registration record signature does not verify under the operator key")
    return rec


def meter_segments(
    period_from: date, period_to: date, records: list[RegistrationRecord], metering_point: str
) -> list[tuple[str, date, date]]:
    """``(meter id, first day, last day)`` for each meter of ``metering_point`` in the
    period, from its verified registration records (each meter until the day before
    its successor's ``valid_from``)."""
    mine = sorted((r for r in records if r.metering_point == metering_point), key=lambda r: r.valid_from)
    for prev, r in zip(mine, mine[1:], strict=False):
        if r.replaces is None or r.replaces[0] != prev.meter_id:
            raise ValueError(f"meter {r.meter_id} does not replace {prev.meter_id} at metering point {metering_point}")
    out = []
    for k, r in enumerate(mine):
        end = mine[k + 1].valid_from - timedelta(days=1) if k + 1 < len(mine) else period_to
        a, b = max(r.valid_from, period_from), min(end, period_to)
        if a <= b:
            out.append((r.meter_id, a, b))
    covered = sum((b - a).days + 1 for _, a, b in out)
    if covered != (period_to - period_from).days + 1:
        raise ValueError(f"metering point {metering_point} has no registered meter on some day of the period")
    return out


def register_signed(store: Any, text: str | bytes, operator_key: ecdsa.VerifyingKey, **kw: Any) -> RegistrationRecord:
    """Register a meter in the utility's store only under a record the operator signed
    (no first-use trust); ``kw`` as :meth:`UtilityStore.register_meter` (the tariff)."""
    rec = verify_registration(text, operator_key)
    store.register_meter(rec.meter_id, rec.public_key, rec.tz, rec.interval_minutes, **kw)
    return rec


def check_exchange_registers(store: Any, rec: RegistrationRecord) -> str:
    """The meters' own signed registers agree with the record: the new meter's first day
    starts at ``register_start_wh`` and the old meter's ``last_day`` ends at
    ``final_register_wh`` (when those days are stored with version-2 batches). Empty
    when they agree or are not stored yet; else the reason."""
    new = store.day_commitments(rec.meter_id, rec.valid_from, rec.valid_from)
    if new and new[0].batch.batch.register_start_wh not in (None, rec.register_start_wh):
        return (f"meter {rec.meter_id} starts at {new[0].batch.batch.register_start_wh} Wh on {rec.valid_from}, "
                f"the operator registered {rec.register_start_wh} Wh")
    if rec.replaces is not None:
        old_id, last, final = rec.replaces
        old = store.day_commitments(old_id, last, last)
        if old and old[0].batch.batch.register_end_wh not in (None, final):
            return (f"meter {old_id} ends at {old[0].batch.batch.register_end_wh} Wh on {last}, "
                    f"the operator recorded {final} Wh")
    return ""
