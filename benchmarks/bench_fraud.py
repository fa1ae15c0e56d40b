"""Private verified aggregation for fraud detection: hub cost, grid-operator verification,
recovery round (issue 13).

Figures, each next to a baseline timed in the same run, variants alternated A, B, A, B
and reported as medians (wall time and the process's CPU time) with their run count:

* hub: one feeder-day (24 hourly intervals) of one hub in a group of 50, by the
  aggregation applet through the grid operator's SCP03 session (STORE DATA, the answer
  collected with GET RESPONSE) - masks from 49 pairwise X25519 keys by HKDF-SHA256, a
  fresh self-mask of 48 scalars Shamir-shared over Z_q (t = 33: 32 shares derived from
  the pair secrets, 17 sealed with AES-GCM); baselines: the same hourly sums unmasked
  in plain Python, and the masked sums and shares computed directly (no card runtime,
  no secure channel);
* grid operator: verify one feeder-day of 50 customers (4,800 commitments: 50 batch
  signatures and chains, unmasking, one batched multi-scalar multiplication with 24
  random weights; target < 50 ms); baselines: the same check with one scalar
  multiplication per commitment, and with the points parsed once, one native point sum
  (``combine``) and one check per hour (24 checks, no random weights); the self-mask
  part alone: the present members' self-mask sum interpolated once from the hubs'
  share sums (this code, with the consistency check of the other answers) against each
  present member's self-mask interpolated from its own ``t`` shares (what sharing each
  member's mask separately costs with the same Z_q arithmetic; version 2 did that over
  GF(2^128) with pycryptodome, 11 s per feeder-day, docs/fraud.md), each also with the
  Lagrange coefficients recomputed (cold) rather than cached per index set;
* unmasking round (double masking, Bonawitz et al., CCS 2017, §4; every day has one):
  one present hub's answer through the applet, with no member missing and with one
  missing, each next to its group-day's release (each one-missing round on a day of its
  own, where its group is the day's only group: the hubs answer a recovery only for a
  present set that adds no household to the day's span, and a copy of the group
  answered complete the same day would give the missing member); the grid operator's
  verification of a recovered day (49 of 50) next to a complete one; the messages'
  sizes. The masks bind the day's span digest with the registry head the hub released
  the day under (``day_mask_digest``).

Run: PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/bench_fraud.py
"""

from __future__ import annotations

import random
import secrets
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from _bench import MIN_RUNS, Timing, alternate, header, row
from meterhub.applets.aggregation import deal_self_mask, hour_sums, share_sum
from meterhub.crypto import ecdsa, selfmask, zerosum
from meterhub.crypto.group import G, H, Point, Q, msm
from meterhub.demo.hubs import demo_tsm, deploy_applet, open_demo_hub
from meterhub.hub.aggregation import AGGREGATION_APP_AID
from meterhub.hub.secure_element import ReadingsClient
from meterhub.meter.device import DayRecord, Meter
from meterhub.model.formats.aggregation import (
    AggregationRequest,
    MaskedRelease,
    RecoveryRelease,
    RecoveryRequest,
    mask_context,
    self_mask_threshold,
)
from meterhub.model.formats.membership import demo_directory
from meterhub.model.group_registry import day_mask_digest, span_digest
from meterhub.model.timebase import day_starts
from meterhub.utility.fraud import (
    AGGREGATION_CLASS,
    GroupRegistry,
    demo_grid_key,
    hub_key,
    make_group,
    push_group,
    push_registry,
    verify_feeder_day,
)
from meterhub.utility.settlement import AppletMailbox, check_batches, expected_code_hash
from meterhub.utility.verifier import DayCommitments, MeterRegistration

DAY = date(2027, 4, 6)
TZ = "Europe/Berlin"
N = 50
RUNS = 7


def sum_points(points: list[Point]) -> Point:
    """One native combine (libsecp256k1 ``pubkey_combine``) over the points."""
    return msm([1] * len(points), points)


def uncompressed(c33: bytes) -> bytes:
    """The commitments as 65-byte points (``DayCommitments.c65``, which decode faster)."""
    return b"".join(Point.from_bytes(c33[j : j + 33]).to_bytes_uncompressed() for j in range(0, len(c33), 33))


def both(t: Timing) -> str:
    return f"{t.median * 1e3:.2f} ms"


def cpu(t: Timing) -> str:
    return f"cpu {t.cpu_median * 1e3:.2f} ms, {t.note}"


