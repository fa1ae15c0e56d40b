"""Pedersen commitments: correctness, homomorphism, hiding blinding, binding checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto.group import G, H, Q, base_mul
from meterhub.crypto.group import point as point_mod
from meterhub.crypto.pedersen import Commitment, Opening, commit, commit_point, verify_opening


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


# -- the constant-time commitment (commit_point): same points, no variable-time multiplication --
@given(st.integers(min_value=-(2**40), max_value=2**40), st.integers(min_value=0, max_value=Q - 1))
@settings(max_examples=40, deadline=None)
def test_commit_point_equals_the_variable_time_formula(m, r):
    assert commit_point(m, r).to_bytes() == (base_mul(m) + H * r).to_bytes()


@pytest.mark.parametrize("m", [0, 1, 2**32 - 1, Q - 1, Q - 2, Q, -1, -2])
@pytest.mark.parametrize("r", [0, 1, Q - 1, 0xDEADBEEF])
def test_commit_point_at_edge_values(m, r):
    assert commit_point(m, r) == base_mul(m) + H * r


def test_commit_avoids_the_variable_time_multiplication(monkeypatch):
    """Fails before the change: ``commit`` computed ``H * r`` by ``tweak_mul`` (wNAF ``ecmult``)."""

    def refused(*_args):
        raise AssertionError("the variable-time _mul_pk was called")

    monkeypatch.setattr(point_mod, "_mul_pk", refused)
    c, o = commit(12_345)
    c0, o0 = commit(0, 77)
    monkeypatch.undo()
    assert c.point == base_mul(12_345) + H * o.r
    assert c0.point == H * 77 and o0 == Opening(0, 77)
