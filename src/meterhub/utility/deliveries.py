"""Deliveries of the hubs' outputs to the utility, verified on receipt (docs/service.md, "Outputs").

The utility's HTTP service takes, besides day uploads and bill statements, every other
figure a hub releases and the reference data those figures are checked against. This
module is the transport-free core: it parses a delivery strictly, runs the SAME
verifier the CLI runs on stored results (``utility settle``/``forecast``/``dr``/
``fraud``), and records the verdict in the utility store's append-only ``outputs``
history in one transaction.

Outputs and their verifier (first failure wins, the reason is kept):

=================  =============================================================  ==========
kind               verifier                                                       checked by
=================  =============================================================  ==========
``settlement``     :func:`meterhub.utility.settlement.verify_settlement`          V17, checks 1-4
``scores``         :func:`meterhub.utility.forecasting.verify_scores`             checks 1-4
``samples``        :func:`meterhub.utility.forecasting.verify_samples`            coin toss, openings
``dr-release``     :func:`meterhub.utility.demand_response.verify_release`        checks 1-4
``feeder-day``     :func:`meterhub.utility.fraud.verify_feeder_day`               steps 2-3
=================  =============================================================  ==========

Reference data (``refs``), each checked on receipt: signed price indices and load
profiles (signature under the trusted publisher key), DR event records (signature
under the trusted VTN key), aggregation groups (signature under the grid operator's
group key), and the utility's side of a sampling coin toss (delivered by the utility's
own back office; it holds the utility's nonce, so only the ``grid`` role may deliver it).

Idempotency: a byte-identical re-delivery of a verified output returns the verdict on
record (``duplicate``); a different output for a period that already has a verified
one is a conflict (:class:`DeliveryError` ``conflict``), never a silent replacement. A
re-delivery of a rejected output is verified again (it may have been rejected because
the meter's days were not in yet) and appended only if its verdict changed. Reference
data is write-once per id: the same bytes again are fine, other bytes a conflict. An
output whose reference data is missing is refused without recording anything.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..applets.demand_response import CLASS_NAME as DR_CLASS
from ..applets.profiling import CLASS_NAME as PROFILING_CLASS
from ..applets.settlement import CLASS_NAME as SETTLEMENT_CLASS
from ..crypto import ecdsa
from ..dr.event import DREvent, EventError
from ..dr.release import DRRelease
from ..errors import MeterhubError
from ..model import strictjson
from ..model.formats.aggregation import GroupDefinition, MaskedRelease, RecoveryRelease
from ..model.timebase import range_starts
from ..storage.sqlite import atomic_write
from ..tariffs.price_index import (
    KIND_LOAD_PROFILE,
    KIND_PRICE_INDEX,
    Series,
    SeriesError,
    load_series,
    verify_series,
)
from .demand_response import settle_event, verify_release
from .forecasting import (
    ProfileScores,
    SampleRelease,
    classify,
    match_samples,
    match_scores,
    period_weights,
    verify_samples,
    verify_scores,
)
from .fraud import AGGREGATION_CLASS, verify_feeder_day
from .settlement import SettlementStatement, aggregate, expected_code_hash, verify_settlement
from .store import UtilityStore, _now
from .verifier import Rejected, Verdict

__all__ = [
    "OUTPUT_KINDS",
    "REF_KINDS",
    "Delivery",
    "DeliveryError",
    "Deliveries",
    "OutputVerdict",
    "TrustAnchors",
]

OUTPUT_KINDS = ("settlement", "scores", "samples", "dr-release", "feeder-day")
REF_KINDS = (KIND_PRICE_INDEX, KIND_LOAD_PROFILE, "dr-event", "aggregation-group", "coin-toss")
TRUST_FORMAT = "meterhub/service-trust/v1"
MAX_FEEDER_MEMBERS = 4096


class DeliveryError(MeterhubError):
    """A delivery refused before or instead of a verdict. ``kind``: ``malformed`` (400),
    ``forbidden`` (403), ``conflict`` (409) or ``unverifiable`` (422: reference data or
    the meter's registration missing; nothing recorded, deliver it again later)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class TrustAnchors:
    """The public keys the service checks reference data under (SEC 1 P-256 points).
    ``None``: that kind of reference data is refused."""

    price_index: bytes | None = None
    load_profile: bytes | None = None
    dr_vtn: bytes | None = None
    aggregation_group: bytes | None = None

    _FIELDS = {"price-index": "price_index", "load-profile": "load_profile", "dr-vtn": "dr_vtn",
               "aggregation-group": "aggregation_group"}

    @classmethod
    def load(cls, path: str | Path) -> TrustAnchors:
        """The trust file ``{"format": "meterhub/service-trust/v1", "price-index": HEX, ...}``;
        raises ``ValueError`` (one line)."""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read trust file {path}: {exc.strerror}") from None
        doc = strictjson.loads(raw, "trust file")
        if not isinstance(doc, dict) or doc.get("format") != TRUST_FORMAT:
            raise ValueError(f"trust file {path}: format must be {TRUST_FORMAT}")
        unknown = set(doc) - {"format", *cls._FIELDS}
        if unknown:
            raise ValueError(f"trust file {path}: unknown entry {sorted(unknown)[0]!r}")
        keys: dict[str, bytes] = {}
        for name, attr in cls._FIELDS.items():
            if name in doc:
                key = strictjson.hex_bytes(doc[name], f"trust file {name}")
                ecdsa.load_verifying_key(key)  # refuse a key that does not decode
                keys[attr] = key
        return cls(**keys)

    @classmethod
    def demo(cls) -> TrustAnchors:
        """The demo's PUBLICLY KNOWN publisher keys (``utility serve --trust demo``; demo only)."""
        from ..model.demo_keys import demo_vtn_key
        from ..tariffs.price_index import demo_index_publisher_key
        from ..tariffs.profiles import demo_profile_key
        from .fraud import demo_grid_key

        return cls(
            ecdsa.public_bytes(demo_index_publisher_key()),
            ecdsa.public_bytes(demo_profile_key()),
            ecdsa.public_bytes(demo_vtn_key()),
            ecdsa.public_bytes(demo_grid_key()),
        )

    def save(self, path: str | Path) -> None:
        doc: dict[str, str] = {"format": TRUST_FORMAT}
        for name, attr in self._FIELDS.items():
            v = getattr(self, attr)
            if v is not None:
                doc[name] = v.hex()
        atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())


