"""Version-2 sum-of-squares proof (one inner-product argument): completeness, soundness
against wrong sums and tampering, binding to context, batch verification."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto import rangeproof as rp
from meterhub.crypto import sumsquares as ss
from meterhub.crypto.group import G, Point, Q
from meterhub.crypto.pedersen import Commitment, Opening, commit, verify_opening
from meterhub.crypto.transcript import ProofContext, ProofError

CTX = ProofContext(meter_id="meter-7", period="2027-04-01/2027-04-30", tariff_id="profile-scores",
                   tariff_version=60, statement=b"meterhub/v1/profile-scores/sum-of-squares")
OTHER_CONTEXTS = [
    dataclasses.replace(CTX, meter_id="meter-8"),
    dataclasses.replace(CTX, period="2027-05-01/2027-05-31"),
    dataclasses.replace(CTX, tariff_version=15),
    dataclasses.replace(CTX, statement=b"other"),
]


def verdict(f: Callable[[], bool]) -> bool:
    try:
        return bool(f())
    except ProofError:
        return False


def made(values: list[int], ctx: ProofContext = CTX) -> tuple[list[Commitment], bytes, Opening]:
    pairs = [commit(v) for v in values]
    cs = [c for c, _ in pairs]
    proof, total, opening = ss.prove(cs, [o for _, o in pairs], ctx)
    assert verify_opening(total, opening)
    return cs, proof, opening


@settings(max_examples=10, deadline=None)
@given(st.lists(st.one_of(st.just(0), st.integers(0, 2**32 - 1)), min_size=1, max_size=9))
def test_complete(values: list[int]) -> None:
    cs, proof, op = made(values)
    assert op.m == sum(v * v for v in values)
    assert len(proof) == ss.proof_size(len(values))
    assert ss.verify(cs, op.m, op.r, proof, CTX)


def test_short() -> None:
    # 720 hourly values: under a kilobyte (version 1: about 126 kB of square proofs).
    assert ss.proof_size(720) < 1000
    assert ss.proof_size(720) < rp.range_proof_size(1, 720) / 50


def test_wrong_sum_or_blinding_rejected() -> None:
    cs, proof, op = made([3, 4, 5, 0, 7])
    assert ss.verify(cs, op.m, op.r, proof, CTX)
    for s, r in ((op.m + 1, op.r), (op.m - 1, op.r), (0, op.r), (op.m, (op.r + 1) % Q)):
        assert not ss.verify(cs, s, r, proof, CTX)


def test_dishonest_prover_cannot_prove_wrong_sum() -> None:
    # The prover uses openings that do not match the commitments (a square off by one).
    pairs = [commit(v) for v in (3, 4, 5)]
    cs = [c for c, _ in pairs]
    lying = [pairs[0][1], pairs[1][1], Opening(6, pairs[2][1].r)]
    proof, _, op = ss.prove(cs, lying, CTX)
    assert op.m == 9 + 16 + 36
    assert not ss.verify(cs, op.m, op.r, proof, CTX)
    # Nor with the true sum and the wrong vector.
    assert not ss.verify(cs, 50, op.r, proof, CTX)


def test_bound_to_commitments_and_context() -> None:
    cs, proof, op = made([1, 2, 3])
    assert not ss.verify([cs[1], cs[0], cs[2]], op.m, op.r, proof, CTX)
    assert not ss.verify([cs[0], cs[1], commit(3)[0]], op.m, op.r, proof, CTX)
    for ctx in OTHER_CONTEXTS:  # other meter, period, resolution or statement
        assert not ss.verify(cs, op.m, op.r, proof, ctx)
    with pytest.raises(ProofError):
        ss.verify(cs[:2], op.m, op.r, proof, CTX)


def test_every_byte_flip_rejected() -> None:
    cs, proof, op = made([0, 9, 2])
    for i in range(len(proof)):
        b = bytearray(proof)
        b[i] ^= 1 << (i % 8)
        assert not verdict(lambda b=b: ss.verify(cs, op.m, op.r, bytes(b), CTX)), i


def test_tampered_point_rejected() -> None:
    cs, proof, op = made([5, 6])
    # Replace A by A + G (a valid point): the check fails rather than raising.
    bumped = (Point.from_bytes(proof[6:39]) + G).to_bytes()
    assert not ss.verify(cs, op.m, op.r, proof[:6] + bumped + proof[39:], CTX)


def test_version_1_is_not_version_2() -> None:
    pairs = [commit(v) for v in (1, 2)]
    cs = [c for c, _ in pairs]
    old, _, op = rp.prove_sum_of_squares(cs, [o for _, o in pairs], CTX)
    with pytest.raises(ProofError):
        ss.verify(cs, op.m, op.r, old, CTX)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    c, _ = commit(1, 2)
    assert not verdict(lambda: ss.verify([c], 1, 0, data, CTX))


def test_batch() -> None:
    items = []
    for k, values in enumerate(([1, 2, 3], [0, 0, 7, 9, 11], [4])):
        ctx = dataclasses.replace(CTX, meter_id=f"meter-{k}")
        cs, proof, op = made(values, ctx)
        items.append((cs, op.m, op.r, proof, ctx))
    assert ss.verify_batch(items)
    # One false statement in the batch fails it.
    cs, s, r, proof, ctx = items[1]
    assert not ss.verify_batch([items[0], (cs, s + 1, r, proof, ctx), items[2]])
    # Proofs swapped between meters fail.
    assert not ss.verify_batch([items[0], (items[1][0], items[1][1], items[1][2], items[1][3], items[2][4])])
    with pytest.raises(ProofError):
        ss.verify_batch([])


@pytest.mark.parametrize("limb_products_from", [1, 100])
def test_batch_on_either_generator_path(limb_products_from: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch equation with the limb products (threshold 1) and with the Python sums
    (threshold 100): honest batches of mixed sizes pass, and a wrong sum, a wrong
    blinding or a proof moved to another meter fails wherever it sits."""
    monkeypatch.setattr(ss, "_LIMB_PRODUCTS_FROM", limb_products_from)
    items = []
    for k, values in enumerate(([1, 2, 3], [0, 0, 7, 9, 11], [4], [5, 6], [900, 0, 0, 1, 2, 3, 4, 5, 6])):
        ctx = dataclasses.replace(CTX, meter_id=f"meter-{k}")
        cs, proof, op = made(values, ctx)
        items.append((cs, op.m, op.r, proof, ctx))
    assert ss.verify_batch(items)
    for k in range(len(items)):
        cs, s, r, proof, ctx = items[k]
        for bad in ((cs, s + 1, r, proof, ctx), (cs, s, r + 1, proof, ctx),
                    (cs, s, r, proof, dataclasses.replace(ctx, meter_id="elsewhere"))):
            assert not ss.verify_batch([*items[:k], bad, *items[k + 1:]])


