"""The utility store's tables (SQLite and PostgreSQL) and their upgrades, version by
version (:class:`~meterhub.utility.store.UtilityStore` opens the database with them),
and the timestamp text the ``at``/``checked_at`` columns hold."""

from __future__ import annotations

from datetime import UTC, datetime

_SCHEMA = """
CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    tz TEXT NOT NULL,
    interval_minutes INTEGER NOT NULL,
    tariff_id TEXT,
    tariff_version INTEGER,
    supplier TEXT
);
CREATE TABLE tariffs (
    tariff_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    signed BLOB NOT NULL,
    PRIMARY KEY (tariff_id, version)
);
CREATE TABLE days (
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    day TEXT NOT NULL,
    first_index INTEGER NOT NULL,
    count INTEGER NOT NULL,
    batch BLOB NOT NULL,
    signature BLOB NOT NULL,
    c33 BLOB NOT NULL,
    c65 BLOB NOT NULL,
    PRIMARY KEY (meter_id, day)
);
CREATE TABLE rejected_uploads (
    meter_id TEXT NOT NULL,
    day TEXT,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE bills (  -- append-only verdict history (docs/verification.md, V21)
    meter_id TEXT NOT NULL,
    period_from TEXT NOT NULL,
    period_to TEXT NOT NULL,
    statement TEXT NOT NULL,
    verified INTEGER,  -- NULL while pending, set once and never changed afterwards
    reason TEXT NOT NULL DEFAULT '',
    checked_at TEXT
);
CREATE INDEX bills_by_meter ON bills (meter_id, period_from)
"""

# Version 3: the deliveries of the service (docs/service.md, "Outputs"): the reference
# data outputs are verified against (signed series, DR events, aggregation groups, coin
# tosses; each checked on receipt) and the append-only verdict history of delivered
# settlement statements, profile scores, samples, DR releases and feeder days.
_SCHEMA_V3 = """
CREATE TABLE refs (
    kind TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    body BLOB NOT NULL,
    party TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (kind, ref_id)
);
CREATE TABLE outputs (  -- append-only, like bills: a verdict is never rewritten
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    period TEXT NOT NULL,
    body BLOB NOT NULL,
    verified INTEGER NOT NULL,
    reason TEXT NOT NULL,
    figures TEXT NOT NULL,
    party TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX outputs_by_subject ON outputs (kind, subject, period)
"""

# Version 4: the per-key limit on rejected outputs (docs/service.md, "Limits") counts a
# party's recent rejections on every output delivery: an index, not a table scan.
_SCHEMA_V4 = """
CREATE INDEX outputs_by_party ON outputs (party, verified, at)
"""

# PostgreSQL has no implicit rowid: bills gets an explicit one (the history's order).
_PG_SCHEMA_V2 = _SCHEMA.replace(
    "    checked_at TEXT\n)", "    checked_at TEXT,\n    rowid BIGSERIAL PRIMARY KEY\n)"
)
_PG_SCHEMA_V3 = _SCHEMA_V3.replace(
    "    at TEXT NOT NULL\n);\nCREATE INDEX", "    at TEXT NOT NULL,\n    rowid BIGSERIAL PRIMARY KEY\n);\nCREATE INDEX"
)
assert _PG_SCHEMA_V2 != _SCHEMA and _PG_SCHEMA_V3 != _SCHEMA_V3
_PG_SCHEMA = _PG_SCHEMA_V2 + ";" + _PG_SCHEMA_V3 + ";" + _SCHEMA_V4


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