@dataclass(frozen=True)
class Delivery:
    """A parsed output: ``subject`` (a meter id, or a group id for a feeder day) and
    ``period`` (the statement's days, the DR event id, or the feeder day)."""

    kind: str
    subject: str
    period: str
    body: bytes
    parsed: Any
    meters: frozenset[str] = field(default_factory=frozenset)  # the meters it speaks for


@dataclass(frozen=True)
class OutputVerdict:
    kind: str
    subject: str
    period: str
    verified: bool
    reason: str
    figures: dict[str, Any]
    duplicate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "period": self.period, "verified": self.verified,
                "reason": self.reason, "figures": self.figures, "duplicate": self.duplicate}


def _period(pf: date, pt: date) -> str:
    return f"{pf.isoformat()}..{pt.isoformat()}"


def _hex_list(v: object, what: str) -> list[bytes]:
    if not isinstance(v, list) or len(v) > MAX_FEEDER_MEMBERS:
        raise ValueError(f"{what} must be a list of at most {MAX_FEEDER_MEMBERS} hex strings")
    return [strictjson.hex_bytes(x, what) for x in v]


def parse_output(kind: str, body: bytes) -> Delivery:
    """Strict parse of an output delivery; raises :class:`DeliveryError` ``malformed``.
    Settlement statements, scores and samples are their JSON documents
    (docs/formats.md), a DR release its binary record, a feeder day
    ``{"group_id", "day", "releases": [hex], "recoveries": [hex]}``."""
    try:
        if kind == "settlement":
            st = SettlementStatement.from_json(body)
            return Delivery(kind, st.meter_id, _period(st.period_from, st.period_to), body, st,
                            frozenset([st.meter_id]))
        if kind == "scores":
            sc = ProfileScores.from_json(body)
            return Delivery(kind, sc.meter_id, _period(sc.period_from, sc.period_to), body, sc,
                            frozenset([sc.meter_id]))
        if kind == "samples":
            rel = SampleRelease.from_json(body)
            return Delivery(kind, rel.meter_id, _period(rel.period_from, rel.period_to), body, rel,
                            frozenset([rel.meter_id]))
        if kind == "dr-release":
            dr = DRRelease.from_bytes(body)
            return Delivery(kind, dr.meter_id, dr.event_id, body, dr, frozenset([dr.meter_id]))
        if kind == "feeder-day":
            d = strictjson.loads(body, "feeder day")
            if not isinstance(d, dict) or set(d) != {"group_id", "day", "releases", "recoveries"}:
                raise ValueError("feeder day: needs exactly group_id, day, releases, recoveries")
            if not isinstance(d["group_id"], str) or not d["group_id"]:
                raise ValueError("feeder day: group_id must be text")
            day = strictjson.iso_date(d["day"], "feeder day day")
            rels = [MaskedRelease.from_bytes(b) for b in _hex_list(d["releases"], "feeder day releases")]
            recs = [RecoveryRelease.from_bytes(b) for b in _hex_list(d["recoveries"], "feeder day recoveries")]
            by_meter = {r.meter_id: r for r in rels}
            rec_by_meter = {r.meter_id: r for r in recs}
            if len(by_meter) != len(rels) or len(rec_by_meter) != len(recs):
                raise ValueError("feeder day: two releases of one meter")
            return Delivery(kind, d["group_id"], day.isoformat(), body, (day, by_meter, rec_by_meter),
                            frozenset(by_meter))
    except (ValueError, EventError, TypeError) as exc:  # FormatError and EventError are ValueErrors
        raise DeliveryError("malformed", str(exc).splitlines()[0] if str(exc) else f"malformed {kind}") from None
    raise DeliveryError("malformed", f"unknown output kind {kind!r}")