def test_factored_check_equals_the_vector_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier's factored generator coefficients, closed-form ``delta`` and doubled
    ``s`` give exactly the section 6.2 vectors ``beta (d_R - a s)``, ``beta (d_L - b s^-1)``
    and the ``G`` scalar built from the prover's own ``d_L, d_R`` (same transcript)."""
    from meterhub.crypto.bulletproofs.ipa import ArgumentBody, _ip, _pad, _verifier_challenges

    values = [3, 0, 5, 11, 2, 9, 0]
    cs, proof, op = made(values)
    beta = 0x1234567890ABCDEF << 100
    monkeypatch.setattr(ss, "random_scalar", lambda: beta)
    ck = ss.squares_check(cs, op.m, op.r, proof, CTX)
    assert ck is not None
    n, nn = len(values), _pad(len(values))
    body = ArgumentBody.read(proof, 6, nn.bit_length() - 1, 1)
    t = ss._transcript(CTX, [c.point for c in cs], op.m, op.r)
    y, z, c, d_l, d_r = ss._challenges(t, body.big_a, body.big_s, n, nn)
    t.append_point(b"sos/T1", body.big_t1)
    t.append_point(b"sos/T2", body.big_t2)
    x = t.challenge_scalar(b"sos/x")
    for label, v in ((b"sos/t_x", body.t_x), (b"sos/tau_x", body.tau_x), (b"sos/mu", body.mu)):
        t.append_scalar(label, v)
    w = t.challenge_scalar(b"sos/w")
    us = _verifier_challenges(t, body.ls, body.rs)
    s = [1] * nn  # s_i = prod_j u_j^(+1 if bit (k-1-j) of i is set else -1), section 6.2
    for i in range(nn):
        for j, u in enumerate(us):
            s[i] = s[i] * (u if i >> (len(us) - 1 - j) & 1 else pow(u, -1, Q)) % Q
    a, b = body.a[0], body.b[0]
    assert ck.s == s and list(ck.link) == c[:n] and ck.u[1] == y
    assert ck.g_vec == tuple(beta * (dr - a * si) % Q for dr, si in zip(d_r, s, strict=True))
    assert ck.h_vec == tuple(beta * (dl - b * s[nn - 1 - i]) % Q for i, dl in enumerate(d_l))
    zz = z * z % Q
    gamma = (-pow(zz, -1, Q)) % Q
    assert ck.g == (beta * w * (body.t_x - a * b) + gamma * (body.t_x - op.m - _ip(d_r, d_l))) % Q
    assert ck.own_scalars[1] == beta * x % Q


