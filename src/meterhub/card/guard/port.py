"""What an applet may ask the privacy guard: the shareable interfaces :class:`GuardPort`
and :class:`InstallPort` (JCRE §6.2.4; :mod:`meterhub.card.guard`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ...crypto.sampling import commit_hub_nonce
from ...model.formats.aggregation import (
    AggregationRequest,
    FormatError,
    GroupDefinition,
    PolicyRefusal,
    RecoveryRequest,
)
from ...model.group_registry import (
    HeadTags,
    RegistryBlock,
    RegistryFull,
    RegistryView,
    day_mask_digest,
)
from ...policy import (
    AGGREGATE_KINDS,
    KINDS,
    LogEntry,
    chain_hash,
    check_pair_support,
    check_profile,
    check_support,
    check_tariff,
)
from ...policy.log import epsilon_charges
from ...protocols.iso7816.aid import AID
from ...protocols.iso7816.sw import SW, ISOException
from ..runtime import Shareable, shareable_interface
from .common import CHUNK, GROUP_POLICY, _issue, _policy_kind, _u32

if TYPE_CHECKING:
    from .applet import PrivacyGuard


@shareable_interface
class GuardPort(Shareable):
    """What an applet may ask the guard (every call runs in the guard's context)."""

    def __init__(self, guard: PrivacyGuard, client: AID, recipient: str) -> None:
        self._guard = guard
        self._client = client
        self._recipient = recipient

    def recipient(self) -> str:
        return self._recipient

    def pinned(self, role: str) -> list[bytes]:
        """Keys for ``price-index``, ``load-profile`` (the neutral publisher and this
        recipient's own profile signer), ``tariff`` (this recipient's signers) or
        ``group`` (this recipient's aggregation-group signer) and ``dr-event`` (this
        recipient's VTN event-signing key) and ``member-cert`` (who certifies the members of
        this recipient's aggregation groups)."""
        g = self._guard
        if role in ("tariff", "group", "dr-event", "member-cert"):
            return g._keys(f"{role}/{self._recipient}")
        if role == "load-profile":
            return g._keys("load-profile") + g._keys(f"load-profile/{self._recipient}")
        if role == "price-index":
            return g._keys("price-index")
        raise ISOException(SW.WRONG_DATA, "unknown publisher role")

    def check_series(self, kind: str, series: Any) -> None:
        """The policy's shape limits for a reference profile (``6A80``)."""
        if kind == "load-profile":
            self._guard._violation(check_profile, series)

    def check_weights(self, profiles: list[tuple[str, list[int]]], minutes: int) -> None:
        """The weights of the profiles of one release over the released period, before any
        score is computed: no profile, and no two of them together, may isolate fewer hours
        than the policy's minimum support from the energy (``6A80``;
        :func:`meterhub.policy.check_support`, :func:`meterhub.policy.check_pair_support`).
        A series that passed at push time can still be a spike over the one period asked
        for, or differ from another by a spike."""
        g = self._guard
        for sid, w in profiles:
            g._violation(lambda w, pol, sid=sid: check_support(w, minutes, pol, name=f"profile {sid}"), list(w))
        for i, (sa, wa) in enumerate(profiles):
            for sb, wb in profiles[i + 1 :]:
                g._violation(lambda pair, pol, sa=sa, sb=sb: check_pair_support(
                    pair[0], pair[1], minutes, pol, name=f"profiles {sa} and {sb}"), (list(wa), list(wb)))

    def accept_tariff(self, tariff: Any, today: date | None) -> None:
        """Shape limits (``6A80``) and at most the policy's tariff changes per billing
        period (``6985``); ``today`` is the last reading day the applet holds."""
        g = self._guard
        pol = g._policy()
        g._violation(check_tariff, tariff)
        digest = tariff.digest()
        key = b"C" + self._recipient.encode() + b"/" + (g._cell(today)[0].isoformat().encode() if today else b"-")
        seen = g.ctx.store.get(key) or b""
        changes = [seen[i : i + 32] for i in range(0, len(seen), 32)]
        if digest in changes:
            return
        if len(changes) >= max(1, pol.limit("tariff", "max_changes_per_period")):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the tariff already changed in this billing period")
        # A tariff taking effect inside a cell splits it there (docs/privacy.md, "Split
        # periods"): one such day per cell, and not inside a piece already released.
        start = getattr(getattr(tariff, "base", tariff), "valid_from", None)
        writes = {key: seen + digest}
        if isinstance(start, date) and g._cell(start)[0] != start:
            vkey = g._tariff_split_key(self._recipient, start)
            old = g.ctx.store.get(vkey)
            if old is not None and old != start.isoformat().encode():
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a tariff already takes effect inside this billing period")
            for kind in KINDS:
                for rkey in g._stored(b"R" + f"{self._recipient}/{kind}/".encode()):
                    raw = g.ctx.store.get(rkey) or b""
                    a, b = date.fromisoformat(raw[4:14].decode()), date.fromisoformat(raw[14:24].decode())
                    if a < start <= b:
                        raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} for {a}..{b} is released: the tariff cannot split it")
            writes[vkey] = start.isoformat().encode()
        g.ctx.begin_transaction()
        for k, v in writes.items():
            g.ctx.store.put(k, v)
        g.ctx.commit_transaction()

    def state(self, next_index: int, last_day: bytes) -> bytes:
        """Issue the non-release GET STATE answer (``u64 next index || day``)."""
        if len(last_day) not in (0, 4) or not 0 <= next_index < 1 << 64:
            raise ISOException(SW.WRONG_DATA, "bad state")
        return _issue(self._guard.ctx.runtime, self._client, next_index.to_bytes(8, "big") + last_day)

    # -- sampling: commit-then-reveal -------------------------------------------------
    def toss_commit(self, meter_id: str, first: date, last: date, k: int, commitment: bytes,
                    last_day: date | None) -> bytes:
        """Record the recipient's commitment; answer the commitment to the hub's nonce."""
        g = self._guard
        pol = g._policy()
        g._entitled(self._recipient, "samples")
        g._piece(self._recipient, first, last)
        if k < pol.limit("sampling", "min_k"):
            raise ISOException(SW.WRONG_DATA, f"k = {k} is below the policy's floor {pol.limit('sampling', 'min_k')}")
        key = b"T" + self._recipient.encode() + b"/" + first.isoformat().encode()
        rec = g.ctx.store.get(key)
        if rec is not None:
            # The same commitment and k again (the answer was lost to a crash or a dropped
            # link): the same answer again, so a retry cannot re-toss the coin.
            if hmac.compare_digest(rec[:34], k.to_bytes(2, "big") + bytes(commitment)) and rec[66:] == meter_id.encode():
                return _issue(g.ctx.runtime, self._client, commit_hub_nonce(rec[34:66]))
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "one coin toss per sampling period")
        if last_day is not None and last_day >= first:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the period has already begun")
        hub_nonce = g.ctx.random_bytes(32)
        g.ctx.store.put(key, k.to_bytes(2, "big") + bytes(commitment) + hub_nonce + meter_id.encode())
        return _issue(g.ctx.runtime, self._client, commit_hub_nonce(hub_nonce))

    def toss(self, first: date) -> tuple[int, bytes, bytes, str] | None:
        """``(k, commitment, hub nonce, meter id)`` of this recipient's toss for the period."""
        rec = self._guard.ctx.store.get(b"T" + self._recipient.encode() + b"/" + first.isoformat().encode())
        if rec is None:
            return None
        return int.from_bytes(rec[:2], "big"), rec[2:34], rec[34:66], rec[66:].decode()

    # -- releases -----------------------------------------------------------------------
    def begin(self, kind: str, first: date, last: date, request: bytes, *, chunked: bool) -> bytes | None:
        """Policy checks before computing. A re-ask of a released request answers the
        stored statement (issued); ``None``: the applet may compute and :meth:`commit`.
        Kind ``dr`` names the event day (``first == last``) instead of a whole period and
        the event id in ``request``: one release per recipient and event day."""
        g = self._guard
        _policy_kind(kind)
        seq = g._check(self._recipient, kind, first, last, hashlib.sha256(request).hexdigest())
        if seq is None:
            return None
        return g._hand_out(self._client, seq, chunked)

    def commit(self, kind: str, first: date, last: date, request: bytes, statement: bytes, *,
               functionals: int, samples: int = 0, chunked: bool, support_from: date | None = None,
               epsilon_milli: int = 0) -> bytes:
        """Check the budget, store statement and log entry atomically, hand out the bytes.
        ``support_from``: for kind ``dr``, the earliest baseline day; the functional is
        charged to every period from there to the event day (docs/privacy.md).
        ``epsilon_milli``: the differential-privacy loss of a ``dp-forecast`` release,
        charged to the period's ``dp.epsilon_milli_per_period`` (docs/privacy.md)."""
        g = self._guard
        _policy_kind(kind)
        if not (isinstance(functionals, int) and isinstance(samples, int) and functionals >= 0 and samples >= 0):
            raise ISOException(SW.WRONG_DATA, "functionals and samples are counts")
        if support_from is not None and (kind != "dr" or support_from >= first):
            raise ISOException(SW.WRONG_DATA, "only a demand-response release reaches back to baseline days")
        if not isinstance(epsilon_milli, int) or epsilon_milli < 0 or (kind == "dp-forecast") != (epsilon_milli > 0):
            raise ISOException(SW.WRONG_DATA, "a dp-forecast release, and only it, spends a positive epsilon")
        req = hashlib.sha256(request).hexdigest()
        seq = g._check(self._recipient, kind, first, last, req)
        if seq is None:
            seq = g._record(self._recipient, kind, first, last, req, bytes(statement), self._client,
                            functionals, samples, support_from=support_from, epsilon_milli=epsilon_milli)
        return g._hand_out(self._client, seq, chunked)

    def dp_limits(self) -> dict[str, int]:
        """The ``dp`` section of the policy in force: epsilon per period (milli), clip, unit."""
        return dict(self._guard._policy().limits["dp"])

    def dp_left(self, first: date, last: date | None = None) -> int:
        """Milli-epsilon this recipient may still spend on a release over ``first..last``
        (default: ``first``'s cell): the cap less the most already charged, per calendar
        time (:func:`~meterhub.policy.log.over_budget`), to any cell it touches."""
        g = self._guard
        pol = g._policy()
        cap = pol.limit("dp", "epsilon_milli_per_period")
        charges = epsilon_charges(g._entries(self._recipient))
        spent, (a, b) = 0, g._cell(first)
        while a <= (last or first):
            spent = max(spent, sum(e for x, y, e in charges if not (y < a or b < x)))
            a, b = g._cell(b + timedelta(days=1))
        return max(0, cap - spent)

    # -- corrections (docs/privacy.md, "Gaps and corrections") ---------------------------
    def released(self, kind: str, first: date) -> tuple[int, bytes] | None:
        """``(seq, bytes)`` of this recipient's release of ``kind`` for the period starting
        ``first`` (the applet's own earlier output), or None."""
        return self._guard._released(self._recipient, kind, first)

    def begin_correction(self, kind: str, first: date, last: date, request: bytes) -> bytes | None:
        """Checks before computing a correction of the ``kind`` release for ``first..last``:
        it exists and listed missing days (``6985`` otherwise; ``6A88`` when there is no
        release to correct), and no other correction of it was released (``6985``). A
        re-ask of the same correction answers the stored bytes; None: compute and
        :meth:`commit_correction`."""
        return self._guard._check_correction(self._client, self._recipient, kind, first, last,
                                             hashlib.sha256(request).hexdigest())

    def commit_correction(self, kind: str, first: date, last: date, request: bytes, statement: bytes, *,
                          functionals: int) -> bytes:
        """Record the one correction of the period's release (log kind ``correction``,
        charged to the budget like any release) and hand out the bytes."""
        g = self._guard
        if not isinstance(functionals, int) or functionals < 0:
            raise ISOException(SW.WRONG_DATA, "functionals is a count")
        req = hashlib.sha256(request).hexdigest()
        again = g._check_correction(self._client, self._recipient, kind, first, last, req)
        if again is not None:
            return again
        seq = g._record(self._recipient, "correction", first, last, req, bytes(statement), self._client,
                        functionals, 0)
        return g._hand_out(self._client, seq, False)

    # -- private aggregation (docs/fraud.md) ------------------------------------------
    def issue_key(self, key: bytes) -> bytes:
        """Issue the aggregation applet's 32-byte X25519 public key (no release: it is
        drawn from the card's random source and says nothing about readings)."""
        if len(key) != 32:
            raise ISOException(SW.WRONG_DATA, "an X25519 public key is 32 bytes")
        return _issue(self._guard.ctx.runtime, self._client, bytes(key))

    def admit_group(self, raw: bytes, meter_id: str, own_key: bytes) -> None:
        """Admit a signed group definition for this recipient under :class:`GroupPolicy`,
        against every group this recipient has on the card, whichever of its applets
        admitted it. Malformed ``6A80``, signature ``6982``, policy ``6985``."""
        g = self._guard
        g._entitled(self._recipient, "aggregate")
        try:
            group = GroupDefinition.from_bytes(raw)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed group definition") from None
        prefix = b"G" + self._recipient.encode() + b"/"
        known = [GroupDefinition.from_bytes(g.ctx.store.get(k) or b"") for k in g._stored(prefix)]
        try:
            GROUP_POLICY.admit(group, self.pinned("group"), meter_id, bytes(own_key), known)
        except PermissionError as exc:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, str(exc)) from None
        except PolicyRefusal as exc:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
        listed = self._registry().groups.get(group.group_id)
        if listed is None or listed.body() != group.body():
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                               f"group {group.group_id} is not in the group registry this hub holds")
        key = prefix + group.group_id.encode()
        if g.ctx.store.get(key) is None:
            g.ctx.store.put(key, group.to_bytes())

    # -- the group registry (meterhub.model.group_registry, docs/fraud.md) --------------------
    def _qkey(self, *parts: bytes) -> bytes:
        return b"Q" + self._recipient.encode() + b"/" + b"/".join(parts)

    def _registry(self) -> RegistryView:
        g = self._guard
        raw = g.ctx.store.get(self._qkey(b"head"))
        if raw is None:
            return RegistryView()
        hit = g._registry_cache.get(self._recipient)
        if hit is not None and hit[0] == raw:
            return hit[1]
        n = raw[0]
        feeder, version, head = raw[1 : 1 + n].decode(), int.from_bytes(raw[1 + n : 5 + n], "big"), raw[5 + n :]
        groups = {}
        for k in g._stored(self._qkey(b"g", b"")):
            grp = GroupDefinition.from_bytes(g.ctx.store.get(k) or b"")
            groups[grp.group_id] = grp
        view = RegistryView(feeder, version, head, groups)
        g._registry_cache[self._recipient] = (raw, view)
        return view

    def registry_view(self) -> RegistryView:
        """This recipient's group registry as the hub holds it (for the applet's tags)."""
        return self._registry()

    def issue_head_tags(self, raw: bytes) -> bytes:
        """Issue the applet's tags over this recipient's current registry head (applet
        message ``05``): MACs under pair keys, about the registry only (no release)."""
        try:
            tags = HeadTags.from_bytes(bytes(raw))
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed registry head tags") from None
        view = self._registry()
        if (tags.feeder_id, tags.version, tags.head) != (view.feeder_id, view.version, view.head):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tags over another registry head than this hub's")
        return _issue(self._guard.ctx.runtime, self._client, bytes(raw))

    def record_head_tags(self, peers: Iterable[str], version: int, head: bytes) -> None:
        """Record that ``peers`` (the applet checked their tags) hold this recipient's
        current registry head, in one card transaction."""
        g = self._guard
        view = self._registry()
        if (version, bytes(head)) != (view.version, view.head):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tags over another registry head than this hub's")
        g.ctx.begin_transaction()
        for p in peers:
            g.ctx.store.put(self._qkey(b"a", p.encode()), _u32(version) + bytes(head))
        g.ctx.commit_transaction()

    def _check_head_held(self, meter_id: str) -> None:
        """Forks (docs/fraud.md): once this hub has released under one registry head, it
        releases under another only when every co-member has tagged that head (each then
        held it, so no two of them release on branches that do not extend each other)."""
        g = self._guard
        last = g.ctx.store.get(self._qkey(b"last"))
        view = self._registry()
        if last is None or last == view.head:
            return
        want = _u32(view.version) + view.head
        lacking = sorted(p for p in view.co_members(meter_id) if g.ctx.store.get(self._qkey(b"a", p.encode())) != want)
        if lacking:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                               f"the registry changed since this hub's last release and {len(lacking)} co-member(s) "
                               f"have not tagged its head ({', '.join(lacking[:3])}{', ...' if len(lacking) > 3 else ''})")

    def registry_head(self) -> bytes:
        """Issue ``u32 blocks held || 32-byte chain value`` of this recipient's group
        registry (the recipient's own published data; no release)."""
        view = self._registry()
        return _issue(self._guard.ctx.runtime, self._client, _u32(view.version + 1) + view.head)

    def extend_registry(self, raw: bytes) -> None:
        """Append the next block of this recipient's group registry after
        :meth:`RegistryView.check_extension` (signature, or a member without a certificate
        from the pinned member certifier binding its meter id and hub key, ``6982``; no
        member certifier pinned, not the next block, another feeder, a registry that
        isolates a household or adds to a released day ``6985``; a registry beyond
        ``MAX_REGISTRY_MEMBERS`` (256) distinct members or ``MAX_REGISTRY_GROUPS`` (1,024)
        groups ``6A84``, refused before the span test; malformed ``6A80``). A block this hub holds already is accepted again
        without change (the grid operator may resend its chain)."""
        g = self._guard
        g._entitled(self._recipient, "aggregate")
        try:
            block = RegistryBlock.from_bytes(raw)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed registry block") from None
        view = self._registry()
        if block.version <= view.version:
            if g.ctx.store.get(self._qkey(b"v", _u32(block.version))) == block.chain_value():
                return
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                               f"registry block {block.version} differs from the one this hub holds (equivocation)")
        try:
            view.check_extension(block, self.pinned("group"), self._released_days(), min_size=GROUP_POLICY.min_size,
                                 interval_minutes=GROUP_POLICY.interval_minutes,
                                 certifier_keys=self.pinned("member-cert"), answered=self._answered_days())
        except PermissionError as exc:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, str(exc)) from None
        except RegistryFull as exc:  # checked before any costly test: the card stays free
            raise ISOException(SW.FILE_FULL, str(exc)) from None
        except PolicyRefusal as exc:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
        new = view.extended(block)
        feeder = block.feeder_id.encode()
        g.ctx.begin_transaction()
        for grp in block.groups:
            g.ctx.store.put(self._qkey(b"g", grp.group_id.encode()), grp.to_bytes())
        g.ctx.store.put(self._qkey(b"v", _u32(block.version)), new.head)
        g.ctx.store.put(self._qkey(b"head"), bytes([len(feeder)]) + feeder + _u32(new.version) + new.head)
        g.ctx.commit_transaction()

    def _released_days(self) -> frozenset[date]:
        """The days this recipient's aggregation applets have released (a group or an
        unmasking answer), from the guard's own ``d/`` records."""
        prefix = self._qkey(b"d", b"")
        out = set()
        for k in self._guard._stored(prefix):
            try:
                out.add(date.fromisoformat(k[len(prefix):].decode()))
            except ValueError:
                continue  # another recipient's key that shares this prefix, not a day
        return frozenset(out)

    def day_span(self, day: date) -> bytes:
        """The span digest of ``day``'s groups in this recipient's registry, bound with the
        registry head this hub released the day under (its current head before its first
        release of the day), which the applet binds into the day's masks
        (:func:`meterhub.model.formats.aggregation.mask_context`): members that hold
        different spans of the day, or different registries, derive masks that do not cancel."""
        g = self._guard
        view = self._registry()
        frozen = g.ctx.store.get(self._qkey(b"d", day.isoformat().encode()))
        head = frozen if frozen is not None and len(frozen) == 32 else view.head
        key = (self._recipient, view.head, day, head)
        hit = g._span_cache.get(key)
        if hit is None:
            if len(g._span_cache) > 256:
                g._span_cache.clear()
            hit = g._span_cache[key] = day_mask_digest(view.day_span(day), head)
        return hit

    def group(self, group_id: str) -> GroupDefinition:
        """An admitted group of this recipient (``6A88`` if none)."""
        raw = self._guard.ctx.store.get(b"G" + self._recipient.encode() + b"/" + group_id.encode())
        if raw is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no group {group_id}")
        return GroupDefinition.from_bytes(raw)

    def _group_release(self, kind: str, request: bytes, meter_id: str,
                       own_key: bytes) -> tuple[GroupDefinition, date, str]:
        g = self._guard
        g._entitled(self._recipient, "aggregate")
        try:
            req = AggregationRequest.from_bytes(request) if kind == "aggregate" else RecoveryRequest.from_bytes(request)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, f"malformed {kind} request") from None
        group = self.group(req.group_id)
        me = group.member(meter_id)
        if me is None or me.hub_key != bytes(own_key):  # another applet of the recipient
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this applet is not the group's member for its meter")
        if not group.valid_from <= req.day <= group.valid_to:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "day outside the group's validity")
        def slot(k: str) -> str:  # (a group id is printable ASCII, braces included)
            return "/".join((self._recipient, k, group.group_id, req.day.isoformat()))

        if kind == "recovery":
            if g.ctx.store.get(b"R" + slot("aggregate").encode()) is None:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this hub has not released the day")
            assert isinstance(req, RecoveryRequest)
            present = tuple(p for p, _ in req.present)
            try:
                GROUP_POLICY.check_recovery(group, meter_id, req.missing, present)
            except PolicyRefusal as exc:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
            # double masking: for each member one kind of answer per group-day, never
            # both (pairwise masks if missing, self-mask share if present; docs/fraud.md)
            for mid, kind_asked in [*((m, b"D") for m in req.missing), *((p, b"P") for p in present)]:
                had = g.ctx.store.get(self._mark(group.group_id, req.day, mid))
                if had is not None and had != kind_asked:
                    raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                                       f"{mid} was answered as {'missing' if had == b'D' else 'present'} "
                                       "for this group and day; the other kind is refused")
            # the present set's sum must not leave the registry's span for the day,
            # with the recoveries this card answered that day (docs/fraud.md)
            problems = self._registry().recovery_problems(
                group.group_id, req.day, group.meter_ids - set(req.missing), self._answered(req.day),
                min_size=GROUP_POLICY.min_size)
            if problems:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"recovery refused: {problems[0]}")
        return group, req.day, slot(kind)

    def _answered(self, day: date) -> dict[str, frozenset[str]]:
        """The present sets of the recoveries this card answered on ``day``, by group."""
        g = self._guard
        prefix = self._qkey(b"p", day.isoformat().encode(), b"")
        out = {}
        for k in g._stored(prefix):
            raw = (g.ctx.store.get(k) or b"").decode()
            out[k[len(prefix):].decode()] = frozenset(raw.split("\n")) if raw else frozenset()
        return out

    def _answered_days(self) -> dict[date, dict[str, frozenset[str]]]:
        """:meth:`_answered` for every day with a recovery this card answered (one listing)."""
        prefix = self._qkey(b"p", b"")
        out: dict[date, dict[str, frozenset[str]]] = {}
        for k in self._guard._stored(prefix):
            day, sep, gid = k[len(prefix):].decode().partition("/")
            try:
                d = date.fromisoformat(day)
            except ValueError:
                continue  # another recipient's key that shares this prefix, not a day
            if sep:
                raw = (self._guard.ctx.store.get(k) or b"").decode()
                out.setdefault(d, {})[gid] = frozenset(raw.split("\n")) if raw else frozenset()
        return out

    def _mark(self, group_id: str, day: date, member: str) -> bytes:
        return b"U" + "/".join((self._recipient, group_id, day.isoformat(), member)).encode()

    def begin_aggregate(self, kind: str, request: bytes, meter_id: str,
                        own_key: bytes) -> tuple[bytes | None, GroupDefinition, date]:
        """For ``aggregate`` (the day's masked sums) or ``recovery`` (one per group and
        day): entitlement ``aggregate`` (``6982``), an admitted group (``6A88``), the day
        within its validity, the recovery rules (``6985``). A re-ask of the same request
        answers the stored bytes; another request for the group and day ``6985``."""
        if kind not in AGGREGATE_KINDS:
            raise ISOException(SW.WRONG_DATA, "unknown kind of aggregation release")
        g = self._guard
        group, day, slot = self._group_release(kind, request, meter_id, own_key)
        idx = g.ctx.store.get(b"R" + slot.encode())
        if idx is None:
            if kind == "aggregate":
                self._check_head_held(meter_id)
            return None, group, day
        entry = LogEntry.from_bytes(g.ctx.store.get(b"L" + idx[:4]) or b"")
        if entry.request_digest != hashlib.sha256(request).hexdigest():
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} for this group and day already answered (another request)")
        return g._hand_out(self._client, int.from_bytes(idx[:4], "big"), False), group, day

    def commit_aggregate(self, kind: str, request: bytes, meter_id: str, own_key: bytes, statement: bytes, *,
                         hours: int) -> bytes:
        """Log and store the release (one card transaction), then hand out its bytes."""
        again, group, day = self.begin_aggregate(kind, request, meter_id, own_key)
        if again is not None:
            return again
        g = self._guard
        pol = g._policy()
        slot = "/".join((self._recipient, kind, group.group_id, day.isoformat()))
        count, head = g._head()
        entry = LogEntry(count, kind, self._recipient, day.isoformat(), day.isoformat(), pol.version,
                         self._client.raw.hex().upper(), hashlib.sha256(request).hexdigest(),
                         hashlib.sha256(statement).hexdigest(), hours if kind == "aggregate" else 0, 0,
                         group=group.group_id)
        raw = entry.canonical_bytes()
        g.ctx.begin_transaction()
        g.ctx.store.put(b"S" + _u32(count), bytes(statement))
        g.ctx.store.put(b"L" + _u32(count), raw)
        g.ctx.store.put(b"R" + slot.encode(), _u32(count))
        g.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        day_key = self._qkey(b"d", day.isoformat().encode())
        if g.ctx.store.get(day_key) is None:  # no retroactive groups; the head the day is released under
            g.ctx.store.put(day_key, self._registry().head)
        if kind == "aggregate":
            g.ctx.store.put(self._qkey(b"last"), self._registry().head)
        if kind == "recovery":  # which kind this card answered for each member, same transaction
            req = RecoveryRequest.from_bytes(request)
            for m in req.missing:
                g.ctx.store.put(self._mark(group.group_id, day, m), b"D")
            for p, _ in req.present:
                g.ctx.store.put(self._mark(group.group_id, day, p), b"P")
            # the present set this answer enables, counted by later recoveries of the day
            g.ctx.store.put(self._qkey(b"p", day.isoformat().encode(), group.group_id.encode()),
                            "\n".join(sorted(group.meter_ids - set(req.missing))).encode())
        g.ctx.commit_transaction()
        return g._hand_out(self._client, count, False)

    # -- consented export -------------------------------------------------------------
    def begin_export(self, consent_id: str, first: date, last: date, resolution: int, request: bytes,
                     today: date | None) -> bytes | None:
        """Like :meth:`begin` for kind ``export``: a valid consent of the customer for this
        recipient, period and resolution replaces the policy's entitlement (``6982``)."""
        g = self._guard
        g._consent_ok(self._recipient, consent_id, first, last, resolution, today)
        seq = g._check(self._recipient, "export", first, last, hashlib.sha256(request).hexdigest())
        return None if seq is None else g._hand_out(self._client, seq, True)

    def commit_export(self, consent_id: str, first: date, last: date, resolution: int, request: bytes,
                      document: bytes, readings: int, today: date | None) -> bytes:
        g = self._guard
        g._consent_ok(self._recipient, consent_id, first, last, resolution, today)
        req = hashlib.sha256(request).hexdigest()
        seq = g._check(self._recipient, "export", first, last, req)
        if seq is None:
            seq = g._record(self._recipient, "export", first, last, req, bytes(document), self._client,
                            0, readings, consent=consent_id)
        return g._hand_out(self._client, seq, True)

    def fetch(self, offset: int) -> bytes:
        """The chunk at ``offset`` of this client's last handed-out statement."""
        g = self._guard
        raw = g.ctx.store.get(b"O" + self._client.raw)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "nothing to fetch")
        out = g.ctx.store.get(b"S" + raw) or b""
        if not 0 <= offset <= len(out):
            raise ISOException(SW.WRONG_DATA, "offset out of range")
        return _issue(g.ctx.runtime, self._client, _u32(len(out)) + out[offset : offset + CHUNK])


@shareable_interface
class InstallPort(Shareable):
    """Granted to any client (parameter 1): is a key pinned for a role? Used while an
    applet installs, before its registry record (and so its recipient) exists."""

    def __init__(self, guard: PrivacyGuard) -> None:
        self._guard = guard

    def is_pinned(self, role: str, key: bytes) -> bool:
        g = self._guard
        roles = [r.decode()[4:] for r in g._stored(b"pin/")]
        return any(bytes(key) in g._keys(r) for r in roles if r == role or r.startswith(role + "/"))
