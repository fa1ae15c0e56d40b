"""Private verified aggregation for fraud detection: hub cost, grid-operator verification,
recovery round (issue 13).

Figures, each next to a baseline timed in the same run, variants alternated A, B, A, B
and reported as medians with their run count:

* hub: one feeder-day (24 hourly intervals) of one hub in a group of 50, by the
  aggregation applet through the grid operator's SCP03 session (STORE DATA, the answer
  collected with GET RESPONSE) - masks from 49 pairwise X25519 keys by HKDF-SHA256;
  baselines: the same hourly sums unmasked in plain Python, and the masked sums
  computed directly (no card runtime, no secure channel);
* grid operator: verify one feeder-day of 50 customers (4,800 commitments: 50 batch
  signatures and chains, unmasking, one batched multi-scalar multiplication with 24
  random weights; target < 50 ms); baselines: the same check with one scalar
  multiplication per commitment, and with the points parsed once, one native point sum
  (``combine``) and one check per hour (24 checks, no random weights);
* unmasking round (double masking, Bonawitz et al., CCS 2017, §4; every day has one):
  one present hub's answer through the applet, with no member missing (49 seed shares
  opened) and with one missing (48 shares and its pairwise masks), each next to its
  group-day's release; the grid operator's verification of a complete and of a
  recovered day (49 of 50), which now recovers each present member's self-mask seed
  from ``t = 33`` Shamir shares (pycryptodome), timed alone as well. The figures of the
  single-masking code before are in docs/fraud.md (the same benchmark at the commit
  before double masking).

Run: .venv/bin/python benchmarks/bench_fraud.py
"""

from __future__ import annotations

import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from _bench import header, row
from meterhub.applets.aggregation import hour_sums
from meterhub.crypto import ecdsa, selfmask, zerosum
from meterhub.crypto.group import G, H, Point, Q, msm
from meterhub.hub.aggregation import AGGREGATION_APP_AID, aggregation_load_file
from meterhub.hub.secure_element import (
    RECIPIENT_SDS,
    ReadingsClient,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)
from meterhub.meter.device import Meter
from meterhub.model.formats.aggregation import (
    AggregationRequest,
    MaskedRelease,
    RecoveryRelease,
    RecoveryRequest,
    mask_context,
    self_mask_context,
    self_mask_threshold,
    share_aad,
)
from meterhub.model.group_registry import span_digest
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
from meterhub.utility.settlement import AppletMailbox, expected_code_hash
from meterhub.utility.tsm import TSM, dap_signer
from meterhub.utility.verifier import DayCommitments, MeterRegistration

DAY = date(2027, 4, 6)
TZ = "Europe/Berlin"
N = 50
RUNS = 7


def sum_points(points: list[Point]) -> Point:
    """One native combine (libsecp256k1 ``pubkey_combine``) over the points."""
    return msm([1] * len(points), points)


