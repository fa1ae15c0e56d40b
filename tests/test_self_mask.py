"""Double masking (Bonawitz et al., CCS 2017, §4) at the crypto layer: pairwise and
self-masks cancel exactly with and without dropouts; seed shares, their sealing and
their encoding in the unmasking messages."""

from __future__ import annotations

import secrets
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto import selfmask, zerosum
from meterhub.crypto.group import Q
from meterhub.model.formats.aggregation import (
    FormatError,
    RecoveryRelease,
    RecoveryRequest,
    mask_context,
    self_mask_context,
    self_mask_threshold,
    share_aad,
)

DAY = date(2027, 3, 27)


def _round(n: int, hours: int, dropped: set[int]) -> tuple[list[int], list[int]]:
    """n members release values masked twice; the aggregator unmasks the present ones
    with the pairwise terms for the dropped and t shares of each present seed."""
    keys = [zerosum.generate_private_key() for _ in range(n)]
    pubs = [zerosum.public_key_bytes(k) for k in keys]
    ids = [f"m{i:02d}" for i in range(n)]
    pairs = [[zerosum.pair_key(k, p) for p in pubs if p != own] for k, own in zip(keys, pubs, strict=True)]
    ctx = mask_context("g", DAY, hours, bytes(32))
    t = self_mask_threshold(n)
    values = [[secrets.randbelow(10_000) for _ in range(hours)] for _ in range(n)]
    seeds = [secrets.token_bytes(16) for _ in range(n)]
    releases, sealed = [], []
    for i in range(n):
        pm = zerosum.member_masks(pairs[i], ctx, hours)
        sm = selfmask.self_masks(seeds[i], self_mask_context("g", DAY, hours, ids[i]), hours)
        releases.append([(v + a + b) % Q for v, a, b in zip(values[i], pm, sm, strict=True)])
        shares = selfmask.split_seed(seeds[i], t, n)
        others = [j for j in range(n) if j != i]
        sealed.append({j: selfmask.seal_share(pk, share_aad("g", DAY, ids[i], ids[j]), *shares[j], secrets.token_bytes(12))
                       for j, pk in zip(others, pairs[i], strict=True)})
    present = [i for i in range(n) if i not in dropped]
    total = [0] * hours
    for i in present:
        total = [a + b for a, b in zip(total, releases[i], strict=True)]
        # i's answer: pairwise masks with the dropped (i's pair list is in member order without i)
        others = [j for j in range(n) if j != i]
        rec = zerosum.member_masks([pk for j, pk in zip(others, pairs[i], strict=True) if j in dropped], ctx, hours)
        total = [a - b for a, b in zip(total, rec, strict=True)]
    for i in present:
        held = []
        for j in present:
            if j != i:
                pk = next(p for p in pairs[j] if p.peer == pubs[i])
                held.append(selfmask.open_share(pk, share_aad("g", DAY, ids[i], ids[j]), sealed[i][j]))
        seed = selfmask.combine_seed(held[:t])
        assert seed == seeds[i]
        total = [a - b for a, b in zip(total, selfmask.self_masks(seed, self_mask_context("g", DAY, hours, ids[i]), hours),
                                      strict=True)]
    truth = [sum(values[i][h] for i in present) for h in range(hours)]
    return [x % Q for x in total], truth


@pytest.mark.parametrize("dropped", [set(), {3}, {1, 6}])
def test_masks_cancel_with_and_without_dropouts(dropped: set[int]) -> None:
    got, truth = _round(9, 24, dropped)
    assert got == truth


def test_self_masks_depend_on_seed_and_member() -> None:
    seed = secrets.token_bytes(16)
    m = selfmask.self_masks(seed, self_mask_context("g", DAY, 24, "m0"), 300)  # crosses HKDF blocks
    assert len(set(m)) == 300 and 0 not in m
    assert m != selfmask.self_masks(secrets.token_bytes(16), self_mask_context("g", DAY, 24, "m0"), 300)
    assert m != selfmask.self_masks(seed, self_mask_context("g", DAY, 24, "m1"), 300)


def test_threshold() -> None:
    assert [self_mask_threshold(n) for n in (5, 6, 7, 10, 50)] == [4, 4, 4, 6, 33]


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))), st.binary(min_size=16, max_size=16),
       st.randoms(use_true_random=False))
def test_shares_recover_the_seed_from_any_threshold_subset(nt: tuple[int, int], seed: bytes, rnd) -> None:
    n, t = nt
    shares = selfmask.split_seed(seed, t, n)
    assert [i for i, _ in shares] == list(range(1, n + 1))
    assert selfmask.combine_seed(rnd.sample(shares, t)) == seed
    if t > 1:  # fewer than t shares: another value (but for a 2^-128 chance)
        assert selfmask.combine_seed(rnd.sample(shares, t - 1)) != seed


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 0xFFFF), st.binary(min_size=16, max_size=16), st.binary(max_size=40), st.binary(min_size=1, max_size=4))
def test_sealed_shares_open_only_in_their_context(index: int, share: bytes, aad: bytes, other: bytes) -> None:
    a, b = zerosum.generate_private_key(), zerosum.generate_private_key()
    ab = zerosum.pair_key(a, zerosum.public_key_bytes(b))
    ba = zerosum.pair_key(b, zerosum.public_key_bytes(a))
    sealed = selfmask.seal_share(ab, aad, index, share, secrets.token_bytes(12))
    assert len(sealed) == selfmask.SEALED_BYTES
    assert selfmask.open_share(ba, aad, sealed) == (index, share)
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.open_share(ba, aad + other, sealed)
    c = zerosum.generate_private_key()
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.open_share(zerosum.pair_key(c, zerosum.public_key_bytes(a)), aad, sealed)


_ID = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(_ID, min_size=1, max_size=12, unique=True), st.data())
def test_unmasking_messages_round_trip(ids: list[str], data) -> None:
    ids = sorted(ids)
    kinds = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    missing = tuple(i for i, k in zip(ids, kinds, strict=True) if k)
    present = [i for i, k in zip(ids, kinds, strict=True) if not k]
    sealed = tuple((p, data.draw(st.binary(min_size=46, max_size=46))) for p in present)
    req = RecoveryRequest("g", DAY, missing, sealed)
    assert RecoveryRequest.from_bytes(req.to_bytes()) == req
    hours = data.draw(st.integers(1, 25))
    vals = tuple((data.draw(st.integers(0, Q - 1)), data.draw(st.integers(0, Q - 1))) for _ in range(hours))
    shares = tuple((p, data.draw(st.integers(1, 0xFFFF)), data.draw(st.binary(min_size=16, max_size=16))) for p in present)
    rel = RecoveryRelease("g", "me", DAY, missing, vals, shares)
    raw = rel.to_bytes()
    assert RecoveryRelease.from_bytes(raw) == rel
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(FormatError):
        RecoveryRelease.from_bytes(raw[:cut])


def test_unmasking_messages_refuse_a_member_of_both_kinds() -> None:
    with pytest.raises(FormatError, match="both"):
        RecoveryRequest("g", DAY, ("a",), (("a", bytes(46)),))
    with pytest.raises(FormatError, match="no member"):
        RecoveryRequest("g", DAY, ())
