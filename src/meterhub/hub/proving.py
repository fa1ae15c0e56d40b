"""Proven bills under non-linear tariffs (issue 5; docs/architecture.md, data flow step 4).

The hub knows every opening ``(m_i, r_i)``; the utility knows only the
meter-signed commitments ``C_i``. For a non-linear tariff the hub releases a
*v2 bill statement*: the bill, the blinding sum ``R`` and zero-knowledge proofs
that the bill follows from the committed readings (Rial and Danezis,
"Privacy-preserving smart metering", WPES 2011, section 4):

* ``tiered``: per reading a tier proof (:func:`meterhub.crypto.bulletproofs.prove_tier`):
  a price commitment ``P_i`` and a proof that it holds ``(m_i - c_min)F1 + F2``
  for the row containing ``m_i``, the row hidden; then ``sum P_i = bill G + R H``.
* ``inclining-block``: the total ``T = sum C_i`` (the verifier adds the
  commitments itself) gets one tier proof against the block table (range
  proofs on the total); the linear band prices add ``sum t_i C_i``.
* ``polynomial``: square commitments ``S_i`` with square proofs
  (:func:`meterhub.crypto.rangeproof.prove_squares`, the verifiable sum of
  squares); ``sum a1_i C_i + a2_i S_i + (sum a0_i) G = bill G + R H``.
* optionally, per day, one aggregated Bulletproof that every reading lies in
  ``[0, m_max - 1]`` (:func:`meterhub.crypto.bulletproofs.prove_bounded`).

Every proof's transcript starts from a :class:`ProofContext` naming the meter,
the period, the tariff id and version, and a statement label that holds the
tariff kind, its digest, the first index and the count (and, for per-reading
proofs, the reading's index), so a proof never verifies for another meter,
period, tariff version or reading. Encodings: ``docs/formats.md``, "Bill
statement v2".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from ..banded import STATEMENT_V3_FORMAT, BandedBillStatement
from ..crypto import bulletproofs as bp
from ..crypto import rangeproof as rp
from ..crypto.group import H, Point, Q, base_mul, msm
from ..crypto.pedersen import Commitment, Opening
from ..crypto.transcript import ProofContext, ProofError
from ..exchange import (
    STATEMENT_FIELDS,
    BillStatement,
    FormatError,
    check_fields,
    decode_statement_common,
    load_json,
    statement_common_dict,
)
from ..meter.timebase import day_starts
from ..tariffs.nonlinear import (
    KIND_INCLINING_BLOCK,
    KIND_POLYNOMIAL,
    KIND_TIERED,
    NonLinearTariff,
)

__all__ = [
    "STATEMENT_V2_FORMAT",
    "BUNDLE_VERSION",
    "KIND_CODES",
    "ProvenBillStatement",
    "ProofBundle",
    "bill_context",
    "reading_context",
    "range_context",
    "prove_bill",
    "prove_reading_range",
    "sum_points",
    "statement_from_json",
]

STATEMENT_V2_FORMAT = "meterhub/bill-statement/v2"
BUNDLE_VERSION = 0x01
KIND_CODES = {KIND_TIERED: 0x01, KIND_INCLINING_BLOCK: 0x02, KIND_POLYNOMIAL: 0x03}
_FLAG_RANGE = 0x01
_MAX_PROOF = 1 << 16  # longest single proof in a bundle (u16 length prefix)


# ---------------------------------------------------------------------------
# Proof contexts
# ---------------------------------------------------------------------------
def _period(period_from: date, period_to: date) -> str:
    return f"{period_from.isoformat()}/{period_to.isoformat()}"


def bill_context(
    meter_id: str,
    period_from: date,
    period_to: date,
    tariff_id: str,
    tariff_version: int,
    kind: str,
    tariff_digest: bytes,
    first_index: int,
    count: int,
) -> ProofContext:
    """The context every proof of one bill starts from (all public inputs)."""
    label = (
        b"meterhub/bill/v2|"
        + kind.encode()
        + b"|"
        + bytes(tariff_digest)
        + first_index.to_bytes(8, "big")
        + count.to_bytes(8, "big")
    )
    return ProofContext(meter_id, _period(period_from, period_to), tariff_id, tariff_version, label)


def reading_context(ctx: ProofContext, index: int) -> ProofContext:
    """The context of the per-reading proof of interval ``index`` (so proofs cannot be swapped)."""
    return ProofContext(
        ctx.meter_id, ctx.period, ctx.tariff_id, ctx.tariff_version,
        ctx.statement + b"|reading" + index.to_bytes(8, "big"),
    )


def range_context(ctx: ProofContext, day: int) -> ProofContext:
    """The context of the reading-range proof of day ``day`` of the period."""
    return ProofContext(
        ctx.meter_id, ctx.period, ctx.tariff_id, ctx.tariff_version,
        ctx.statement + b"|range" + day.to_bytes(4, "big"),
    )


# ---------------------------------------------------------------------------
# The proof bundle (binary, strict)
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProofBundle:
    """The proofs of one bill::

        version 0x01 | kind (1) | flags (1, bit 0: reading ranges) | count (4)
        | tiered: count x (u16 length | tier proof)
          inclining-block: u16 length | tier proof over the block table
          polynomial: u32 length | squares proof
        | if flag 0: days (2) | per day: u32 length | bounded Bulletproof
    """

    kind: str
    count: int
    proofs: tuple[bytes, ...]
    ranges: tuple[bytes, ...] = ()

    def to_bytes(self) -> bytes:
        flags = _FLAG_RANGE if self.ranges else 0
        out = [bytes([BUNDLE_VERSION, KIND_CODES[self.kind], flags]), self.count.to_bytes(4, "big")]
        width = 4 if self.kind == KIND_POLYNOMIAL else 2
        for p in self.proofs:
            out.append(len(p).to_bytes(width, "big") + p)
        if self.ranges:
            out.append(len(self.ranges).to_bytes(2, "big"))
            out.extend(len(p).to_bytes(4, "big") + p for p in self.ranges)
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> ProofBundle:
        """Strict decoding; any defect raises a one-line :class:`ProofError`."""
        if not isinstance(data, bytes | bytearray):
            raise ProofError("proof bundle must be bytes")
        data = bytes(data)
        if len(data) < 7:
            raise ProofError("proof bundle too short")
        if data[0] != BUNDLE_VERSION:
            raise ProofError(f"unsupported proof bundle version {data[0]}")
        kind = next((k for k, v in KIND_CODES.items() if v == data[1]), None)
        if kind is None:
            raise ProofError(f"unknown tariff kind code {data[1]:#04x}")
        if data[2] & ~_FLAG_RANGE:
            raise ProofError(f"unknown proof bundle flags {data[2]:#04x}")
        count = int.from_bytes(data[3:7], "big")
        if count == 0:
            raise ProofError("proof bundle covers no readings")
        pos = 7

        def take(width: int) -> bytes:
            nonlocal pos
            if len(data) < pos + width:
                raise ProofError("proof bundle truncated")
            n = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if len(data) < pos + n or n == 0:
                raise ProofError("proof bundle truncated or holds an empty proof")
            out = data[pos : pos + n]
            pos += n
            return out

        if kind == KIND_TIERED:
            if count > len(data):
                raise ProofError("proof bundle truncated")
            proofs = tuple(take(2) for _ in range(count))
        elif kind == KIND_INCLINING_BLOCK:
            proofs = (take(2),)
        else:
            proofs = (take(4),)
        ranges: tuple[bytes, ...] = ()
        if data[2] & _FLAG_RANGE:
            if len(data) < pos + 2:
                raise ProofError("proof bundle truncated")
            days = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if days == 0:
                raise ProofError("proof bundle flags reading ranges but holds none")
            ranges = tuple(take(4) for _ in range(days))
        if pos != len(data):
            raise ProofError(f"{len(data) - pos} trailing bytes after the proof bundle")
        return cls(kind, count, proofs, ranges)


# ---------------------------------------------------------------------------
# The v2 statement (JSON)
# ---------------------------------------------------------------------------
_V2_FIELDS: dict[str, type] = {**STATEMENT_FIELDS, "tariff_kind": str, "proof": str}


@dataclass(frozen=True, slots=True)
class ProvenBillStatement:
    """A bill statement with proofs (docs/formats.md, "Bill statement v2").

    The same fields as the v1 :class:`meterhub.exchange.BillStatement`, plus
    ``tariff_kind`` and ``proof`` (a :class:`ProofBundle`). ``blinding`` opens
    the committed energy charge (its meaning per kind: :mod:`meterhub.hub.proving`).
    """

    meter_id: str
    period_from: date
    period_to: date
    first_index: int
    count: int
    tariff_id: str
    tariff_version: int
    tariff_kind: str
    tariff_digest: bytes
    currency: str
    subunits_per_unit: int
    energy_charge: int
    standing_charge: int
    total: int
    blinding: int
    proof: bytes

    def context(self) -> ProofContext:
        return bill_context(
            self.meter_id, self.period_from, self.period_to, self.tariff_id, self.tariff_version,
            self.tariff_kind, self.tariff_digest, self.first_index, self.count,
        )

    def to_dict(self) -> dict[str, object]:
        d = statement_common_dict(self, STATEMENT_V2_FORMAT)
        d["tariff_kind"] = self.tariff_kind
        d["proof"] = base64.b64encode(self.proof).decode("ascii")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, o: object) -> ProvenBillStatement:
        """Strict parse; a one-line :class:`meterhub.exchange.FormatError` on any defect."""
        o = check_fields(o, _V2_FIELDS, "bill statement v2")
        if o["format"] != STATEMENT_V2_FORMAT:
            raise FormatError(f"unknown bill statement format {o['format']!r}")
        if o["tariff_kind"] not in KIND_CODES:
            raise FormatError(f"unknown tariff kind {o['tariff_kind']!r}")
        pf, pt, digest, blinding_value = decode_statement_common(o)
        try:
            proof = base64.b64decode(o["proof"], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise FormatError(f"malformed bill statement: {exc}") from None
        return cls(
            o["meter_id"], pf, pt, o["first_index"], o["count"], o["tariff_id"], o["tariff_version"],
            o["tariff_kind"], digest, o["currency"], o["subunits_per_unit"], o["energy_charge"],
            o["standing_charge"], o["total"], blinding_value, proof,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ProvenBillStatement:
        return cls.from_dict(load_json(text, "bill statement"))


def statement_from_json(
    text: str | bytes,
) -> BillStatement | ProvenBillStatement | BandedBillStatement:
    """Parse a bill statement of any format, dispatching on its ``format`` field:
    v1 (linear, :class:`meterhub.exchange.BillStatement`), v2 (proven,
    :class:`ProvenBillStatement`) or v3 (per-band energy,
    :class:`meterhub.banded.BandedBillStatement`). Strict; a one-line ``FormatError`` on any defect."""
    o = load_json(text, "bill statement")
    if isinstance(o, dict) and o.get("format") == STATEMENT_V2_FORMAT:
        return ProvenBillStatement.from_dict(o)
    if isinstance(o, dict) and o.get("format") == STATEMENT_V3_FORMAT:
        return BandedBillStatement.from_dict(o)
    return BillStatement.from_dict(o)


# ---------------------------------------------------------------------------
# Provers
# ---------------------------------------------------------------------------
def _commitments(openings: Sequence[Opening]) -> list[Commitment]:
    return [Commitment(base_mul(o.m) + H * o.r) for o in openings]


def prove_reading_range(
    commitments: Sequence[Commitment],
    openings: Sequence[Opening],
    day_sizes: Sequence[int],
    m_max: int,
    ctx: ProofContext,
) -> tuple[bytes, ...]:
    """Per day one aggregated Bulletproof that every reading lies in ``[0, m_max - 1]``
    (Bünz et al. 2018, section 4.3, with the bounded shift); reused by fraud detection."""
    out = []
    pos = 0
    for d, n in enumerate(day_sizes):
        cs, os_ = commitments[pos : pos + n], openings[pos : pos + n]
        out.append(bp.prove_bounded(cs, os_, m_max - 1, range_context(ctx, d)))
        pos += n
    return tuple(out)


def prove_bill(
    *,
    meter_id: str,
    tariff: NonLinearTariff,
    period_from: date,
    period_to: date,
    first_index: int,
    openings: Sequence[Opening],
    commitments: Sequence[Commitment] | None = None,
    tz: str | None = None,
    interval_minutes: int | None = None,
    reading_range: bool = False,
) -> ProvenBillStatement:
    """The v2 statement for a period of whole local days (``period_to`` inclusive).

    ``openings`` are the period's readings in index order; ``commitments`` the
    meter's ``C_i`` (recomputed from the openings if omitted). ``tz`` and
    ``interval_minutes`` are the meter's time base (default: the tariff's).
    Raises ``ValueError``/``TariffError`` if a reading lies outside the tariff.
    """
    if not isinstance(tariff, NonLinearTariff):
        raise TypeError("prove_bill needs a NonLinearTariff (linear tariffs: hub.billing)")
    tz = tz or tariff.tz
    step = interval_minutes or tariff.interval_minutes
    n_days = (period_to - period_from).days + 1
    if n_days < 1:
        raise ValueError("period ends before it starts")
    starts = [day_starts(period_from + timedelta(days=k), tz, step) for k in range(n_days)]
    flat = [s for day in starts for s in day]
    if len(flat) != len(openings):
        raise ValueError(f"{len(openings)} openings for {len(flat)} intervals")
    cs = list(commitments) if commitments is not None else _commitments(openings)
    if len(cs) != len(openings):
        raise ValueError("one commitment per opening is needed")
    for o in openings:
        if not 0 <= o.m < tariff.m_max:
            raise ValueError(f"reading {o.m} outside [0, {tariff.m_max})")
    count = len(openings)
    digest = tariff.digest()
    ctx = bill_context(
        meter_id, period_from, period_to, tariff.tariff_id, tariff.version, tariff.kind,
        digest, first_index, count,
    )
    energy = 0
    blinding = 0
    proofs: list[bytes] = []
    if tariff.kind == KIND_TIERED:
        bands = tariff.band_indices_for(flat, step)
        for i, (c, o, b) in enumerate(zip(cs, openings, bands, strict=True)):
            rows = [r.as_tuple() for r in tariff.tiers[b]]
            proof, _, price = bp.prove_tier(c, o, rows, reading_context(ctx, first_index + i))
            proofs.append(proof)
            energy += price.m
            blinding += price.r
    elif tariff.kind == KIND_INCLINING_BLOCK:
        prices = tariff.linear_prices_for(flat, step)
        total = Commitment(sum_points([c.point for c in cs]))
        t_open = Opening(sum(o.m for o in openings), sum(o.r for o in openings) % Q)
        rows = [r.as_tuple() for r in tariff.blocks]
        proof, _, block = bp.prove_tier(total, t_open, rows, ctx)
        proofs.append(proof)
        energy = sum(t * o.m for t, o in zip(prices, openings, strict=True)) + block.m
        blinding = sum(t * o.r for t, o in zip(prices, openings, strict=True)) + block.r
    else:
        bands = tariff.band_indices_for(flat, step)
        proof, squares = rp.prove_squares(cs, openings, ctx)
        proofs.append(proof)
        for o, sq, b in zip(openings, squares, bands, strict=True):
            a0, a1, a2 = tariff.coefficients[b]
            energy += a0 + a1 * o.m + a2 * sq.m
            blinding += a1 * o.r + a2 * sq.r
    ranges: tuple[bytes, ...] = ()
    if reading_range:
        ranges = prove_reading_range(cs, openings, [len(d) for d in starts], tariff.m_max, ctx)
    bundle = ProofBundle(tariff.kind, count, tuple(proofs), ranges)
    standing = n_days * tariff.standing_charge_per_day
    return ProvenBillStatement(
        meter_id=meter_id,
        period_from=period_from,
        period_to=period_to,
        first_index=first_index,
        count=count,
        tariff_id=tariff.tariff_id,
        tariff_version=tariff.version,
        tariff_kind=tariff.kind,
        tariff_digest=digest,
        currency=tariff.currency,
        subunits_per_unit=tariff.subunits_per_unit,
        energy_charge=energy,
        standing_charge=standing,
        total=energy + standing,
        blinding=blinding % Q,
        proof=bundle.to_bytes(),
    )


def sum_points(points: Sequence[Point]) -> Point:
    """``sum P_i`` (one bucket of one ``combine``: no multiplication)."""
    return msm([1] * len(points), points)
