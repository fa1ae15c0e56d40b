"""Pedersen commitments: correctness, homomorphism, hiding blinding, binding checks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto.group import G, H, Q
from meterhub.crypto.pedersen import Commitment, Opening, commit, verify_opening


@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=0, max_value=Q - 1))
@settings(max_examples=40, deadline=None)
def test_commitment_is_mG_plus_rH(m, r):
    c, o = commit(m, r)
    assert c.point == G * m + H * r
    assert verify_opening(c, o)
    assert not verify_opening(c, Opening(m + 1, r))
    assert not verify_opening(c, Opening(m, (r + 1) % Q))


def test_zero_reading_with_zero_blinding_is_identity():
    c, o = commit(0, 0)
    assert c.point.is_identity
    assert verify_opening(c, o)
    assert Commitment.from_bytes(c.to_bytes()) == c


def test_fresh_blinding_hides_equal_readings():
    c1, o1 = commit(500)
    c2, o2 = commit(500)
    assert o1.r != o2.r and c1 != c2


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 1000)), min_size=1, max_size=8))
@settings(max_examples=25, deadline=None)
def test_linear_homomorphism(pairs):
    total = Commitment(G * 0)
    bill = 0
    blind = 0
    for m, t in pairs:
        c, o = commit(m)
        total = total + c * t
        bill += t * m
        blind = (blind + t * o.r) % Q
    assert total.point == G * bill + H * blind