def test_sum_of_powers_edge_cases() -> None:
    for y2 in (0, 1, 2, Q - 1, 12345, Q + 1):
        assert ss._sum_of_powers(y2, 16) == sum(pow(y2, i, Q) for i in range(16)) % Q


def test_link_coefficients_follow_their_definition() -> None:
    """``c_h = SHA-256(len || DST || seed || h)[:16]`` (what the prover uses, so proofs stay
    byte for byte what they were), and the byte form is the same digests."""
    import hashlib

    seed = bytes(range(32))
    dst = b"meterhub/v1/sum-of-squares/link"
    want = [int.from_bytes(hashlib.sha256(bytes([len(dst)]) + dst + seed + h.to_bytes(4, "big")).digest()[:16], "big")
            for h in range(37)]
    assert ss.link_coefficients(seed, 37) == want
    assert ss.link_coefficient_bytes(seed, 37) == b"".join(c.to_bytes(16, "big") for c in want)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=11), st.integers(min_value=1, max_value=Q - 1),
       st.lists(st.integers(min_value=1, max_value=Q - 1), min_size=11, max_size=11))
def test_split_tables_equal_the_written_out_vectors(k: int, y: int, us: list[int]) -> None:
    """``u_i = y^i`` and ``s_i`` from the split tables equal ``_powers`` and
    ``_verifier_scalars`` for every size from 1 to 2^11, edge values included."""
    from meterhub.crypto.bulletproofs.ipa import _powers, _verifier_scalars

    nn = 1 << k
    lo, hi = ss._split_powers(y, k)
    assert [a * b % Q for a in hi for b in lo] == _powers(y, nn)
    u_sq, u_inv_sq, s_lo, s_hi = ss._split_s(us[:k], k)
    want_sq, want_inv_sq, want_s = _verifier_scalars(us[:k], nn)
    assert (u_sq, u_inv_sq) == (want_sq, want_inv_sq)
    assert [a * b % Q for a in s_hi for b in s_lo] == want_s
    # s reversed is s^-1 (section 6.2), which check_equations reads off the reversed tables.
    assert [a * b % Q for a in s_hi[::-1] for b in s_lo[::-1]] == want_s[::-1]


def test_split_tables_at_the_edges() -> None:
    for y in (1, 2, Q - 1):
        for k in (0, 1, 2, 10):
            lo, hi = ss._split_powers(y, k)
            assert [a * b % Q for a in hi for b in lo] == [pow(y, i, Q) for i in range(1 << k)]