class Deliveries:
    """Reference data and outputs of one utility store (one connection, its transactions)."""

    def __init__(self, store: UtilityStore, trust: TrustAnchors) -> None:
        self.store, self.trust = store, trust
        self._code_hashes: dict[str, str] = {}

    def _code_hash(self, cls_name: str) -> str:
        if cls_name not in self._code_hashes:
            self._code_hashes[cls_name] = expected_code_hash(cls_name)
        return self._code_hashes[cls_name]

    # -- reference data ----------------------------------------------------------------
    def add_reference(self, kind: str, body: bytes, party: str) -> dict[str, Any]:
        """Check and store one piece of reference data; ``{"kind", "id", "duplicate"}``."""
        ref_id = self._check_reference(kind, body)
        with self.store._tx():
            row = self.store.conn.execute(
                "SELECT body FROM refs WHERE kind=? AND ref_id=?", (kind, ref_id)
            ).fetchone()
            if row is not None:
                if hmac.compare_digest(bytes(row[0]), body):
                    return {"kind": kind, "id": ref_id, "duplicate": True}
                raise DeliveryError("conflict", f"{kind} {ref_id} is already stored with other content")
            self.store.conn.execute("INSERT INTO refs VALUES (?,?,?,?,?)", (kind, ref_id, body, party, _now()))
        return {"kind": kind, "id": ref_id, "duplicate": False}

    def _anchor(self, kind: str, key: bytes | None) -> bytes:
        if key is None:
            raise DeliveryError("forbidden", f"this service has no trust anchor for {kind} (--trust)")
        return key

    def _check_reference(self, kind: str, body: bytes) -> str:
        try:
            if kind in (KIND_PRICE_INDEX, KIND_LOAD_PROFILE):
                key = self.trust.price_index if kind == KIND_PRICE_INDEX else self.trust.load_profile
                signed = load_series(body)
                s = verify_series(signed, self._anchor(kind, key), kind=kind)
                return f"{s.series_id}/v{s.version}"
            if kind == "dr-event":
                ev = DREvent.from_bytes(body)
                if not ev.verify(self._anchor(kind, self.trust.dr_vtn)):
                    raise DeliveryError("unverifiable", f"DR event {ev.event_id}: VTN signature does not verify")
                return f"{ev.event_id}/{ev.modification}"
            if kind == "aggregation-group":
                grp = GroupDefinition.from_bytes(body)
                group_key = ecdsa.load_verifying_key(self._anchor(kind, self.trust.aggregation_group))
                if not grp.verify(group_key):
                    raise DeliveryError("unverifiable", f"group {grp.group_id}: signature does not verify")
                return grp.group_id
            if kind == "coin-toss":
                c = _coin(body)
                return f"{c['meter_id']}/{_period(c['period_from'], c['period_to'])}"
        except SeriesError as exc:
            if "signed by another key" in str(exc) or "does not verify" in str(exc):
                raise DeliveryError("unverifiable", str(exc)) from None
            raise DeliveryError("malformed", str(exc)) from None
        except (ValueError, EventError, TypeError) as exc:
            raise DeliveryError("malformed", str(exc).splitlines()[0] if str(exc) else f"malformed {kind}") from None
        raise DeliveryError("malformed", f"unknown reference kind {kind!r}")

    def _ref(self, kind: str, ref_id: str) -> bytes:
        row = self.store.conn.execute("SELECT body FROM refs WHERE kind=? AND ref_id=?", (kind, ref_id)).fetchone()
        if row is None:
            raise DeliveryError("unverifiable", f"{kind} {ref_id} has not been delivered")
        return bytes(row[0])

    def _series(self, kind: str, series_id: str, version: int) -> Series:
        key = self.trust.price_index if kind == KIND_PRICE_INDEX else self.trust.load_profile
        raw = self._ref(kind, f"{series_id}/v{version}")
        return verify_series(load_series(raw), self._anchor(kind, key), kind=kind)  # re-checked on use

    # -- outputs -----------------------------------------------------------------------
    def deliver(self, d: Delivery, party: str) -> OutputVerdict:
        """Verify and record one output (one transaction); see the module docstring."""
        with self.store._tx():
            rows = self.store.conn.execute(
                "SELECT body, verified, reason, figures FROM outputs WHERE kind=? AND subject=? AND period=? "
                "ORDER BY rowid",
                (d.kind, d.subject, d.period),
            ).fetchall()
            for body, ok, reason, figures in rows:
                if ok and hmac.compare_digest(bytes(body), d.body):
                    return OutputVerdict(d.kind, d.subject, d.period, True, reason, json.loads(figures), True)
            if any(r[1] for r in rows):
                raise DeliveryError(
                    "conflict", f"{d.kind} of {d.subject} for {d.period} is already verified with other content"
                )
            try:
                v, figures = self._verify(d)
            except KeyError as exc:
                raise DeliveryError("unverifiable", str(exc.args[0]) if exc.args else "not registered") from None
            last = next((r for r in reversed(rows) if hmac.compare_digest(bytes(r[0]), d.body)), None)
            if last is not None and (bool(last[1]), last[2]) == (v.ok, v.reason):
                return OutputVerdict(d.kind, d.subject, d.period, v.ok, v.reason, figures, True)
            self.store.conn.execute(
                "INSERT INTO outputs (kind, subject, period, body, verified, reason, figures, party, at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (d.kind, d.subject, d.period, d.body, int(v.ok), v.reason, json.dumps(figures), party, _now()),
            )
        return OutputVerdict(d.kind, d.subject, d.period, v.ok, v.reason, figures)

    def _verify(self, d: Delivery) -> tuple[Verdict, dict[str, Any]]:
        from ..model.aids import DR_APP_AID, PROFILING_APP_AID, SETTLEMENT_APP_AID

        s = self.store
        if d.kind == "settlement":
            st: SettlementStatement = d.parsed
            index = self._series(KIND_PRICE_INDEX, st.index_id, st.index_version)
            v = verify_settlement(st, s.registration(st.meter_id),
                                  s.day_commitments(st.meter_id, st.period_from, st.period_to), index,
                                  code_hash=self._code_hash(SETTLEMENT_CLASS), applet_aid=SETTLEMENT_APP_AID)
            return v, {"energy_wh": st.energy_wh, "value": st.value, "scale": index.scale} if v.ok else {}
        if d.kind == "scores":
            sc: ProfileScores = d.parsed
            profiles = {e.series_id: self._series(KIND_LOAD_PROFILE, e.series_id, e.version) for e in sc.scores}
            reg = s.registration(sc.meter_id)
            v = verify_scores(sc, reg, s.day_commitments(sc.meter_id, sc.period_from, sc.period_to), profiles,
                              code_hash=self._code_hash(PROFILING_CLASS), applet_aid=PROFILING_APP_AID)
            if not v.ok:
                return v, {}
            starts = range_starts(sc.period_from, (sc.period_to - sc.period_from).days + 1, reg.tz, sc.point_minutes)
            weights: dict[str, Sequence[int]] = dict(period_weights(profiles, starts))
            matches = match_scores(sc, weights)
            return v, {"energy_wh": sc.energy_wh, "class": classify(matches),
                       "r": max((m.r for m in matches), default=0.0)}
        if d.kind == "samples":
            rel: SampleRelease = d.parsed
            coin = _coin(self._ref("coin-toss", f"{rel.meter_id}/{d.period}"))
            v = verify_samples(rel, s.registration(rel.meter_id),
                               s.day_commitments(rel.meter_id, rel.period_from, rel.period_to),
                               commitment=coin["commitment"], utility_nonce=coin["utility_nonce"],
                               hub_commitment=coin["hub_commitment"], k=coin["k"],
                               code_hash=self._code_hash(PROFILING_CLASS), applet_aid=PROFILING_APP_AID)
            return v, {"samples": len(rel.samples)} if v.ok else {}
        if d.kind == "dr-release":
            dr: DRRelease = d.parsed
            ev = self._event(dr.event_id, dr.event_digest)
            days = {dc.batch.batch.day: dc for dc in s.day_commitments(
                dr.meter_id, min(ev.baseline_days, default=ev.start.date()), ev.start.date() + timedelta(days=1))}
            try:
                red = verify_release(dr, ev, s.registration(dr.meter_id), days,
                                     code_hash=bytes.fromhex(self._code_hash(DR_CLASS)), app_aid=DR_APP_AID)
            except Rejected as exc:
                return Verdict(False, str(exc)), {}
            return Verdict(True), {"reduction_wh": float(red.reduction), "payment": red.payment,
                                   "adjustment": red.adjustment}
        if d.kind == "feeder-day":
            day, rels, recs = d.parsed
            grp = GroupDefinition.from_bytes(self._ref("aggregation-group", d.subject))
            try:
                fd = verify_feeder_day(grp, day, rels, recs, {m: s.registration(m) for m in rels},
                                       {m: s.day_commitments(m, day, day) for m in rels},
                                       code_hash=bytes.fromhex(self._code_hash(AGGREGATION_CLASS)))
            except Rejected as exc:
                return Verdict(False, str(exc)), {}
            return Verdict(True), {"feeder_id": grp.feeder_id, "sums_wh": list(fd.hours), "present": fd.present,
                                   "missing": fd.missing, "complete": fd.complete}
        raise DeliveryError("malformed", f"unknown output kind {d.kind!r}")

    def _event(self, event_id: str, digest: bytes) -> DREvent:
        """The stored event record the release is bound to (by digest), else the latest
        modification (then the verifier names the mismatch)."""
        rows = self.store.conn.execute(
            "SELECT body FROM refs WHERE kind='dr-event' AND ref_id LIKE ? ORDER BY at", (event_id + "/%",)
        ).fetchall()
        events = [DREvent.from_bytes(bytes(r[0])) for r in rows]
        events = [e for e in events if e.event_id == event_id]
        if not events:
            raise DeliveryError("unverifiable", f"dr-event {event_id} has not been delivered")
        for e in events:
            if hmac.compare_digest(e.digest(), digest):
                return e
        return max(events, key=lambda e: e.modification)

    def recent_rejections(self, party: str, since: str, limit: int) -> list[str]:
        """When ``party``'s rejected outputs recorded at or after ``since`` (ISO 8601 UTC,
        as ``at`` is written) were recorded, newest first, at most ``limit`` of them
        (index ``outputs_by_party``): the service's per-key cap (docs/service.md, "Limits")."""
        rows = self.store.conn.execute(
            "SELECT at FROM outputs WHERE party=? AND verified=0 AND at>=? ORDER BY at DESC LIMIT ?",
            (party, since, limit),
        ).fetchall()
        return [r[0] for r in rows]

    # -- queries -----------------------------------------------------------------------
    def verdicts(self, subject: str) -> list[dict[str, Any]]:
        """The output verdict history of a meter (or a group), oldest first."""
        rows = self.store.conn.execute(
            "SELECT kind, period, verified, reason, figures, at FROM outputs WHERE subject=? ORDER BY rowid",
            (subject,),
        ).fetchall()
        return [{"kind": k, "period": p, "verified": bool(ok), "reason": r, "figures": json.loads(f), "at": at}
                for k, p, ok, r, f, at in rows]

    def _verified(self, kind: str, subject: str | None = None) -> list[tuple[str, str, bytes, dict[str, Any]]]:
        sql = "SELECT subject, period, body, figures FROM outputs WHERE kind=? AND verified=1"
        args: tuple[str, ...] = (kind,)
        if subject is not None:
            sql += " AND subject=?"
            args = (kind, subject)
        rows = self.store.conn.execute(sql + " ORDER BY rowid", args).fetchall()
        return [(a, b, bytes(c), json.loads(f)) for a, b, c, f in rows]

    def shares(self, period: str | None = None) -> list[dict[str, Any]]:
        """Each supplier's share of the verified settlement statements (of one period,
        or all), as ``utility settle`` prints them; the supplier is the meter's."""
        suppliers = dict(self.store.conn.execute("SELECT meter_id, supplier FROM meters").fetchall())
        rows = [(suppliers.get(m) or "-", f["energy_wh"], f["value"])
                for m, p, _, f in self._verified("settlement") if period is None or p == period]
        return [{"supplier": s.supplier, "customers": s.customers, "energy_wh": s.energy_wh, "value": s.value,
                 "energy_share": s.energy_share, "value_share": s.value_share} for s in aggregate(rows)]

    def forecast(self, meter_id: str) -> list[dict[str, Any]]:
        """Per period with verified scores: the class by the scores and, when verified
        samples of the period exist, by the samples (as ``utility forecast``)."""
        samples = {p: b for _, p, b, _ in self._verified("samples", meter_id)}
        reg = self.store.registration(meter_id)
        out = []
        for _, period, body, figures in self._verified("scores", meter_id):
            sc = ProfileScores.from_json(body)
            by_samples = None
            if period in samples:
                profiles = {e.series_id: self._series(KIND_LOAD_PROFILE, e.series_id, e.version) for e in sc.scores}
                starts = range_starts(sc.period_from, (sc.period_to - sc.period_from).days + 1, reg.tz,
                                      sc.point_minutes)
                rel = SampleRelease.from_json(samples[period])
                g = sc.point_minutes // reg.interval_minutes
                weights: dict[str, Sequence[int]] = dict(period_weights(profiles, starts))
                by_samples = classify(match_samples([(x.index - rel.first_index, x.m) for x in rel.samples],
                                                    weights, g))
            out.append({"period": period, "by_scores": figures["class"], "r": figures["r"],
                        "by_samples": by_samples})
        return out

    def dr_settlement(self, event_id: str) -> dict[str, Any]:
        """Verified reductions of one event per feeder (feeders from the stored
        aggregation groups) and the payments, as ``utility dr`` prints them."""
        from fractions import Fraction

        from .demand_response import VerifiedReduction

        feeder_of: dict[str, str] = {}
        for (body,) in self.store.conn.execute("SELECT body FROM refs WHERE kind='aggregation-group'"):
            g = GroupDefinition.from_bytes(bytes(body))
            for m in g.meter_ids:
                feeder_of.setdefault(m, g.feeder_id)
        verified = [
            VerifiedReduction(m, event_id, Fraction(f["reduction_wh"]), f["adjustment"], f["payment"])
            for m, p, _, f in self._verified("dr-release") if p == event_id
        ]
        st = settle_event(event_id, verified, feeder_of)
        return {"event_id": event_id, "releases": len(verified), "per_feeder_wh": st.per_feeder_wh,
                "total_wh": st.total_wh, "payments": st.payments}

    def feeder_days(self, group_id: str) -> list[dict[str, Any]]:
        return [{"day": p, **f} for _, p, _, f in self._verified("feeder-day", group_id)]


