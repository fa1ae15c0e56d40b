"""The settlement service: verified energy and index value per customer, summed per supplier.

Today a supplier's share of the grid's energy is estimated from standard load
profiles (BDEW SLP procedure: the customer's annual consumption times the
profile). With meterhub every customer's hub releases, per period, ``E = sum m_i``
and ``V = sum index_i*m_i`` with openings (:mod:`meterhub.applets.settlement`); the
service checks them against the meter-signed commitments and sums them per
supplier, exactly.

Checks for one statement, first failure wins (``Rejected`` reason):

1. format, applet code hash (the reviewed settlement applet), index id, version
   and digest equal to the signed index the service holds;
2. the period's signed batches: signatures, counts, chain, completeness
   (:func:`meterhub.utility.verifier.check_period`, shared with billing);
3. ``sum C_i == E*G + R_E*H`` (all scalars 1: one bucket, one point sum);
4. ``sum (index_i - p_min)*C_i == (V - p_min*E)*G + (R_V - p_min*R_E)*H`` with
   ``p_min`` the smallest index value in the period, so all scalars are small and
   non-negative (negative prices included) and the multi-scalar multiplication
   stays cheap (Pippenger with few windows, :class:`~meterhub.crypto.group.PointArray`;
   on the hourly sums when the index is hourly); equivalent to
   ``sum index_i*C_i == V*G + R_V*H`` given check 3.

Also here: :class:`AppletMailbox`, the recipient's side of the STORE DATA
mailbox of the settlement and profiling applets (over its TSM's SCP03 session),
with clear messages for refused inputs, and :class:`SettlementStore`, the
settlement/forecasting party's SQLite file for the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ..crypto.bulletproofs import value_point
from ..crypto.group import PointDecodeError
from ..errors import MeterhubError
from ..model.formats.settlement import SettlementStatement
from ..model.formats.units import MAX_READING_WH, encode_day
from ..protocols.gp.constants import INS
from ..storage.sqlite import open_db, transaction
from ..tariffs.price_index import Series, SeriesError, SignedSeries, dump_series
from .tsm import TSM, TSMError
from .verifier import (
    DayCommitments,
    MeterRegistration,
    Rejected,
    Verdict,
    check_energy_bound,
    check_period,
    period_point_sums,
    period_points,
)

__all__ = [
    "AppletMailbox",
    "HubRefused",
    "SettlementStatement",
    "SettlementStore",
    "SupplierShare",
    "aggregate",
    "dp_forecast_request",
    "expected_code_hash",
    "verify_settlement",
]

# What a refusal means, per status word (the applets' module docstrings).
_REFUSAL = {
    0x6A80: "malformed, unsigned, of another format version, or outside the customer's release policy",
    0x6982: "a signature or commitment does not verify (not the publisher key the customer pinned, "
    "or a nonce that does not open its commitment), or the recipient is not entitled to it",
    0x6984: "expired (the hub already holds readings past its expiry day)",
    0x6985: "not allowed now (an older version, a period already begun, committed or released, or an overlapping period)",
    0x6A84: "not enough space: the recipient's budget of linear functionals for this period is used up, "
            "or its group registry is full",
    0x6A88: "refers to data the hub does not hold (another version, a missing day or profile)",
    0x6700: "the wrong length",
}


class HubRefused(MeterhubError):
    """The applet refused a message; ``sw`` is its status word, the text says why."""

    def __init__(self, what: str, sw: int | None) -> None:
        why = _REFUSAL.get(sw or 0, "refused")
        super().__init__(f"hub refused {what}: {why}" + (f" (SW {sw:04X})" if sw is not None else ""))
        self.sw = sw


class AppletMailbox:
    """Messages to an applet through STORE DATA over ``tsm``'s open SCP03 session (its
    security domain), and the chunked answers (``u32 total || chunk``, each one short R-APDU)."""

    def __init__(self, tsm: TSM, app_aid: str, *, block_size: int = 200) -> None:
        self.tsm = tsm
        self.app_aid = app_aid
        self.block_size = block_size

    def send(self, message: bytes, what: str, *, personalize: bool = True) -> bytes:
        """One message; returns the first answer block (raises :class:`HubRefused`).
        INSTALL [for personalization] precedes it unless ``personalize`` is False (the
        SD keeps the target for the session)."""
        blocks = [message[i : i + self.block_size] for i in range(0, len(message), self.block_size)]
        if not 1 <= len(blocks) <= 256:
            raise HubRefused(what, 0x6700)
        client = self.tsm.client
        if personalize:
            try:
                self.tsm._run("INSTALL [for personalization]", client.install_for_personalization, self.app_aid)
            except TSMError as exc:
                raise HubRefused(what, exc.sw) from None
        out = b""
        for k, block in enumerate(blocks):
            last = k == len(blocks) - 1
            data, sw = self.tsm._run(
                "STORE DATA", client.send, INS.STORE_DATA, 0x80 if last else 0x00, k, block, 256 if last else None
            )
            if sw != 0x9000:
                raise HubRefused(what, sw)
            out = data
        return out

    def request(self, message: bytes, what: str) -> bytes:
        """A message whose answer is an outbox document: fetch all its chunks."""
        first = self.send(message, what)
        if len(first) < 4:
            raise HubRefused(what, None)
        total = int.from_bytes(first[:4], "big")
        buf = bytearray(first[4:])
        while len(buf) < total:
            nxt = self.send(b"\x03" + len(buf).to_bytes(4, "big"), what, personalize=False)
            if len(nxt) <= 4:
                raise HubRefused(what, None)
            buf += nxt[4:]
        return bytes(buf[:total])

    def push_series(self, signed: SignedSeries) -> None:
        s = signed.series
        self.send(b"\x01" + dump_series(signed), f"{s.kind} {s.series_id} v{s.version}")

    def push_raw_series(self, raw: bytes, what: str) -> None:
        self.send(b"\x01" + raw, what)


def settlement_request(first: date, last: date, index_id: str, version: int) -> bytes:
    return b"\x02" + encode_day(first) + encode_day(last) + version.to_bytes(4, "big") + index_id.encode()


def dp_forecast_request(first: date, last: date, epsilon_milli: int, profile_ids: Sequence[str]) -> bytes:
    """The profiling applet's message ``22`` (docs/privacy.md "The DP forecast option"):
    period, ``u16`` epsilon in thousandths, the comma-separated profile ids."""
    if not 1 <= epsilon_milli <= 0xFFFF or not profile_ids or any("," in p or not p for p in profile_ids):
        raise ValueError("a DP forecast request names an epsilon of 0.001..65.535 and profile ids without commas")
    return (b"\x22" + encode_day(first) + encode_day(last) + epsilon_milli.to_bytes(2, "big")
            + ",".join(profile_ids).encode())


def expected_code_hash(cls_name: str) -> str:
    """The code hash of the reviewed applet class the service accepts outputs from."""
    from ..card.applet import applet_class
    from ..card.gp.loadfile import applet_code_hash

    cls = applet_class(cls_name)
    if cls is None:
        import meterhub.applets  # noqa: F401 - registers the classes

        cls = applet_class(cls_name)
    if cls is None:
        raise MeterhubError(f"no applet class is registered as {cls_name!r}")
    return applet_code_hash(cls).hex()


class _PeriodView:
    """Duck-typed statement for :func:`check_period`: no terms, no standing charge."""

    tariff_id = "-"
    tariff_version = 1
    tariff_digest = b""
    standing_charge = 0

    def __init__(self, meter_id: str, pf: date, pt: date, first: int, count: int, energy: int):
        self.meter_id = meter_id
        self.period_from, self.period_to = pf, pt
        self.first_index, self.count = first, count
        self.energy_charge = self.total = energy


class _NoTerms:
    """Duck-typed terms for :func:`check_period`; the caller checks its series itself."""

    tariff_id = "-"
    version = 1
    standing_charge_per_day = 0

    def digest(self) -> bytes:
        return b""

    def check_valid_on(self, day: date) -> None:
        return None


def check_batches(
    meter_id: str, pf: date, pt: date, first: int, count: int, energy: int,
    meter: MeterRegistration, days: Sequence[DayCommitments],
) -> list[Any]:
    """Signatures, chain and completeness of the period's batches (check 2), reusing the
    billing verifier's :func:`check_period`; returns the interval starts per day.
    Raises :class:`Rejected`."""
    check_energy_bound(energy, count * MAX_READING_WH, "energy")
    return check_period(_PeriodView(meter_id, pf, pt, first, count, energy), meter, days, _NoTerms())


def _blob(days: Sequence[DayCommitments]) -> tuple[bytes, int]:
    if all(dc.c65 is not None for dc in days):
        return b"".join(dc.c65 or b"" for dc in days), 65
    return b"".join(dc.c33 for dc in days), 33


def verify_settlement(
    st: SettlementStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    index: Series,
    *,
    code_hash: str | None = None,
    applet_aid: str | None = None,
) -> Verdict:
    """Checks 1-4 of the module docstring; a :class:`Verdict` with the first failure."""
    try:
        if st.index_id != index.series_id or st.index_version != index.version:
            raise Rejected(
                f"statement uses index {st.index_id!r:.40} v{st.index_version}, "
                f"the service holds {index.series_id} v{index.version}"
            )
        if st.index_digest != index.digest():
            raise Rejected("index digest mismatch: computed under other index values")
        if code_hash is not None and st.code_hash != code_hash:
            raise Rejected("statement is not from the reviewed settlement applet (code hash)")
        if applet_aid is not None and st.applet_aid != applet_aid:
            raise Rejected(f"statement names applet {st.applet_aid!r:.40}, not the {applet_aid} the recipient talked to")
        starts = check_batches(
            st.meter_id, st.period_from, st.period_to, st.first_index, st.count, st.energy_wh, meter, days
        )
        try:
            prices: list[int] = []
            for s in starts:
                prices.extend(index.values_for(s, meter.interval_minutes))
        except SeriesError as exc:
            raise Rejected(str(exc)) from None
        # V17: V lies between p_min*E and p_max*E for any readings summing to E.
        if not min(prices) * st.energy_wh <= st.value <= max(prices) * st.energy_wh:
            raise Rejected(f"value {st.value} out of range for energy {st.energy_wh} and this index")
        pmin = min(prices)
        scalars = [p - pmin for p in prices]
        # An hourly index over 15-minute readings: sum_i p_i C_i = sum_h p_h (sum of the
        # hour's C_i), on the hourly sums the score check uses too (a quarter of the points).
        g = 60 // meter.interval_minutes if 60 % meter.interval_minutes == 0 else 1
        hourly = g > 1 and len(scalars) % g == 0 and all(scalars[j::g] == scalars[::g] for j in range(1, g))
        try:
            sums = period_point_sums(days, g) if g > 1 and len(scalars) % g == 0 else None
            arr = sums if hourly and sums is not None else period_points(days)
        except PointDecodeError as exc:
            raise Rejected(f"a commitment does not decode: {exc}") from None
        # sum C_i as the sum of the hourly sums (shared with the score check): 720 points, not 2,880.
        lhs_e = (sums if sums is not None else arr).total()
        lhs_v = arr.msm(scalars[::g] if hourly else scalars)
        if lhs_e != value_point(st.energy_wh, st.energy_blinding):
            raise Rejected("sum C_i != E*G + R_E*H: the energy or its opening does not match the commitments")
        if lhs_v != value_point(st.value - pmin * st.energy_wh, st.value_blinding - pmin * st.energy_blinding):
            raise Rejected("sum index_i*C_i != V*G + R_V*H: the value or its opening does not match the commitments")
    except Rejected as rej:
        return Verdict(False, str(rej))
    return Verdict(True)


@dataclass(frozen=True)
class SupplierShare:
    supplier: str
    customers: int
    energy_wh: int
    value: int  # index sub-units (1/scale currency units)
    energy_share: float
    value_share: float


def aggregate(rows: Iterable[tuple[str, int, int]]) -> list[SupplierShare]:
    """Sum ``(supplier, E, V)`` of verified statements per supplier; shares of the grid total."""
    acc: dict[str, list[int]] = {}
    for supplier, e, v in rows:
        a = acc.setdefault(supplier, [0, 0, 0])
        a[0] += 1
        a[1] += e
        a[2] += v
    te = sum(a[1] for a in acc.values()) or 1
    tv = sum(a[2] for a in acc.values()) or 1
    return [
        SupplierShare(s, a[0], a[1], a[2], a[1] / te, a[2] / tv) for s, a in sorted(acc.items())
    ]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (meter_id TEXT PRIMARY KEY, supplier TEXT NOT NULL,
    registered_profile TEXT NOT NULL, annual_kwh REAL NOT NULL);
CREATE TABLE IF NOT EXISTS series (kind TEXT NOT NULL, series_id TEXT NOT NULL, version INTEGER NOT NULL,
    signed BLOB NOT NULL, PRIMARY KEY (kind, series_id, version));
CREATE TABLE IF NOT EXISTS statements (kind TEXT NOT NULL, meter_id TEXT NOT NULL, period_from TEXT NOT NULL,
    period_to TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (kind, meter_id, period_from, period_to));
CREATE TABLE IF NOT EXISTS coin_toss (meter_id TEXT NOT NULL, period_from TEXT NOT NULL, period_to TEXT NOT NULL,
    k INTEGER NOT NULL, nonce BLOB NOT NULL, commitment BLOB NOT NULL, hub_nonce BLOB,
    PRIMARY KEY (meter_id, period_from, period_to));
"""


