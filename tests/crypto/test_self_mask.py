"""Double masking (Bonawitz et al., CCS 2017, §4) at the crypto layer: the self-mask
shared linearly over Z_q (Shamir 1979), with dropouts; the sharing against an
independent field implementation (galois); the threshold properties; sealed shares and
the unmasking messages' encodings."""

from __future__ import annotations

import secrets
from datetime import date

import galois
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
    self_mask_threshold,
    share_aad,
    share_context,
)

DAY = date(2027, 3, 27)
# galois builds GF(Q) without factoring Q - 1 when given a primitive element and told not
# to verify it: only additions, products and inverses are used here, which do not depend
# on it (https://mhostetter.github.io/galois/, FieldClass).
GFQ = galois.GF(Q, primitive_element=7, verify=False)


def _keys(n: int) -> tuple[list, list[bytes]]:
    keys = [zerosum.generate_private_key() for _ in range(n)]
    return keys, [zerosum.public_key_bytes(k) for k in keys]


def _round(n: int, hours: int, dropped: set[int]) -> tuple[list[int], list[int]]:
    """Members 1..n release values masked twice; each present member answers the
    pairwise masks it shares with the dropped and ONE vector, the sum of its shares of
    the present members' self-masks; the aggregator interpolates that sum once."""
    keys, pubs = _keys(n)
    pair = {(i, j): zerosum.pair_key(keys[i - 1], pubs[j - 1]) for i in range(1, n + 1) for j in range(1, n + 1)
            if i != j}
    ctx = mask_context("g", DAY, hours, bytes(32))
    t = self_mask_threshold(n)
    values = {i: [secrets.randbelow(10_000) for _ in range(hours)] for i in range(1, n + 1)}
    own = {i: selfmask.random_scalars(secrets.token_bytes, hours) for i in range(1, n + 1)}
    shares = {}
    releases = {}
    for i in range(1, n + 1):
        pm = zerosum.member_masks([pair[i, j] for j in range(1, n + 1) if j != i], ctx, hours)
        releases[i] = [(v + a + b) % Q for v, a, b in zip(values[i], pm, own[i], strict=True)]
        fixed = {x: selfmask.derived_share(pair[i, x], share_context("g", DAY, hours, f"m{i}", f"m{x}"), hours)
                 for x in selfmask.derived_holders(n, i, t)}
        shares[i] = fixed | selfmask.split(own[i], fixed, [x for x in range(1, n + 1) if x not in fixed])
        for x in fixed:  # the holder derives the same share from its end of the pair
            assert selfmask.derived_share(pair[x, i], share_context("g", DAY, hours, f"m{i}", f"m{x}"), hours) == fixed[x]
    present = [i for i in range(1, n + 1) if i not in dropped]
    total = [0] * hours
    answers = {}
    for j in present:
        total = [a + b for a, b in zip(total, releases[j], strict=True)]
        rec = zerosum.member_masks([pair[j, d] for d in sorted(dropped)], ctx, hours)
        total = [a - b for a, b in zip(total, rec, strict=True)]
        answers[j] = [sum(shares[i][j][k] for i in present) % Q for k in range(hours)]
    assert selfmask.consistent(answers, t, [secrets.randbits(128) for _ in range(hours)]) == []
    first_t = dict(list(answers.items())[:t])
    total = [a - b for a, b in zip(total, selfmask.combine(first_t), strict=True)]
    truth = [sum(values[i][h] for i in present) for h in range(hours)]
    return [x % Q for x in total], truth


@pytest.mark.parametrize(("n", "dropped"), [(9, set()), (9, {3}), (9, {1, 6}), (5, set()), (12, {2, 7, 11})])
def test_masks_cancel_with_and_without_dropouts(n: int, dropped: set[int]) -> None:
    got, truth = _round(n, 24, dropped)
    assert got == truth


def test_threshold() -> None:
    assert [self_mask_threshold(n) for n in (5, 6, 7, 10, 50)] == [4, 4, 4, 6, 33]


def test_random_scalars_are_uniform_draws() -> None:
    m = selfmask.random_scalars(secrets.token_bytes, 300)
    assert len(set(m)) == 300 and all(0 <= y < Q for y in m)
    assert m != selfmask.random_scalars(secrets.token_bytes, 300)
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.random_scalars(lambda k: bytes(k - 1), 2)