def test_link_coefficient_bytes_follow_the_definition() -> None:
    """``c_h = SHA-256(len || DST || seed || u32 h)``, first 16 bytes, for counts that
    grow and shrink the cached index encodings (and past MAX_VALUES, uncached)."""
    import hashlib

    for count in (0, 1, 3, 720, 5, ss.MAX_VALUES + 2, 2):
        seed = count.to_bytes(32, "big")
        want = b"".join(
            hashlib.sha256(bytes([len(ss._LINK_DST)]) + ss._LINK_DST + seed + h.to_bytes(4, "big")).digest()[:16]
            for h in range(count)
        )
        assert ss.link_coefficient_bytes(seed, count) == want
        assert ss.link_coefficients(seed, count) == [int.from_bytes(want[16 * h : 16 * h + 16], "big")
                                                     for h in range(count)]
    assert len(ss._INDEX_BYTES) <= ss.MAX_VALUES


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.sampled_from([1, 2, Q - 1, Q - 2, (Q + 1) // 2]), st.integers(min_value=1, max_value=Q - 1)),
                max_size=14))
def test_batch_inverses_equal_pow(values: list[int]) -> None:
    assert ss._batch_inverse(values) == [pow(v, -1, Q) for v in values]
    for y2 in values[:3]:
        if y2 != 1:
            assert ss._sum_of_powers(y2, 1024, pow(y2 - 1, -1, Q)) == ss._sum_of_powers(y2, 1024)


def _random_check(k: int, n: int, extreme: bool) -> ss.SquaresCheck:
    """A :class:`SquaresCheck` with random (or all ``Q - 1``) tables and scalars; only the
    generator part matters to ``_generator_scalars``."""
    import secrets

    def r() -> int:
        return Q - 1 if extreme else secrets.randbelow(Q)

    lo, hi = 1 << (k // 2), 1 << (k - k // 2)
    link = tuple(((1 << 128) - 1) if extreme else secrets.randbits(128) for _ in range(n))
    return ss.SquaresCheck(
        (), (), [r() for _ in range(lo)], [r() for _ in range(hi)], [r() for _ in range(lo)],
        [r() for _ in range(hi)], r(), r(), r(), r(), r(), 0, 0, b"".join(c.to_bytes(16, "big") for c in link),
    )


@pytest.mark.parametrize("k,n,extreme", [(0, 1, False), (0, 1, True), (3, 5, False), (10, 720, False),
                                         (10, 720, True), (10, 1024, True), (9, 257, False), (1, 2, True)])
def test_link_dot_is_the_plain_sum(k: int, n: int, extreme: bool) -> None:
    ck = _random_check(k, n, extreme)
    assert len(ck.link) == n
    want = sum(ui * ci for ui, ci in zip(ck.u, ck.link, strict=False)) % Q
    assert ss._link_dot(ck.u_lo, ck.u_hi, ck.link_bytes) == want


@pytest.mark.parametrize("sizes,extreme", [
    ([(10, 720)] * 3, False), ([(10, 720)] * 2, True), ([(0, 1), (3, 5), (10, 1000), (3, 8)], False),
    ([(1, 2), (2, 3)], True), ([(4, 16)] * (ss._FOLD_CHUNK + 3), True),
])
def test_generator_scalars_equal_the_vector_sums(
    sizes: list[tuple[int, int]], extreme: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limb products give exactly ``sum_k g_vec_k`` and ``sum_k h_vec_k`` (the written-out
    vectors of each check under its weighted scalars), for mixed sizes, maximal values
    (every table entry and scalar ``Q - 1``, every link coefficient ``2^128 - 1``) and a
    batch longer than one product chunk."""
    import secrets

    checks = [_random_check(k, n, extreme) for k, n in sizes]
    nn = max(ck.size for ck in checks)
    parts = []
    want_g = [0] * nn
    want_h = [0] * nn
    for ck in checks:
        sc = [Q - 1] * 5 if extreme else [secrets.randbelow(Q) for _ in range(5)]
        parts.append((ck, *sc))
        w = dataclasses.replace(ck, g_u=sc[0], g_s=sc[1], h_u=sc[2], h_c=sc[3], h_s=sc[4])
        for i, (gv, hv) in enumerate(zip(w.g_vec, w.h_vec, strict=True)):
            want_g[i] += gv
            want_h[i] += hv
    want = [v % Q for v in want_g + want_h]
    assert ss._generator_scalars_plain(parts, nn) == want
    # The limb products whatever the batch size (the dispatcher's threshold set to 1).
    monkeypatch.setattr(ss, "_LIMB_PRODUCTS_FROM", 1)
    assert ss._generator_scalars(parts, nn) == want