class SettlementStore:
    """``settlement.sqlite``: customers and their suppliers, the signed index and profiles,
    the released statements/samples, and the utility's coin-toss nonces (kept secret
    until the reveal). ``meterhub utility settle``/``forecast`` re-verify from it."""

    SCHEMA_VERSION = 1

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.conn = open_db(path, _SCHEMA, schema_version=self.SCHEMA_VERSION, create=create)

    def close(self) -> None:
        self.conn.close()

    def set_customer(self, meter_id: str, supplier: str, registered_profile: str, annual_kwh: float) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO customers VALUES (?,?,?,?)", (meter_id, supplier, registered_profile, annual_kwh)
            )

    def customers(self) -> dict[str, tuple[str, str, float]]:
        rows = self.conn.execute("SELECT meter_id, supplier, registered_profile, annual_kwh FROM customers")
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def add_series(self, signed: SignedSeries) -> None:
        s = signed.series
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO series VALUES (?,?,?,?)", (s.kind, s.series_id, s.version, dump_series(signed))
            )

    def add_series_once(self, signed: Sequence[SignedSeries]) -> None:
        """Store each series unless that version is there, all in one transaction."""
        with transaction(self.conn):
            for x in signed:
                s = x.series
                self.conn.execute(
                    "INSERT OR IGNORE INTO series VALUES (?,?,?,?)", (s.kind, s.series_id, s.version, dump_series(x))
                )

    def series(self, kind: str) -> list[bytes]:
        """The newest version of each series of ``kind`` (raw signed files)."""
        rows = self.conn.execute(
            "SELECT series_id, signed FROM series WHERE kind=? ORDER BY series_id, version", (kind,)
        ).fetchall()
        newest: dict[str, bytes] = {}
        for sid, raw in rows:
            newest[sid] = bytes(raw)
        return list(newest.values())

    def put_statement(self, kind: str, meter_id: str, pf: date, pt: date, body: bytes) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO statements VALUES (?,?,?,?,?)", (kind, meter_id, pf.isoformat(), pt.isoformat(), body)
            )

    def statements(self, kind: str) -> list[tuple[str, date, date, bytes]]:
        rows = self.conn.execute(
            "SELECT meter_id, period_from, period_to, body FROM statements WHERE kind=? ORDER BY meter_id, period_from",
            (kind,),
        ).fetchall()
        return [(r[0], date.fromisoformat(r[1]), date.fromisoformat(r[2]), bytes(r[3])) for r in rows]

    def put_coin(self, meter_id: str, pf: date, pt: date, k: int, nonce: bytes, commitment: bytes) -> None:
        """Record the utility's side of a coin toss before it is sent (a write-ahead intent:
        a run killed after sending re-sends the same commitment, never a new one)."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO coin_toss VALUES (?,?,?,?,?,?,NULL)",
                (meter_id, pf.isoformat(), pt.isoformat(), k, nonce, commitment),
            )

    def set_hub_nonce(self, meter_id: str, pf: date, pt: date, hub_nonce: bytes) -> None:
        """The hub's answer; ``b""`` records that the hub refused (no sampling this period)."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE coin_toss SET hub_nonce=? WHERE meter_id=? AND period_from=? AND period_to=?",
                (hub_nonce, meter_id, pf.isoformat(), pt.isoformat()),
            )

    def coin(self, meter_id: str, pf: date, pt: date) -> tuple[int, bytes, bytes, bytes | None] | None:
        r = self.conn.execute(
            "SELECT k, nonce, commitment, hub_nonce FROM coin_toss WHERE meter_id=? AND period_from=? AND period_to=?",
            (meter_id, pf.isoformat(), pt.isoformat()),
        ).fetchone()
        if r is None:
            return None
        return r[0], bytes(r[1]), bytes(r[2]), None if r[3] is None else bytes(r[3])
