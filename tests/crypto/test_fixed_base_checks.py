"""The verifier's table-backed Pedersen checks (crypto/bulletproofs/_tables.py:
``value_point``, ``openings_hold``) against the plain computation ``m*G + r*H``."""

from __future__ import annotations

import secrets

from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto.bulletproofs._tables import openings_hold, value_point
from meterhub.crypto.group import G, H, Point, PointArray, Q
from meterhub.crypto.sampling import Sample, verify_sample_openings

EDGE = [0, 1, 2, 255, 256, (1 << 32) - 1, 1 << 32, Q - 1, Q, Q + 5, -1, -(1 << 40), (1 << 256) - 1]
scalars = st.one_of(st.sampled_from(EDGE), st.integers(min_value=-(1 << 260), max_value=1 << 260))


def _plain(m: int, r: int) -> Point:
    return G * m + H * r


@settings(max_examples=60, deadline=None)
@given(scalars, scalars)
def test_value_point_is_m_g_plus_r_h(m, r):
    assert value_point(m, r) == _plain(m, r)


def _arr(points: list[Point]) -> PointArray:
    return PointArray.parse(b"".join(p.to_bytes_uncompressed() if not p.is_identity else bytes(65) for p in points))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(scalars, scalars, st.sampled_from(["ok", "m+1", "r+1", "neg", "zero"])), min_size=1,
                max_size=6))
def test_openings_hold_agrees_with_the_plain_check(rows):
    ms, rs, pts, want = [], [], [], True
    for m, r, how in rows:
        c = _plain(m, r)
        if how == "m+1":
            c = c + G
        elif how == "r+1":
            c = c + H
        elif how == "neg":
            c = -c
        elif how == "zero":
            c = Point.identity()
        ms.append(m)
        rs.append(r)
        pts.append(c)
        want = want and c == _plain(m, r)
    assert openings_hold(ms, rs, _arr(pts)) is want


def test_openings_hold_edges():
    # Identity commitment: holds exactly for an opening of zero (mod Q).
    ident = Point.identity()
    assert openings_hold([0, Q], [Q, 0], _arr([ident, ident]))
    assert not openings_hold([0], [1], _arr([ident]))
    # One bad sample among good ones is found wherever it sits.
    ms = [secrets.randbelow(1 << 32) for _ in range(9)]
    rs = [secrets.randbelow(Q) for _ in range(9)]
    good = [_plain(m, r) for m, r in zip(ms, rs, strict=True)]
    assert openings_hold(ms, rs, _arr(good))
    for k in range(9):
        bad = list(good)
        bad[k] = bad[k] + G
        assert not openings_hold(ms, rs, _arr(bad))
    # Two wrong openings whose errors cancel in a sum are still both wrong.
    assert not openings_hold([ms[0] + 1, ms[1] - 1], rs[:2], _arr(good[:2]))
    assert openings_hold([], [], _arr([]))


def test_sample_openings_exact_and_strict():
    ms = [secrets.randbelow(1 << 32) for _ in range(5)]
    rs = [secrets.randbelow(Q) for _ in range(5)]
    samples = [Sample(i, m, r) for i, (m, r) in enumerate(zip(ms, rs, strict=True))]
    blob = b"".join(_plain(m, r).to_bytes_uncompressed() for m, r in zip(ms, rs, strict=True))
    assert verify_sample_openings(samples, blob)
    for k in range(5):
        tampered = list(samples)
        tampered[k] = Sample(k, ms[k] + 1, rs[k])
        assert not verify_sample_openings(tampered, blob)
    # A commitment that does not decode is a failed check, not an exception.
    bad = bytearray(blob)
    bad[65 * 2 + 64] ^= 1
    assert not verify_sample_openings(samples, bytes(bad))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=40),
       st.lists(st.sampled_from([0, 1, 2, 3, 220, 410, 1023, 1024, (1 << 20) + 1]), min_size=1, max_size=40),
       st.booleans())
def test_few_price_msm_ladder_matches_naive(ms, prices, cancel):
    """``PointArray.msm`` with a few distinct short scalars (the bill's tariff prices)
    takes the double-and-add ladder over the per-price sums: equal to one multiplication
    per term, also when sums or the result are the identity."""
    from meterhub.crypto.group import naive_msm

    pts = [G * m if m else Point.identity() for m in ms] * 8  # enough points for the per-price sums
    scal = [prices[(i // 8) % len(prices)] for i in range(len(pts))]
    if cancel:  # each point and its negation under the same price: every sum vanishes
        pts += [-p for p in pts]
        scal += scal
    arr = _arr(pts)
    assert arr.msm(scal) == naive_msm(scal, pts)


def test_ladder_is_chosen_for_short_prices_and_not_for_long_weights(monkeypatch):
    import meterhub.crypto.group.arrays as arrays

    calls = []
    real = arrays._ladder
    monkeypatch.setattr(arrays, "_ladder", lambda terms: calls.append(len(terms)) or real(terms))
    pts = [G * (i + 1) for i in range(300)]
    arr = _arr(pts)
    prices = [220, 240, 260] * 100
    assert arr.msm(prices) == G * (sum(p * (i + 1) for i, p in enumerate(prices)) % Q)
    assert calls == [3]
    big = [secrets.randbits(128) | 1 << 127 for _ in range(3)] * 100
    assert arr.msm(big) == G * (sum(b * (i + 1) for i, b in enumerate(big)) % Q)
    assert calls == [3]