def alternate(variants: dict[str, Callable[[], object]], runs: int = RUNS) -> dict[str, float]:
    """Median seconds per variant, the variants run in turn (A, B, A, B, ...) after one warm-up each."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _tsm(card) -> TSM:
    sd = RECIPIENT_SDS["grid-operator"]
    return TSM(card.transmit, demo_scp03_keys("grid-operator"), sd_aid=sd,
               dap=dap_signer(sd, demo_dap_key("grid-operator")))


def main() -> None:
    header(f"private verified aggregation, one feeder of {N} customers, one day of 15-minute readings ({RUNS} runs each)")
    rng = random.Random(13)
    n_int = len(day_starts(DAY, TZ, 15))
    meters, regs, comms, opens, readings = {}, {}, {}, {}, {}
    for k in range(N):
        mid = f"m{k:02d}"
        meter = Meter(mid, ecdsa.generate_signing_key())
        prev = meter.record_day(DAY - timedelta(days=1), [0] * n_int)  # so the day chains on
        del prev
        r = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in range(n_int)]
        rec = meter.record_day(DAY, r)
        c65 = b"".join(Point.from_bytes(rec.commitments[j : j + 33]).to_bytes_uncompressed()
                       for j in range(0, len(rec.commitments), 33))
        meters[mid], readings[mid], opens[mid] = meter, r, rec
        regs[mid] = MeterRegistration(mid, meter.signing_key.public_key(), TZ, 15)
        comms[mid] = [DayCommitments(rec.batch, rec.commitments, None, c65)]
    ids = sorted(meters)
    priv = {m: zerosum.generate_private_key() for m in ids}
    keys = {m: zerosum.public_key_bytes(priv[m]) for m in ids}
    code_hash = bytes.fromhex(expected_code_hash(AGGREGATION_CLASS))

    with tempfile.TemporaryDirectory() as tmp:
        # The first hub is a real card; the other 49 hubs' releases are computed directly
        # (the same code path as the applet's, without the card runtime).
        card = open_hub_card(Path(tmp) / "hub.sqlite", issuer_keys=demo_scp03_keys("issuer"),
                             supplier_keys=demo_scp03_keys("supplier"),
                             supplier_dap=demo_dap_key("supplier").public_key())
        with _tsm(card) as t:
            t.deploy(aggregation_load_file(), AGGREGATION_APP_AID, params=ecdsa.public_bytes(demo_grid_key()))
        rc = ReadingsClient(card.transmit, AGGREGATION_APP_AID)
        rc.select()
        rc.pair(ids[0], TZ, 15)
        rc.put_openings(DAY, opens[ids[0]].first_index, opens[ids[0]].openings)
        t = _tsm(card).open()
        mb = AppletMailbox(t, AGGREGATION_APP_AID)
        keys[ids[0]] = hub_key(mb)
        group = make_group("bench-feeder", "f1", keys, DAY, DAY, demo_grid_key())
        # The guard answers a re-asked group-day with the stored bytes, so every timed
        # release is for a fresh group-day: groups of the same members (which the policy
        # admits) under new ids, published in the feeder's group registry and pushed
        # beforehand (the hub refuses groups that would add to a released day's span).
        spare = [make_group(f"bench-feeder-{k}", "f1", keys, DAY, DAY, demo_grid_key()) for k in range(5 * RUNS + 8)]
        registry = GroupRegistry("f1", demo_grid_key())
        registry.publish([group, *spare])
        push_registry(mb, registry)
        push_group(mb, group)
        req = b"\x10" + AggregationRequest(group.group_id, DAY).to_bytes()
        for sg in spare:
            push_group(mb, sg)
        fresh_groups = iter(spare)

        def fresh_release() -> tuple[str, bytes]:
            gid = next(fresh_groups).group_id
            return gid, mb.send(b"\x10" + AggregationRequest(gid, DAY).to_bytes(), "release")

        def blob(m: str) -> bytes:
            return b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in opens[m].openings)

        blobs = {m: blob(m) for m in ids}
        span = span_digest(registry.view.day_groups(DAY))
        ctx = mask_context(group.group_id, DAY, n_int // 4, span)

        t_shares = self_mask_threshold(N)

        def direct_release(m: str, pairs: list[zerosum.PairKey], gid: str = group.group_id) -> MaskedRelease:
            # what the applet computes (applets/aggregation.py), without the card runtime
            sums = hour_sums(blobs[m], 4)
            gctx = ctx if gid == group.group_id else mask_context(gid, DAY, len(sums), span)
            masks = zerosum.member_masks(pairs, gctx, 2 * len(sums))
            seed = secrets.token_bytes(16)
            own = selfmask.self_masks(seed, self_mask_context(gid, DAY, len(sums), m), 2 * len(sums))
            vals = tuple(((a + masks[2 * h] + own[2 * h]) % Q, (b + masks[2 * h + 1] + own[2 * h + 1]) % Q)
                         for h, (a, b) in enumerate(sums))
            shares = selfmask.split_seed(seed, t_shares, N)
            held = [(o, sh) for o, sh in zip(ids, shares, strict=True) if o != m]
            sealed = tuple(selfmask.seal_share(pk, share_aad(gid, DAY, m, o), *sh, secrets.token_bytes(12))
                           for pk, (o, sh) in zip(pairs, held, strict=True))
            return MaskedRelease(gid, m, DAY, opens[m].first_index, code_hash, vals, sealed)

        def sealed_to(rels: dict[str, MaskedRelease], sender: str, receiver: str) -> bytes:
            others = [o for o in ids if o != sender]
            return rels[sender].shares[others.index(receiver)]

        def direct_unmask(m: str, rels: dict[str, MaskedRelease], missing: tuple[str, ...],
                          gid: str = group.group_id) -> RecoveryRelease:
            # a simulated hub's unmasking answer: pairwise masks with the missing, opened shares
            miss = {keys[x] for x in missing}
            gctx = ctx if gid == group.group_id else mask_context(gid, DAY, n_int // 4, span)
            terms = zerosum.member_masks([p for p in pairs[m] if p.peer in miss], gctx, 2 * (n_int // 4))
            by_key = {p.peer: p for p in pairs[m]}
            opened = tuple((p, *selfmask.open_share(by_key[keys[p]], share_aad(gid, DAY, p, m), sealed_to(rels, p, m)))
                           for p in sorted(rels) if p != m)
            return RecoveryRelease(gid, m, DAY, missing, tuple((terms[2 * h], terms[2 * h + 1])
                                                               for h in range(n_int // 4)), opened)

        def card_unmask(rels: dict[str, MaskedRelease], missing: tuple[str, ...], gid: str) -> bytes:
            fwd = tuple((p, sealed_to(rels, p, ids[0])) for p in sorted(rels) if p != ids[0])
            return b"\x11" + RecoveryRequest(gid, DAY, missing, fwd).to_bytes()

        pairs = {m: [zerosum.pair_key(priv[m], keys[o]) for o in ids if o != m] for m in ids[1:]}
        releases = {ids[0]: MaskedRelease.from_bytes(mb.send(req, "release"))}
        for m in ids[1:]:
            releases[m] = direct_release(m, pairs[m])

        def plain_sums() -> list[int]:
            r = readings[ids[1]]
            return [sum(r[j : j + 4]) for j in range(0, len(r), 4)]

        hub = alternate({
            "applet": fresh_release,
            "direct": lambda: direct_release(ids[1], pairs[ids[1]]),
            "plain": plain_sums,
            "re-ask": lambda: mb.send(req, "release"),
        })
        row("hub: one feeder-day (24 h, 49 peers) through SCP03 and the guard", f"{hub['applet'] * 1e3:.2f} ms",
            f"masked sums computed directly {hub['direct'] * 1e3:.2f} ms "
            f"({hub['applet'] / hub['direct']:.1f}x); unmasked plain sums {hub['plain'] * 1e3:.3f} ms; "
            f"a re-ask (the guard's stored bytes) {hub['re-ask'] * 1e3:.2f} ms")
        fresh = alternate({
            "cached": lambda: direct_release(ids[1], pairs[ids[1]]),
            "fresh ECDH": lambda: direct_release(ids[1], [zerosum.pair_key(priv[ids[1]], keys[o])
                                                        for o in ids if o != ids[1]]),
        })
        row("   of which the 49 X25519 exchanges (first day of a group)", f"{(fresh['fresh ECDH'] - fresh['cached']) * 1e3:.2f} ms",
            f"release with fresh exchanges {fresh['fresh ECDH'] * 1e3:.2f} ms, with cached pair keys "
            f"{fresh['cached'] * 1e3:.2f} ms")

        # -- grid operator ---------------------------------------------------------------
        full = {ids[0]: RecoveryRelease.from_bytes(mb.send(card_unmask(releases, (), group.group_id), "unmask"))}
        full |= {m: direct_unmask(m, releases, ()) for m in ids[1:]}
        fd = verify_feeder_day(group, DAY, releases, full, regs, comms, code_hash=code_hash)
        assert fd.hours == [sum(sum(readings[m][j : j + 4]) for m in ids) for j in range(0, n_int, 4)]
        big = b"".join(comms[m][0].c65 or b"" for m in ids)

        def per_commitment() -> bool:
            # same weighted check, one scalar multiplication per commitment
            w = [rng.getrandbits(128) | 1 for _ in range(n_int // 4)]
            acc = Point.identity()
            for j in range(N * n_int):
                acc = acc + Point.from_bytes(big[65 * j : 65 * j + 65]) * w[(j % n_int) // 4]
            s = sum(a * b for a, b in zip(w, fd.hours, strict=True)) % Q
            return acc == G * s + H * 1  # the blinding side is irrelevant to the timing

        def per_hour() -> bool:
            # parse once, one native point sum (combine) and one check per hour, no weights
            pts = [Point.from_bytes(big[65 * j : 65 * j + 65]) for j in range(N * n_int)]
            ok = True
            for h in range(n_int // 4):
                acc = sum_points([pts[j] for j in range(N * n_int) if (j % n_int) // 4 == h])
                ok &= acc == G * fd.hours[h] + H * 1
            return ok

        def verify() -> object:
            return verify_feeder_day(group, DAY, releases, full, regs, comms, code_hash=code_hash)

        held = {x: [(i, sh) for o in ids if o != x for p, i, sh in full[o].shares if p == x][:t_shares] for x in ids}

        def seeds_only() -> None:
            for x in ids:
                selfmask.combine_seed(held[x])

        from meterhub.utility.settlement import check_batches

        def checks_only() -> None:
            for m in ids:
                b = comms[m][0].batch.batch
                check_batches(m, DAY, DAY, b.first_index, b.count, 0, regs[m], comms[m])

        g = alternate({"batched": verify, "per commitment": per_commitment, "per hour": per_hour,
                       "signatures": checks_only, "seeds": seeds_only}, runs=5)
        row(f"grid operator: verify one feeder-day, {N} customers (target < 50 ms)", f"{g['batched'] * 1e3:.2f} ms",
            f"{'met' if g['batched'] < 0.05 else 'NOT met'}; of which batch signatures and chains {g['signatures'] * 1e3:.2f} ms, "
            f"self-mask seeds ({N} Shamir combines of {t_shares} shares) {g['seeds'] * 1e3:.1f} ms")
        row("   baseline: one scalar multiplication per commitment", f"{g['per commitment'] * 1e3:.1f} ms",
            f"{g['per commitment'] / g['batched']:.1f}x slower (commitment arithmetic alone: "
            f"{(g['per commitment']) / max(1e-9, g['batched'] - g['signatures']):.0f}x)")
        row("   baseline: native point sums, one check per hour", f"{g['per hour'] * 1e3:.1f} ms",
            f"{g['per hour'] / g['batched']:.1f}x slower")

        # -- the unmasking round ---------------------------------------------------------------
        missing = ids[-1]
        present: dict[str, MaskedRelease] = {}
        recs: dict[str, RecoveryRelease] = {}
        # (the card answered the complete round of `group` above, one round per group-day:
        # the recovered day is the last timed fresh group-day with one member missing)
        # An unmasking answer needs the group-day's own release first: per run, a fresh
        # group-day's release (B) then the card's answer (A), alternated; with no member
        # missing and with one.
        times: dict[str, list[float]] = {"none missing": [], "one missing": [], "release": []}
        for k in range(RUNS + 1):
            for variant in ("none missing", "one missing"):
                rgroup = next(fresh_groups)
                gid = rgroup.group_id
                t0 = time.perf_counter()
                own = MaskedRelease.from_bytes(mb.send(b"\x10" + AggregationRequest(gid, DAY).to_bytes(), "release"))
                t1 = time.perf_counter()
                rels = {ids[0]: own} | {m: direct_release(m, pairs[m], gid) for m in ids[1:]}
                miss: tuple[str, ...] = ()
                if variant == "one missing":
                    del rels[missing]
                    miss = (missing,)
                body = card_unmask(rels, miss, gid)
                t2 = time.perf_counter()
                answer = mb.send(body, "unmask")
                t3 = time.perf_counter()
                if variant == "one missing":
                    present = rels
                    recs = {ids[0]: RecoveryRelease.from_bytes(answer)}
                    recs |= {m: direct_unmask(m, rels, miss, gid) for m in ids[1:] if m != missing}
                if k:  # the first is the warm-up
                    times["release"].append(t1 - t0)
                    times[variant].append(t3 - t2)
        r = {k: statistics.median(v) for k, v in times.items()}
        row("hub: unmasking answer, no member missing (49 shares opened), through SCP03", f"{r['none missing'] * 1e3:.2f} ms",
            f"its release {r['release'] * 1e3:.2f} ms ({r['none missing'] / r['release']:.2f}x; {RUNS} runs)")
        row("hub: unmasking answer, one member missing (48 shares, 1 pairwise)", f"{r['one missing'] * 1e3:.2f} ms",
            f"its release {r['release'] * 1e3:.2f} ms ({r['one missing'] / r['release']:.2f}x; {RUNS} runs)")
        v = alternate({
            "incomplete": lambda: verify_feeder_day(rgroup, DAY, present, recs, regs, comms, code_hash=code_hash),
            "complete": verify,
        }, runs=5)
        fd2 = verify_feeder_day(rgroup, DAY, present, recs, regs, comms, code_hash=code_hash)
        assert not fd2.complete and fd2.hours == [sum(sum(readings[m][j : j + 4]) for m in present)
                                                  for j in range(0, n_int, 4)]
        row(f"grid operator: verify a recovered day ({N - 1} of {N} present)", f"{v['incomplete'] * 1e3:.2f} ms",
            f"complete day {v['complete'] * 1e3:.2f} ms ({v['incomplete'] / v['complete']:.2f}x)")
        row(f"recovery round for the feeder ({N - 1} hubs answer, in parallel on their own hubs)",
            f"{r['one missing'] * 1e3:.2f} ms", f"+ {v['incomplete'] * 1e3:.2f} ms verification")
        t.close()
        card.close()


if __name__ == "__main__":
    main()