def _coin(body: bytes) -> dict[str, Any]:
    """The utility's side of a sampling coin toss (docs/service.md), strictly parsed."""
    d = strictjson.loads(body, "coin toss")
    fields = {"meter_id", "period_from", "period_to", "k", "commitment", "utility_nonce", "hub_commitment"}
    if not isinstance(d, dict) or set(d) != fields:
        raise ValueError(f"coin toss: needs exactly {', '.join(sorted(fields))}")
    if not isinstance(d["meter_id"], str) or not d["meter_id"]:
        raise ValueError("coin toss: meter_id must be text")
    if type(d["k"]) is not int or not 1 <= d["k"] <= 1 << 16:
        raise ValueError("coin toss: k must be an integer 1..65536")
    return {
        "meter_id": d["meter_id"],
        "period_from": strictjson.iso_date(d["period_from"], "coin toss period_from"),
        "period_to": strictjson.iso_date(d["period_to"], "coin toss period_to"),
        "k": d["k"],
        "commitment": strictjson.hex_bytes(d["commitment"], "coin toss commitment"),
        "utility_nonce": strictjson.hex_bytes(d["utility_nonce"], "coin toss utility_nonce"),
        "hub_commitment": strictjson.hex_bytes(d["hub_commitment"], "coin toss hub_commitment"),
    }


def coin_toss_json(meter_id: str, pf: date, pt: date, k: int, commitment: bytes, utility_nonce: bytes,
                   hub_commitment: bytes) -> bytes:
    """The coin-toss delivery document (``POST /v1/coin-tosses``)."""
    return json.dumps({"meter_id": meter_id, "period_from": pf.isoformat(), "period_to": pt.isoformat(), "k": k,
                       "commitment": commitment.hex(), "utility_nonce": utility_nonce.hex(),
                       "hub_commitment": hub_commitment.hex()}, sort_keys=True).encode()


def feeder_day_json(group_id: str, day: date, releases: Mapping[str, MaskedRelease],
                    recoveries: Mapping[str, RecoveryRelease]) -> bytes:
    """The feeder-day delivery document (``POST /v1/feeder-days``)."""
    return json.dumps({"group_id": group_id, "day": day.isoformat(),
                       "releases": [r.to_bytes().hex() for _, r in sorted(releases.items())],
                       "recoveries": [r.to_bytes().hex() for _, r in sorted(recoveries.items())]}).encode()
