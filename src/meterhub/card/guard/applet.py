"""The privacy guard applet: its persistent state (JCRE ch. 7 transactions), the release
bookkeeping and the customer commands (:mod:`meterhub.card.guard`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

from ...crypto import ecdsa
from ...model.group_registry import RegistryView
from ...policy import (
    AGGREGATE_KINDS,
    LogEntry,
    PolicyError,
    PolicyViolation,
    ReleasePolicy,
    chain_hash,
    dump_policy,
    load_policy,
    verify_policy,
)
from ...policy.consent import Consent, load_consent, verify_consent, verify_revocation
from ...policy.log import charged_span, epsilon_charges, over_budget
from ...policy.model import SW_BUDGET, SignedPolicy
from ...protocols.iso7816 import CommandAPDU
from ...protocols.iso7816.aid import AID
from ...protocols.iso7816.sw import SW, ISOException
from ..applet import Applet, ins, register_applet_class
from ..registry import PRIV_SECURITY_DOMAIN
from ..runtime import AppletContext, Shareable
from .common import (
    CHUNK,
    GUARD_AID,
    GUARD_CLASS,
    _issue,
    _u32,
)
from .port import GuardPort, InstallPort


class PrivacyGuard(Applet):
    """See the module docstring."""

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> PrivacyGuard:
        if ctx.aid != AID.of(GUARD_AID):
            raise ISOException(SW.WRONG_DATA, "the privacy guard lives at its fixed AID")
        try:
            p = json.loads(params)
            customer = bytes.fromhex(p["customer"])
            ecdsa.load_verifying_key(customer)
            signed = load_policy(p["policy"].encode())
            policy = verify_policy(signed, customer)
            pinned = {role: [bytes.fromhex(k) for k in keys] for role, keys in p["pinned"].items()}
            for keys in pinned.values():
                for k in keys:
                    ecdsa.load_verifying_key(k)
            sds = {AID.of(a).raw: str(n) for a, n in p["recipients"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, PolicyError):
            raise ISOException(SW.WRONG_DATA, "bad guard provisioning data") from None
        ctx.begin_transaction()
        ctx.store.put(b"customer", customer)
        for role, keys in pinned.items():
            ctx.store.put(b"pin/" + role.encode(), b"".join(keys))
        for sd, name in sds.items():
            ctx.store.put(b"sd/" + sd, name.encode())
        ctx.store.put(b"policy", dump_policy(signed))
        ctx.store.put(b"head", _u32(0) + bytes(32))
        ctx.commit_transaction()
        guard = cls(ctx)
        guard._append_policy_entry(policy, signed)
        return guard

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self._policy_cache: tuple[bytes, ReleasePolicy] | None = None
        self._registry_cache: dict[str, tuple[bytes, RegistryView]] = {}
        self._span_cache: dict[tuple[str, bytes, date, bytes], bytes] = {}

    # -- state ----------------------------------------------------------------------------
    def _stored(self, prefix: bytes) -> list[bytes]:
        """Keys of the guard's namespace that start with ``prefix`` (the store's own listing)."""
        listing = self.ctx.store.keys
        return [k for k in listing() if k.startswith(prefix)]

    def _keys(self, role: str) -> list[bytes]:
        raw = self.ctx.store.get(b"pin/" + role.encode()) or b""
        return [raw[i : i + 65] for i in range(0, len(raw), 65)]

    def _policy(self) -> ReleasePolicy:
        raw = self.ctx.store.get(b"policy") or b""
        if self._policy_cache is None or self._policy_cache[0] != raw:
            self._policy_cache = (raw, load_policy(raw).policy)
        return self._policy_cache[1]

    def _cell(self, day: date) -> tuple[date, date]:
        return self._policy().cycle.period_of(day)

    def _violation(self, check: Any, obj: Any) -> None:
        try:
            check(obj, self._policy())
        except PolicyViolation as v:
            raise ISOException(v.sw, v.reason) from None

    def _entitled(self, recipient: str, kind: str) -> None:
        if not self._policy().entitled(recipient, kind):
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, f"{recipient} is not entitled to {kind}")

    def _tariff_split_key(self, recipient: str, day: date) -> bytes:
        return b"V" + f"{recipient}/{self._cell(day)[0].isoformat()}".encode()

    def pieces(self, recipient: str, day: date) -> list[tuple[date, date]]:
        """The pieces of the cell containing ``day`` for ``recipient``: split at the
        customer's split days and at the first day of a tariff of this recipient's that
        takes effect inside the cell (:meth:`GuardPort.accept_tariff`)."""
        raw = self.ctx.store.get(self._tariff_split_key(recipient, day))
        extra = (date.fromisoformat(raw.decode()),) if raw else ()
        return self._policy().cycle.pieces(day, extra)

    def _piece(self, recipient: str, first: date, last: date) -> None:
        """One whole piece of a cell (a whole cell when nothing splits it); the recipient
        cannot choose the boundaries: they are the customer's or the tariff's."""
        if (first, last) not in self.pieces(recipient, first):
            raise ISOException(SW.WRONG_DATA, "not one whole period of the customer's cycle (or one piece of a split period)")

    def _head(self) -> tuple[int, bytes]:
        raw = self.ctx.store.get(b"head") or _u32(0) + bytes(32)
        return int.from_bytes(raw[:4], "big"), raw[4:36]

    def recipient_of(self, client: AID) -> str | None:
        reg = self.ctx.runtime.registry
        rec = reg.get(client) if reg is not None else None
        if rec is None or rec.sd_aid is None or (rec.privileges[:1] and rec.privileges[0] & PRIV_SECURITY_DOMAIN):
            return None
        name = self.ctx.store.get(b"sd/" + rec.sd_aid.raw)
        return None if name is None else name.decode()

    def get_shareable_interface(self, client_aid: AID, parameter: int) -> Shareable | None:
        if parameter == 1:
            return InstallPort(self)
        recipient = self.recipient_of(client_aid)
        return None if recipient is None else GuardPort(self, client_aid, recipient)

    # -- releases -------------------------------------------------------------------------
    def _check(self, recipient: str, kind: str, first: date, last: date, req: str) -> int | None:
        """Entitlement, whole period, one release per period/kind, no overlap. The seq of
        the stored release for a re-ask of the same request, or None."""
        if kind != "export":  # an export's entitlement and period are its consent's
            self._entitled(recipient, kind)
            if kind == "dr":  # one event day; its period is charged (_record)
                if first != last:
                    raise ISOException(SW.WRONG_DATA, "a demand-response release names its event day")
            else:
                self._piece(recipient, first, last)
        idx = self.ctx.store.get(b"R" + f"{recipient}/{kind}/{first.isoformat()}".encode())
        if idx is not None:
            seq = int.from_bytes(idx[:4], "big")
            entry = LogEntry.from_bytes(self.ctx.store.get(b"L" + idx[:4]) or b"")
            if entry.request_digest == req and entry.period_to == last.isoformat():
                return seq
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} for this period already released (another request)")
        for key in self._stored(b"R" + f"{recipient}/{kind}/".encode()):
            raw = self.ctx.store.get(key) or b""
            a, b = date.fromisoformat(raw[4:14].decode()), date.fromisoformat(raw[14:24].decode())
            if not (last < a or b < first):
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} period overlaps {a}..{b}")
        return None

    def _released(self, recipient: str, kind: str, first: date) -> tuple[int, bytes] | None:
        idx = self.ctx.store.get(b"R" + f"{recipient}/{kind}/{first.isoformat()}".encode())
        if idx is None:
            return None
        seq = int.from_bytes(idx[:4], "big")
        return seq, self.ctx.store.get(b"S" + idx[:4]) or b""

    def _check_correction(self, client: AID, recipient: str, kind: str, first: date, last: date,
                          req: str) -> bytes | None:
        if kind != "bill":
            raise ISOException(SW.WRONG_DATA, "only bills are corrected")
        self._entitled(recipient, kind)
        done = self._released(recipient, "correction", first)
        if done is not None:
            entry = LogEntry.from_bytes(self.ctx.store.get(b"L" + _u32(done[0])) or b"")
            if entry.request_digest == req and entry.period_to == last.isoformat():
                return self._hand_out(client, done[0], False)
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this period's bill was already corrected once")
        orig = self._released(recipient, kind, first)
        if orig is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no released bill for this period to correct")
        entry = LogEntry.from_bytes(self.ctx.store.get(b"L" + _u32(orig[0])) or b"")
        if entry.period_to != last.isoformat():
            raise ISOException(SW.WRONG_DATA, "a correction names the corrected bill's period")
        try:
            missing = json.loads(orig[1]).get("missing") if orig[1][:1] == b"{" else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            missing = None
        if not missing:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the released bill has no missing days to correct")
        return None

    def _entries(self, recipient: str) -> list[LogEntry]:
        """The log entries of every period release to ``recipient`` (aggregation slots,
        whose index value is the bare sequence number, are skipped)."""
        out = []
        for key in self._stored(b"R" + f"{recipient}/".encode()):
            idx = self.ctx.store.get(key) or b""
            if len(idx) == 24:
                out.append(LogEntry.from_bytes(self.ctx.store.get(b"L" + idx[:4]) or b""))
        return out

    def _charges(self, recipient: str) -> list[tuple[date, date, int]]:
        """The support (first day, last day) and functionals of every release to
        ``recipient`` that counts against its budget, read from the log."""
        return [(*charged_span(e), e.functionals) for e in self._entries(recipient)
                if e.functionals and e.kind not in AGGREGATE_KINDS]

    def _record(self, recipient: str, kind: str, first: date, last: date, req: str, statement: bytes,
                client: AID, functionals: int, samples: int, *, consent: str = "",
                support_from: date | None = None, epsilon_milli: int = 0) -> int:
        pol = self._policy()
        budget = pol.limit("budget", "functionals_per_period")
        # Charged per calendar time over the release's support (policy.log.over_budget):
        # every cell it touches, against every earlier release overlapping that cell.
        over = over_budget(pol.cycle, budget, self._charges(recipient), support_from or first, last, functionals)
        if over is not None:
            raise ISOException(SW_BUDGET, f"{recipient} has {max(budget - over[1], 0)} of {budget} functionals left "
                               f"in the period from {over[0]}, {functionals} asked")
        extra: dict[bytes, bytes] = {}
        if epsilon_milli:  # the per-household DP budget, per calendar time like the functionals
            cap = pol.limit("dp", "epsilon_milli_per_period")
            over = over_budget(pol.cycle, cap, epsilon_charges(self._entries(recipient)), support_from or first, last,
                               epsilon_milli)
            if over is not None:
                raise ISOException(SW_BUDGET, f"{recipient} has {max(cap - over[1], 0)} of {cap} milli-epsilon left "
                                   f"in the period from {over[0]}, {epsilon_milli} asked")
        if kind == "dr":  # the policy's cap on events per period (docs/privacy.md)
            ekey = b"E" + f"{recipient}/{self._cell(first)[0].isoformat()}".encode()
            events = int.from_bytes(self.ctx.store.get(ekey) or bytes(4), "big")
            cap = pol.limit("dr", "events_per_period")
            if events >= cap:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{recipient} already had {cap} demand-response events this period")
            extra[ekey] = _u32(events + 1)
        count, head = self._head()
        entry = LogEntry(count, kind, recipient, first.isoformat(), last.isoformat(), pol.version,
                         client.raw.hex().upper(), req, hashlib.sha256(statement).hexdigest(), functionals, samples,
                         consent, support_from=support_from.isoformat() if support_from else "",
                         epsilon_milli=epsilon_milli)
        raw = entry.canonical_bytes()
        self.ctx.begin_transaction()
        self.ctx.store.put(b"S" + _u32(count), statement)
        self.ctx.store.put(b"L" + _u32(count), raw)
        self.ctx.store.put(b"R" + f"{recipient}/{kind}/{first.isoformat()}".encode(),
                           _u32(count) + first.isoformat().encode() + last.isoformat().encode())
        for k, v in extra.items():
            self.ctx.store.put(k, v)
        self.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        self.ctx.store.put(b"O" + client.raw, _u32(count))  # the outbox pointer, same transaction
        self.ctx.commit_transaction()
        return count

    def _hand_out(self, client: AID, seq: int, chunked: bool) -> bytes:
        out = self.ctx.store.get(b"S" + _u32(seq))
        if out is None:
            raise ISOException(SW.UNKNOWN, "release log and statements disagree")
        if not chunked:
            return _issue(self.ctx.runtime, client, out)
        if self.ctx.store.get(b"O" + client.raw) != _u32(seq):
            self.ctx.store.put(b"O" + client.raw, _u32(seq))
        return _issue(self.ctx.runtime, client, _u32(len(out)) + out[:CHUNK])

    def _append_policy_entry(self, policy: ReleasePolicy, signed: SignedPolicy) -> None:
        count, head = self._head()
        entry = LogEntry(count, "policy", "customer", "", "", policy.version, GUARD_AID, signed.signature.hex()[:64],
                         policy.digest().hex(), 0)
        raw = entry.canonical_bytes()
        self.ctx.begin_transaction()
        self.ctx.store.put(b"policy", dump_policy(signed))
        self.ctx.store.put(b"L" + _u32(count), raw)
        self.ctx.store.put(b"S" + _u32(count), dump_policy(signed))
        self.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        self.ctx.commit_transaction()

    def _consent_ok(self, recipient: str, consent_id: str, first: date, last: date, resolution: int,
                    today: date | None) -> Consent:
        raw = self.ctx.store.get(b"K" + consent_id.encode())
        if raw is None:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "no such consent")
        if self.ctx.store.get(b"X" + consent_id.encode()) is not None:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "the consent was revoked")
        c = load_consent(raw).consent
        if c.recipient != recipient:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "the consent names another recipient")
        if first < c.period_from or last > c.period_to or last < first:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "outside the consented period")
        if resolution < c.resolution_minutes or resolution % c.resolution_minutes:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "finer than the consented resolution")
        if today is not None and today >= c.expires:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "the consent has expired")
        return c

    def _append_entry(self, entry_of: Any, extra: dict[bytes, bytes], document: bytes) -> None:
        """Append a bookkeeping entry (built by ``entry_of(seq)``), its ``document`` and the
        ``extra`` writes in one transaction."""
        count, head = self._head()
        raw = entry_of(count).canonical_bytes()
        self.ctx.begin_transaction()
        for k, v in extra.items():
            self.ctx.store.put(k, v)
        self.ctx.store.put(b"L" + _u32(count), raw)
        self.ctx.store.put(b"S" + _u32(count), document)
        self.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        self.ctx.commit_transaction()

    @ins(0x50, cla=0x80)
    def add_consent(self, apdu: CommandAPDU) -> None:
        """ADD CONSENT: a consent signed by the customer's key (docs/privacy.md)."""
        customer = self.ctx.store.get(b"customer") or b""
        raw = bytes(apdu.data)
        try:
            c = verify_consent(load_consent(raw), customer)
        except PolicyError:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "not a consent signed by the customer") from None
        if self.ctx.store.get(b"K" + c.consent_id.encode()) is not None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a consent with this id exists")
        pol = self._policy()
        self._append_entry(
            lambda seq: LogEntry(seq, "consent", c.recipient, c.period_from.isoformat(), c.period_to.isoformat(),
                                 pol.version, GUARD_AID, hashlib.sha256(raw).hexdigest(), c.digest().hex(), 0, 0,
                                 c.consent_id),
            {b"K" + c.consent_id.encode(): raw},
            raw,
        )

    @ins(0x52, cla=0x80)
    def revoke_consent(self, apdu: CommandAPDU) -> None:
        """REVOKE CONSENT: a revocation signed by the customer's key; further exports stop."""
        customer = self.ctx.store.get(b"customer") or b""
        raw = bytes(apdu.data)
        try:
            cid = verify_revocation(raw, customer)
        except PolicyError:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "not a revocation signed by the customer") from None
        stored = self.ctx.store.get(b"K" + cid.encode())
        if stored is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no such consent")
        if self.ctx.store.get(b"X" + cid.encode()) is not None:
            return  # already revoked
        c = load_consent(stored).consent
        pol = self._policy()
        self._append_entry(
            lambda seq: LogEntry(seq, "revoke", c.recipient, c.period_from.isoformat(), c.period_to.isoformat(),
                                 pol.version, GUARD_AID, hashlib.sha256(raw).hexdigest(), c.digest().hex(), 0, 0, cid),
            {b"X" + cid.encode(): raw},
            raw,
        )

    # -- customer commands ----------------------------------------------------------------
    @ins(0x40, cla=0x80)
    def get_policy(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get(b"policy") or b""

    @ins(0x42, cla=0x80)
    def set_policy(self, apdu: CommandAPDU) -> None:
        customer = self.ctx.store.get(b"customer") or b""
        try:
            signed = load_policy(bytes(apdu.data))
        except PolicyError:
            raise ISOException(SW.WRONG_DATA, "malformed policy or beyond the hard limits") from None
        try:
            policy = verify_policy(signed, customer)
        except PolicyError:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "not signed by the customer's key") from None
        if policy.version <= self._policy().version:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the policy version must increase")
        self._append_policy_entry(policy, signed)

    @ins(0x44, cla=0x80)
    def get_log_head(self, apdu: CommandAPDU) -> bytes:
        count, head = self._head()
        return _u32(count) + head

    def _seq_of(self, apdu: CommandAPDU) -> bytes:
        if len(apdu.data) != 4:
            raise ISOException(SW.WRONG_LENGTH, "takes a u32 sequence number")
        if int.from_bytes(apdu.data, "big") >= self._head()[0]:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no such entry")
        return bytes(apdu.data)

    @ins(0x46, cla=0x80)
    def read_log_entry(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get(b"L" + self._seq_of(apdu)) or b""

    @ins(0x48, cla=0x80)
    def get_pinned(self, apdu: CommandAPDU) -> bytes:
        roles = {}
        for key in self._stored(b"pin/"):
            role = key[4:].decode()
            roles[role] = [k.hex() for k in self._keys(role)]
        return json.dumps({"customer": (self.ctx.store.get(b"customer") or b"").hex(), "pinned": roles},
                          sort_keys=True, separators=(",", ":")).encode()

    @ins(0x4A, cla=0x80)
    def get_release(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get(b"S" + self._seq_of(apdu)) or b""


register_applet_class(GUARD_CLASS, PrivacyGuard)