def main() -> None:
    header(f"private verified aggregation, one feeder of {N} customers, one day of 15-minute readings")
    rng = random.Random(13)
    n_int = len(day_starts(DAY, TZ, 15))
    hours = n_int // 4
    meters, regs, comms, opens, readings = {}, {}, {}, {}, {}
    # the days after DAY, one per one-missing recovery round (see the module docstring)
    rec_days = [DAY + timedelta(days=1 + k) for k in range(RUNS + 1)]
    later: dict[date, dict[str, tuple[DayRecord, list[int], DayCommitments]]] = {d: {} for d in rec_days}
    for k in range(N):
        mid = f"m{k:02d}"
        meter = Meter(mid, ecdsa.generate_signing_key())
        meter.record_day(DAY - timedelta(days=1), [0] * n_int)  # so the day chains on
        r = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in range(n_int)]
        rec = meter.record_day(DAY, r)
        c65 = uncompressed(rec.commitments)
        meters[mid], readings[mid], opens[mid] = meter, r, rec
        regs[mid] = MeterRegistration(mid, meter.signing_key.public_key(), TZ, 15)
        comms[mid] = [DayCommitments(rec.batch, rec.commitments, None, c65)]
        for d in rec_days:
            rd = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in range(len(day_starts(d, TZ, 15)))]
            rc_ = meter.record_day(d, rd)
            later[d][mid] = (rc_, rd, DayCommitments(rc_.batch, rc_.commitments, None, None))
    ids = sorted(meters)
    priv = {m: zerosum.generate_private_key() for m in ids}
    keys = {m: zerosum.public_key_bytes(priv[m]) for m in ids}
    code_hash = bytes.fromhex(expected_code_hash(AGGREGATION_CLASS))
    t_shares = self_mask_threshold(N)

    with tempfile.TemporaryDirectory() as tmp:
        # The first hub is a real card; the other 49 hubs' releases are computed directly
        # (the applet's own functions, without the card runtime).
        card = open_demo_hub(Path(tmp) / "hub.sqlite")
        with demo_tsm(card, "grid-operator") as t:
            deploy_applet(t, "aggregation")
        rc = ReadingsClient(card.transmit, AGGREGATION_APP_AID)
        rc.select()
        rc.pair(ids[0], TZ, 15)
        rc.put_openings(DAY, opens[ids[0]].first_index, opens[ids[0]].openings)
        for d in rec_days:
            got = later[d][ids[0]][0]
            rc.put_openings(d, got.first_index, got.openings)
        t = demo_tsm(card, "grid-operator").open()
        mb = AppletMailbox(t, AGGREGATION_APP_AID)
        keys[ids[0]] = hub_key(mb)
        group = make_group("bench-feeder", "f1", keys, DAY, DAY, demo_grid_key())
        # The guard answers a re-asked group-day with the stored bytes, so every timed
        # release is for a fresh group-day: groups of the same members (which the policy
        # admits) under new ids, published in the feeder's group registry and pushed
        # beforehand (the hub refuses groups that would add to a released day's span).
        # A one-missing recovery round runs on a day of its own (rec_days), its group the
        # day's only one.
        spare = [make_group(f"bench-feeder-{k}", "f1", keys, DAY, DAY, demo_grid_key()) for k in range(5 * RUNS + 8)]
        registry = GroupRegistry("f1", demo_grid_key(), directory=demo_directory)
        missing_groups = [make_group(f"bench-missing-{k}", "f1", keys, d, d, demo_grid_key())
                          for k, d in enumerate(rec_days)]
        registry.publish([group, *spare, *missing_groups])
        push_registry(mb, registry)
        push_group(mb, group)
        req = b"\x10" + AggregationRequest(group.group_id, DAY).to_bytes()
        for sg in (*spare, *missing_groups):
            push_group(mb, sg)
        fresh_groups = iter(spare)
        by_id = {g.group_id: g for g in (group, *spare, *missing_groups)}

        def fresh_release() -> tuple[str, bytes]:
            gid = next(fresh_groups).group_id
            return gid, mb.send(b"\x10" + AggregationRequest(gid, DAY).to_bytes(), "release")

        def blob(rec: DayRecord) -> bytes:
            return b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in rec.openings)

        blobs = {m: blob(opens[m]) for m in ids}
        day_blobs = {d: {m: blob(later[d][m][0]) for m in ids} for d in rec_days}

        def span_of(d: date) -> bytes:
            # what the hub's guard binds into the day's masks (CardGuard.day_span): the
            # day's span digest with the registry head it released the day under
            return day_mask_digest(span_digest(registry.view.day_groups(d)), registry.view.head)

        spans = {d: span_of(d) for d in (DAY, *rec_days)}  # the registry does not change after the push
        own_shares: dict[tuple[str, str], list[int]] = {}

        def direct_release(m: str, pairs: list[zerosum.PairKey], gid: str = group.group_id, day: date = DAY, *,
                           keep: bool = True) -> MaskedRelease:
            # what the applet computes (applets/aggregation.py), without the card runtime
            sums = hour_sums(blobs[m] if day == DAY else day_blobs[day][m], 4)
            gctx = mask_context(gid, day, len(sums), spans[day])
            masks = zerosum.member_masks(pairs, gctx, 2 * len(sums))
            own = selfmask.random_scalars(secrets.token_bytes, 2 * len(sums))
            vals = tuple(((a + masks[2 * h] + own[2 * h]) % Q, (b + masks[2 * h + 1] + own[2 * h + 1]) % Q)
                         for h, (a, b) in enumerate(sums))
            sealed, mine = deal_self_mask(by_id[gid], day, len(sums), m, pairs, own, secrets.token_bytes)
            if keep:  # (a timed run's release is thrown away: its share must not replace the kept one)
                own_shares[gid, m] = mine
            first = opens[m].first_index if day == DAY else later[day][m][0].first_index
            return MaskedRelease(gid, m, day, first, code_hash, vals, sealed)

        def forwarded(rels: dict[str, MaskedRelease], to: str) -> tuple[tuple[str, bytes], ...]:
            return tuple((p, dict(rels[p].shares).get(to, b"")) for p in sorted(rels) if p != to)

        def direct_unmask(m: str, rels: dict[str, MaskedRelease], missing: tuple[str, ...],
                          gid: str = group.group_id, day: date = DAY) -> RecoveryRelease:
            # a simulated hub's unmasking answer: pairwise masks with the missing, one share sum
            miss = {keys[x] for x in missing}
            n_h = len(day_starts(day, TZ, 15)) // 4
            terms = zerosum.member_masks([p for p in pairs[m] if p.peer in miss],
                                         mask_context(gid, day, n_h, spans[day]), 2 * n_h)
            total = share_sum(by_id[gid], day, n_h, m, pairs[m], forwarded(rels, m), own_shares[gid, m])
            return RecoveryRelease(gid, m, day, missing, tuple(p for p in sorted(rels) if p != m),
                                   tuple((terms[2 * h], terms[2 * h + 1]) for h in range(n_h)),
                                   tuple((total[2 * h], total[2 * h + 1]) for h in range(n_h)))

        def card_unmask(rels: dict[str, MaskedRelease], missing: tuple[str, ...], gid: str,
                        day: date = DAY) -> bytes:
            return b"\x11" + RecoveryRequest(gid, day, missing, forwarded(rels, ids[0])).to_bytes()

        pairs = {m: [zerosum.pair_key(priv[m], keys[o]) for o in ids if o != m] for m in ids[1:]}
        releases = {ids[0]: MaskedRelease.from_bytes(mb.send(req, "release"))}
        for m in ids[1:]:
            releases[m] = direct_release(m, pairs[m])

        def plain_sums() -> list[int]:
            r = readings[ids[1]]
            return [sum(r[j : j + 4]) for j in range(0, len(r), 4)]

        hub = alternate({
            "applet": fresh_release,
            "direct": lambda: direct_release(ids[1], pairs[ids[1]], keep=False),
            "plain": plain_sums,
            "re-ask": lambda: mb.send(req, "release"),
        }, runs=RUNS)
        row(f"hub: one feeder-day (24 h, {N - 1} peers) through SCP03 and the guard", both(hub["applet"]),
            f"{cpu(hub['applet'])}; masked sums and shares computed directly {both(hub['direct'])} "
            f"({hub['applet'].median / hub['direct'].median:.1f}x); unmasked plain sums "
            f"{hub['plain'].median * 1e3:.3f} ms; a re-ask (the guard's stored bytes) {both(hub['re-ask'])}")
        fresh = alternate({
            "cached": lambda: direct_release(ids[1], pairs[ids[1]], keep=False),
            "fresh ECDH": lambda: direct_release(ids[1], [zerosum.pair_key(priv[ids[1]], keys[o])
                                                        for o in ids if o != ids[1]], keep=False),
        }, runs=RUNS)
        row(f"   of which the {N - 1} X25519 exchanges (first day of a group)",
            f"{(fresh['fresh ECDH'].median - fresh['cached'].median) * 1e3:.2f} ms",
            f"release with fresh exchanges {both(fresh['fresh ECDH'])}, with cached pair keys "
            f"{both(fresh['cached'])} ({fresh['cached'].note})")

        # -- grid operator ---------------------------------------------------------------
        full = {ids[0]: RecoveryRelease.from_bytes(mb.send(card_unmask(releases, (), group.group_id), "unmask"))}
        full |= {m: direct_unmask(m, releases, ()) for m in ids[1:]}
        fd = verify_feeder_day(group, DAY, releases, full, regs, comms, code_hash=code_hash)
        assert fd.hours == [sum(sum(readings[m][j : j + 4]) for m in ids) for j in range(0, n_int, 4)]
        big = b"".join(comms[m][0].c65 or b"" for m in ids)

        def per_commitment() -> bool:
            # same weighted check, one scalar multiplication per commitment
            w = [rng.getrandbits(128) | 1 for _ in range(hours)]
            acc = Point.identity()
            for j in range(N * n_int):
                acc = acc + Point.from_bytes(big[65 * j : 65 * j + 65]) * w[(j % n_int) // 4]
            s = sum(a * b for a, b in zip(w, fd.hours, strict=True)) % Q
            return acc == G * s + H * 1  # the blinding side is irrelevant to the timing

        def per_hour() -> bool:
            # parse once, one native point sum (combine) and one check per hour, no weights
            pts = [Point.from_bytes(big[65 * j : 65 * j + 65]) for j in range(N * n_int)]
            ok = True
            for h in range(hours):
                acc = sum_points([pts[j] for j in range(N * n_int) if (j % n_int) // 4 == h])
                ok &= acc == G * fd.hours[h] + H * 1
            return ok

        def verify() -> object:
            return verify_feeder_day(group, DAY, releases, full, regs, comms, code_hash=code_hash)

        def checks_only() -> None:
            for m in ids:
                b = comms[m][0].batch.batch
                check_batches(m, DAY, DAY, b.first_index, b.count, 0, regs[m], comms[m])

        # the self-mask part: one interpolation of the share sums (with the check that the
        # other answers lie on the same polynomial), against one interpolation per member
        points = {ids.index(m) + 1: [y for pair in full[m].share for y in pair] for m in ids}
        members = {x: (selfmask.random_scalars(secrets.token_bytes, 2 * hours),
                       {y: selfmask.random_scalars(secrets.token_bytes, 2 * hours)
                        for y in selfmask.derived_holders(N, x, t_shares)}) for x in points}
        each = {x: fixed | selfmask.split(sec, fixed, [y for y in points if y not in fixed])
                for x, (sec, fixed) in members.items()}

        def linear() -> list[int]:
            bad = selfmask.consistent(points, t_shares, [secrets.randbits(128) for _ in range(2 * hours)])
            assert not bad
            return selfmask.combine(dict(list(points.items())[:t_shares]))

        def per_member() -> list[list[int]]:
            out = []
            for x, shares in each.items():
                holders = [y for y in points if y != x][:t_shares]
                out.append(selfmask.combine({y: shares[y] for y in holders}))
            return out

        def cold(fn):  # noqa: ANN001, ANN202 - the same without the cached Lagrange coefficients
            def run():  # noqa: ANN202
                selfmask._coefficients.cache_clear()
                return fn()
            return run

        assert [v for v in per_member()] == [members[x][0] for x in each]
        g = alternate({"batched": verify, "per commitment": per_commitment, "per hour": per_hour,
                       "signatures": checks_only, "linear": linear, "per member": per_member,
                       "linear cold": cold(linear), "per member cold": cold(per_member)}, runs=MIN_RUNS)
        row(f"grid operator: verify one feeder-day, {N} customers (target < 50 ms)", both(g["batched"]),
            f"{'met' if g['batched'].median < 0.05 else 'NOT met'} on wall time, "
            f"{'met' if g['batched'].cpu_median < 0.05 else 'NOT met'} on CPU time ({cpu(g['batched'])}; the steadier "
            f"figure on a loaded machine); of which batch signatures "
            f"and chains {both(g['signatures'])}")
        row("   self-mask sum: one interpolation of 50 share sums (t = 33), others checked", both(g["linear"]),
            f"{cpu(g['linear'])}; coefficients recomputed {both(g['linear cold'])}")
        row("   baseline: each member's self-mask from its own 33 shares, 50 interpolations", both(g["per member"]),
            f"{g['per member'].median / g['linear'].median:.1f}x the linear sum; coefficients recomputed "
            f"{both(g['per member cold'])} ({g['per member cold'].median / g['linear cold'].median:.1f}x)")
        row("   baseline: one scalar multiplication per commitment", both(g["per commitment"]),
            f"{g['per commitment'].median / g['batched'].median:.1f}x slower")
        row("   baseline: native point sums, one check per hour", both(g["per hour"]),
            f"{g['per hour'].median / g['batched'].median:.1f}x slower")

        # -- the unmasking round ---------------------------------------------------------------
        missing = ids[-1]
        present: dict[str, MaskedRelease] = {}
        recs: dict[str, RecoveryRelease] = {}
        sizes: dict[str, int] = {}
        # (the card answered the complete round of `group` above, one round per group-day:
        # the recovered day is the last one-missing round's, a day of its own)
        # An unmasking answer needs the group-day's own release first: per run, a fresh
        # group-day's release then the card's answer, alternated; with no member missing
        # and with one.
        times: dict[str, list[float]] = {"none missing": [], "one missing": [], "release": []}
        cpus: dict[str, list[float]] = {k: [] for k in times}
        for k in range(RUNS + 1):
            for variant in ("none missing", "one missing"):
                rgroup, rday = (next(fresh_groups), DAY) if variant == "none missing" else (missing_groups[k], rec_days[k])
                gid = rgroup.group_id
                c0, t0 = time.process_time(), time.perf_counter()
                own_raw = mb.send(b"\x10" + AggregationRequest(gid, rday).to_bytes(), "release")
                t1, c1 = time.perf_counter(), time.process_time()
                own = MaskedRelease.from_bytes(own_raw)
                rels = {ids[0]: own} | {m: direct_release(m, pairs[m], gid, rday) for m in ids[1:]}
                miss: tuple[str, ...] = ()
                if variant == "one missing":
                    del rels[missing]
                    miss = (missing,)
                body = card_unmask(rels, miss, gid, rday)
                c2, t2 = time.process_time(), time.perf_counter()
                answer = mb.send(body, "unmask")
                t3, c3 = time.perf_counter(), time.process_time()
                sizes |= {"release": len(own_raw), "request": len(body) - 1, "answer": len(answer)}
                if variant == "one missing":
                    present, last_group, last_day = rels, rgroup, rday
                    recs = {ids[0]: RecoveryRelease.from_bytes(answer)}
                    recs |= {m: direct_unmask(m, rels, miss, gid, rday) for m in ids[1:] if m != missing}
                if k:  # the first is the warm-up
                    times["release"].append(t1 - t0)
                    times[variant].append(t3 - t2)
                    cpus["release"].append(c1 - c0)
                    cpus[variant].append(c3 - c2)
        ur = {k: Timing(tuple(v), tuple(cpus[k])) for k, v in times.items()}
        row(f"hub: unmasking answer, no member missing ({N - 1} present), through SCP03", both(ur["none missing"]),
            f"{cpu(ur['none missing'])}; its release {both(ur['release'])} ({ur['release'].cpu_ms()}; "
            f"{ur['none missing'].median / ur['release'].median:.2f}x)")
        row("hub: unmasking answer, one member missing (48 present, 1 pairwise)", both(ur["one missing"]),
            f"{cpu(ur['one missing'])}; its release {both(ur['release'])} "
            f"({ur['one missing'].median / ur['release'].median:.2f}x)")
        # with the points uncompressed, as the complete day's, so the two compare like for like
        last_comms = {m: [DayCommitments(dc.batch, dc.c33, None, uncompressed(dc.c33))]
                      for m in ids for dc in [later[last_day][m][2]]}
        v = alternate({
            "incomplete": lambda: verify_feeder_day(last_group, last_day, present, recs, regs, last_comms,
                                                    code_hash=code_hash),
            "complete": verify,
        }, runs=MIN_RUNS)
        fd2 = verify_feeder_day(last_group, last_day, present, recs, regs, last_comms, code_hash=code_hash)
        last_n = len(day_starts(last_day, TZ, 15))
        assert not fd2.complete and fd2.hours == [sum(sum(later[last_day][m][1][j : j + 4]) for m in present)
                                                  for j in range(0, last_n, 4)]
        row(f"grid operator: verify a recovered day ({N - 1} of {N} present)", both(v["incomplete"]),
            f"{cpu(v['incomplete'])}; complete day {both(v['complete'])} "
            f"({v['incomplete'].median / v['complete'].median:.2f}x)")
        row(f"recovery round for the feeder ({N - 1} hubs answer, in parallel on their own hubs)",
            both(ur["one missing"]), f"+ {both(v['incomplete'])} verification")
        row("message sizes (one hub, 24 h)", f"{sizes['release']:,} B",
            f"release; unmasking request {sizes['request']:,} B, answer {sizes['answer']:,} B")
        t.close()
        card.close()


if __name__ == "__main__":
    main()