def test_derived_shares_depend_on_pair_and_context() -> None:
    keys, pubs = _keys(3)
    ab = zerosum.pair_key(keys[0], pubs[1])
    ba = zerosum.pair_key(keys[1], pubs[0])
    ac = zerosum.pair_key(keys[0], pubs[2])
    c1 = share_context("g", DAY, 24, "a", "b")
    s = selfmask.derived_share(ab, c1, 400)  # crosses HKDF blocks
    assert s == selfmask.derived_share(ba, c1, 400) and len(set(s)) == 400
    assert s != selfmask.derived_share(ac, c1, 400)
    assert s != selfmask.derived_share(ab, share_context("g", DAY, 24, "b", "a"), 400)  # dealer and holder swapped
    # separated from the pairwise masks of the same pair and context
    assert set(s[:50]).isdisjoint(ab.values(c1, 50))


def test_derived_holders() -> None:
    assert selfmask.derived_holders(6, 5, 4) == [6, 1, 2]
    assert selfmask.derived_holders(50, 1, 33) == list(range(2, 34))
    for bad in ((5, 0, 3), (5, 6, 3), (5, 1, 5), (5, 1, 0)):
        with pytest.raises(selfmask.SelfMaskError):
            selfmask.derived_holders(*bad)


_VEC = st.lists(st.integers(0, Q - 1), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 14).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, n))), _VEC, st.data())
def test_any_threshold_subset_recovers_and_matches_galois(nt: tuple[int, int], secret: list[int], data) -> None:
    """Any ``t`` of the ``n`` shares give the secret back; the shares are the values of
    the polynomial that galois interpolates over GF(Q) through ``(0, secret)`` and the
    ``t - 1`` fixed points, and galois' interpolation of any ``t`` shares at 0 is the
    secret too."""
    n, t = nt
    width = len(secret)
    fixed_x = data.draw(st.lists(st.integers(1, n), min_size=t - 1, max_size=t - 1, unique=True))
    fixed = {x: data.draw(st.lists(st.integers(0, Q - 1), min_size=width, max_size=width)) for x in fixed_x}
    rest = [x for x in range(1, n + 1) if x not in fixed]
    shares = fixed | selfmask.split(secret, fixed, rest)
    subset = data.draw(st.lists(st.sampled_from(range(1, n + 1)), min_size=t, max_size=t, unique=True))
    assert selfmask.combine({x: shares[x] for x in subset}) == secret
    assert selfmask.consistent(shares, t, [secrets.randbits(128) for _ in range(width)]) == []
    for k in range(width):
        poly = galois.lagrange_poly(GFQ([0, *fixed_x]), GFQ([secret[k], *(fixed[x][k] for x in fixed_x)]))
        assert poly.degree <= t - 1
        assert [int(poly(GFQ(x))) for x in rest] == [shares[x][k] for x in rest]
        oracle = galois.lagrange_poly(GFQ(subset), GFQ([shares[x][k] for x in subset]))
        assert int(oracle(GFQ(0))) == secret[k]


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 14).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, n - 1))), _VEC, st.data())
def test_fewer_than_threshold_shares_fit_every_secret(nt: tuple[int, int], secret: list[int], data) -> None:
    """``t - 1`` shares say nothing about the secret: for any other value there is a
    sharing of it, of the same degree, that gives exactly the same ``t - 1`` shares
    (so each value is equally consistent with what ``t - 1`` holders see); and a share
    moved off the polynomial is found by :func:`consistent`."""
    n, t = nt
    width = len(secret)
    fixed = {x: selfmask.random_scalars(secrets.token_bytes, width)
             for x in selfmask.derived_holders(n, data.draw(st.integers(1, n)), t)}
    shares = fixed | selfmask.split(secret, fixed, [x for x in range(1, n + 1) if x not in fixed])
    seen = data.draw(st.lists(st.sampled_from(range(1, n + 1)), min_size=t - 1, max_size=t - 1, unique=True))
    other = data.draw(st.lists(st.integers(0, Q - 1), min_size=width, max_size=width))
    alt = {x: shares[x] for x in seen}
    alt |= selfmask.split(other, alt, [x for x in range(1, n + 1) if x not in alt])
    assert all(alt[x] == shares[x] for x in seen)
    assert selfmask.combine({x: alt[x] for x in list(alt)[-t:]}) == other
    assert selfmask.consistent(alt, t, [secrets.randbits(128) for _ in range(width)]) == []
    if n > t:  # one share off the polynomial among more than t
        off = data.draw(st.sampled_from(range(1, n + 1)))
        bad = dict(shares)
        bad[off] = [(bad[off][0] + 1) % Q, *bad[off][1:]]
        assert selfmask.consistent(bad, t, [secrets.randbits(128) | 1 for _ in range(width)]) != []


def test_sums_of_shares_interpolate_the_sum_of_secrets() -> None:
    """Linearity (the unmasking round): the members' sums of their shares of several
    dealers' secrets are shares of the sum of the secrets."""
    n, t, width = 10, 6, 5
    secrets_ = [selfmask.random_scalars(secrets.token_bytes, width) for _ in range(4)]
    dealt = []
    for d, s in enumerate(secrets_):
        fixed = {x: selfmask.random_scalars(secrets.token_bytes, width) for x in selfmask.derived_holders(n, d + 1, t)}
        dealt.append(fixed | selfmask.split(s, fixed, [x for x in range(1, n + 1) if x not in fixed]))
    sums = {x: [sum(sh[x][k] for sh in dealt) % Q for k in range(width)] for x in (2, 3, 5, 7, 8, 10)}
    assert selfmask.combine(sums) == [sum(s[k] for s in secrets_) % Q for k in range(width)]


def test_lagrange_refusals_and_identity() -> None:
    assert selfmask.lagrange_coefficients([1, 2, 3], 2) == (0, 1, 0)
    assert sum(selfmask.lagrange_coefficients([4, 9, 13, 20])) % Q == 1  # the constant polynomial 1
    for bad in ([], [1, 1], [-1, 2], [1, 0x10000]):
        with pytest.raises(selfmask.SelfMaskError):
            selfmask.lagrange_coefficients(bad)
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.split([1], {2: [3]}, [2])
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.combine({})


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 0xFFFF), st.lists(st.integers(0, Q - 1), min_size=1, max_size=6), st.binary(max_size=40),
       st.binary(min_size=1, max_size=4))
def test_sealed_shares_open_only_in_their_context(index: int, share: list[int], aad: bytes, other: bytes) -> None:
    a, b = zerosum.generate_private_key(), zerosum.generate_private_key()
    ab = zerosum.pair_key(a, zerosum.public_key_bytes(b))
    ba = zerosum.pair_key(b, zerosum.public_key_bytes(a))
    sealed = selfmask.seal_vector(ab, aad, index, share, secrets.token_bytes(12))
    assert len(sealed) == selfmask.sealed_size(len(share))
    assert selfmask.open_vector(ba, aad, sealed, len(share)) == (index, share)
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.open_vector(ba, aad + other, sealed, len(share))
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.open_vector(ba, aad, sealed, len(share) + 1)
    c = zerosum.generate_private_key()
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.open_vector(zerosum.pair_key(c, zerosum.public_key_bytes(a)), aad, sealed, len(share))
    with pytest.raises(selfmask.SelfMaskError):
        selfmask.seal_vector(ab, aad, index, [Q], secrets.token_bytes(12))


_ID = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(_ID, min_size=1, max_size=12, unique=True), st.data())
def test_unmasking_messages_round_trip(ids: list[str], data) -> None:
    ids = sorted(ids)
    kinds = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    missing = tuple(i for i, k in zip(ids, kinds, strict=True) if k)
    present = [i for i, k in zip(ids, kinds, strict=True) if not k]
    hours = data.draw(st.integers(1, 25))
    sealed = tuple((p, data.draw(st.sampled_from([b"", bytes(selfmask.sealed_size(2 * hours))]))) for p in present)
    req = RecoveryRequest("g", DAY, missing, sealed)
    assert RecoveryRequest.from_bytes(req.to_bytes()) == req
    vals = tuple((data.draw(st.integers(0, Q - 1)), data.draw(st.integers(0, Q - 1))) for _ in range(hours))
    share = tuple((data.draw(st.integers(0, Q - 1)), data.draw(st.integers(0, Q - 1))) for _ in range(hours))
    rel = RecoveryRelease("g", "me", DAY, missing, tuple(present), vals, share)
    raw = rel.to_bytes()
    assert RecoveryRelease.from_bytes(raw) == rel
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(FormatError):
        RecoveryRelease.from_bytes(raw[:cut])


def test_unmasking_messages_refuse_a_member_of_both_kinds() -> None:
    with pytest.raises(FormatError, match="both"):
        RecoveryRequest("g", DAY, ("a",), (("a", b""),))
    with pytest.raises(FormatError, match="no member"):
        RecoveryRequest("g", DAY, ())
    with pytest.raises(FormatError, match="impossible length"):
        RecoveryRequest("g", DAY, (), (("a", bytes(46)),))  # a version-2 sealed seed share
    with pytest.raises(FormatError, match="names itself"):
        RecoveryRelease("g", "a", DAY, (), ("a",), ((1, 2),), ((3, 4),))
    with pytest.raises(FormatError, match="different lengths"):
        RecoveryRelease("g", "a", DAY, (), ("b",), ((1, 2),), ())


def test_share_aad_binds_the_round() -> None:
    base = share_aad("g", DAY, "a", "b")
    assert len({base, share_aad("h", DAY, "a", "b"), share_aad("g", date(2027, 3, 28), "a", "b"),
                share_aad("g", DAY, "b", "a")}) == 4
