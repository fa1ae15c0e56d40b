"""The secp256k1 group wrapper: identity, zero scalars, strict encodings, H, MSM."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto.group import (
    H_DST,
    G,
    H,
    P,
    Point,
    PointDecodeError,
    Q,
    base_mul,
    hash_to_point,
    msm,
    msm_encoded,
    naive_msm,
    scalar_from_bytes,
    scalar_to_bytes,
)

# SEC 2 v2.0 (Certicom, 2010), section 2.4.1: the generator of secp256k1 in
# uncompressed form, and the order n.
SEC2_G = bytes.fromhex(
    "04"
    "79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798"
    "483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8"
)
SEC2_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _affine_add(p1, p2):
    """Textbook affine addition on y^2 = x^3 + 7 (SEC 1 v2.0, 2.2.1) as an independent oracle."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:  # tangent
        lam = 3 * x1 * x1 * pow(2 * y1, -1, P) % P
        return _finish(lam, x1, y1, x1)
    lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    return _finish(lam, x1, y1, x2)


def _finish(lam, x1, y1, x2):
    x3 = (lam * lam - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


def _affine_mul(k, pt):
    acc = None
    while k:
        if k & 1:
            acc = _affine_add(acc, pt)
        pt = _affine_add(pt, pt)
        k >>= 1
    return acc


def _xy(point: Point):
    enc = point.to_bytes_uncompressed()
    return int.from_bytes(enc[1:33], "big"), int.from_bytes(enc[33:], "big")


def test_generator_and_order_match_sec2():
    assert G.to_bytes_uncompressed() == SEC2_G
    assert Q == SEC2_N
    assert (G * Q).is_identity
    assert (G * (Q + 5)) == G * 5


@pytest.mark.parametrize("k", [1, 2, 3, 7, 255, 2**128 + 1, Q - 1])
def test_scalar_multiples_match_independent_affine_arithmetic(k):
    gx, gy = _xy(G)
    assert _xy(base_mul(k)) == _affine_mul(k, (gx, gy))
    assert _xy(G * k) == _affine_mul(k, (gx, gy))


def test_identity_and_zero_scalar():
    o = Point.identity()
    assert o.is_identity
    assert base_mul(0).is_identity
    assert (G * 0).is_identity
    assert (o * 5).is_identity
    assert G + o == G and o + G == G
    assert (G - G).is_identity
    assert (-o).is_identity
    assert o.to_bytes() == bytes(33)
    assert Point.from_bytes(bytes(33)).is_identity
    assert Point.from_bytes(bytes(65)).is_identity
    assert o == Point.identity() and o != G
    with pytest.raises(ValueError):
        _ = o.public_key


def test_negation_and_cancellation_in_sums():
    a = base_mul(12345)
    assert a + (-a) == Point.identity()
    assert (-a) == a * (Q - 1)
    assert msm([1, 1], [a, -a]).is_identity


def test_h_derivation_is_reproducible_and_on_curve():
    h, counter = hash_to_point(H_DST)
    assert h == H
    # Recompute the try-and-increment x-coordinate independently.
    x = hashlib.sha256(bytes([len(H_DST)]) + H_DST + counter.to_bytes(4, "big")).digest()
    assert H.to_bytes() == b"\x02" + x
    hx, hy = _xy(H)
    assert (hy * hy - hx**3 - 7) % P == 0
    assert hy % 2 == 0
    assert H != G and not H.is_identity
    # Earlier counters were rejected because they give no x on the curve.
    for c in range(counter):
        xc = int.from_bytes(
            hashlib.sha256(bytes([len(H_DST)]) + H_DST + c.to_bytes(4, "big")).digest(), "big"
        )
        assert xc >= P or pow(xc**3 + 7, (P - 1) // 2, P) != 1
    # A different domain gives a different generator.
    assert hash_to_point(b"another domain")[0] != H
    with pytest.raises(ValueError):
        hash_to_point(b"")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02" * 32,
        b"\x04" + bytes(32),  # 33 bytes with the uncompressed prefix
        b"\x06" + SEC2_G[1:],  # hybrid encoding
        b"\x07" + SEC2_G[1:],
        b"\x02" + (P + 1).to_bytes(32, "big")[-32:],
        SEC2_G[:-1] + bytes([SEC2_G[-1] ^ 1]),  # y off the curve
        b"\x05" + bytes(32),
        b"\x02" + b"\xff" * 32,  # x >= p
    ],
)
def test_strict_decoding_rejects(data):
    with pytest.raises(PointDecodeError):
        Point.from_bytes(data)


def test_decoding_rejects_x_without_point():
    # x = 5: 5^3 + 7 = 132 is not a square mod p, so no point has this x.
    assert pow(132, (P - 1) // 2, P) != 1
    with pytest.raises(PointDecodeError):
        Point.from_bytes(b"\x02" + (5).to_bytes(32, "big"))


@given(st.binary(max_size=70))
def test_decoding_random_bytes_never_crashes(data):
    try:
        pt = Point.from_bytes(data)
    except PointDecodeError:
        return
    assert Point.from_bytes(pt.to_bytes()) == pt


@given(st.integers(min_value=0, max_value=Q - 1))
@settings(max_examples=50)
def test_encoding_round_trip(k):
    pt = base_mul(k)
    assert Point.from_bytes(pt.to_bytes()) == pt
    assert Point.from_bytes(pt.to_bytes_uncompressed()) == pt
    assert len(pt.to_bytes()) == 33


def test_scalar_codec():
    assert scalar_from_bytes(scalar_to_bytes(Q + 3)) == 3
    with pytest.raises(ValueError):
        scalar_from_bytes(Q.to_bytes(32, "big"))
    with pytest.raises(ValueError):
        scalar_from_bytes(b"\x01" * 31)


def _random_points(n):
    return [base_mul(secrets.randbelow(Q)) for _ in range(n)]


@given(
    st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=3),
            st.integers(min_value=Q - 3, max_value=Q + 3),
            st.integers(min_value=0, max_value=2**256),
        ),
        min_size=0,
        max_size=12,
    ),
    st.data(),
)
@settings(max_examples=60, deadline=None)
def test_msm_matches_naive_sum_on_edge_cases(scalars, data):
    pts = _random_points(len(scalars))
    # Sprinkle identities and repeated points.
    for i in range(len(pts)):
        choice = data.draw(st.integers(min_value=0, max_value=4))
        if choice == 0:
            pts[i] = Point.identity()
        elif choice == 1 and i:
            pts[i] = pts[i - 1]
    assert msm(scalars, pts) == naive_msm(scalars, pts)


def test_msm_pippenger_path_matches_naive():
    n = 150  # > grouping limit: Pippenger over distinct scalars
    scalars = [secrets.randbelow(Q) for _ in range(n)]
    scalars[3] = 0
    pts = _random_points(n)
    pts[7] = Point.identity()
    assert msm(scalars, pts) == naive_msm(scalars, pts)
    assert msm(scalars, pts, grouping_limit=0) == naive_msm(scalars, pts)


def test_msm_result_can_be_identity():
    a = base_mul(99)
    assert msm([3, Q - 3], [a, a]).is_identity
    assert msm([], []).is_identity
    with pytest.raises(ValueError):
        msm([1], [a, a])


def test_msm_encoded_matches_msm_and_rejects_bad_points():
    scalars = [secrets.randbelow(500) for _ in range(40)]
    pts = _random_points(40)
    pts[5] = Point.identity()
    want = msm(scalars, pts)
    assert msm_encoded(scalars, b"".join(p.to_bytes_uncompressed() for p in pts), 65) == want
    assert msm_encoded(scalars, b"".join(p.to_bytes() for p in pts), 33) == want
    bad = bytearray(b"".join(p.to_bytes() for p in pts))
    bad[33 * 9] = 0x04
    with pytest.raises(PointDecodeError, match="point 9"):
        msm_encoded(scalars, bytes(bad), 33)
    with pytest.raises(PointDecodeError):
        msm_encoded(scalars[:-1], b"".join(p.to_bytes() for p in pts), 33)


def test_msm_encoded_is_as_strict_as_point_from_bytes():
    pts = _random_points(3)
    blob65 = bytearray(b"".join(p.to_bytes_uncompressed() for p in pts))
    hybrid = bytearray(blob65)
    hybrid[65] = 0x06 | (blob65[129] & 1)  # hybrid encoding of point 1: libsecp256k1 would accept it
    with pytest.raises(PointDecodeError, match="point 1"):
        msm_encoded([1, 2, 3], bytes(hybrid), 65)
    off_curve = bytearray(blob65)
    off_curve[64] ^= 1
    with pytest.raises(PointDecodeError, match="point 0: not on"):
        msm_encoded([1, 2, 3], bytes(off_curve), 65)
    # Buckets that cancel to the identity are handled.
    a = pts[0]
    assert msm_encoded([5, 5], a.to_bytes() + (-a).to_bytes(), 33).is_identity


# ---------------------------------------------------------------- PointArray and Pippenger
from meterhub.crypto.group.arrays import PointArray, _best_window, _limbs, _pippenger_rows  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=Q + 5), st.integers(min_value=0, max_value=6)),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([1, 8, 15, 64, 141, 256]),
)
def test_point_array_msm_matches_naive(data, bits):
    """Every path (direct, Pippenger at any window) equals one multiplication per
    term, with zero scalars, identity points, repeats and cancelling points."""
    base = _random_points(3)
    pts = []
    scalars = []
    for k, choice in data:
        scalars.append(k % (1 << bits) if bits < 256 else k)
        pts.append([Point.identity(), base[0], -base[0], base[1], base[2], base[1] + base[2], base[0]][choice])
    arr = PointArray.from_points(pts)
    assert arr.msm(scalars) == naive_msm(scalars, pts)
    live = [i for i, (k, p) in enumerate(zip(scalars, pts, strict=True)) if k % Q and not p.is_identity]
    if live:
        ks = [scalars[i] % Q for i in live]
        sub = PointArray.from_points([pts[i] for i in live])
        assert _pippenger_rows(_limbs(ks), sub.rows, max(ks).bit_length()) == naive_msm(ks, [pts[i] for i in live])


def test_pippenger_window_choice_and_large_msm():
    """Many distinct 141-bit scalars (the hourly check) go to Pippenger and match."""
    n = 300
    pts = _random_points(n)
    scalars = [secrets.randbits(141) for _ in range(n)]
    c, cost = _best_window(n, 141)
    assert 2 <= c <= 8 and cost < n * 42.0
    assert PointArray.from_points(pts).msm(scalars) == naive_msm(scalars, pts)
    assert msm(scalars, pts) == naive_msm(scalars, pts)


def test_point_array_parse_sums_and_encoding():
    pts = _random_points(8)
    pts[2] = Point.identity()
    pts[5] = -pts[4]
    for width, enc in ((65, Point.to_bytes_uncompressed), (33, Point.to_bytes)):
        arr = PointArray.parse(b"".join(enc(p) for p in pts), width)
        assert arr.points() == pts
        assert arr.to_bytes() == b"".join(p.to_bytes() for p in pts)
        assert arr.total() == naive_msm([1] * 8, pts)
        assert arr.group_sums(2).points() == [pts[0] + pts[1], pts[2] + pts[3], Point.identity(), pts[6] + pts[7]]
    bad = bytearray(b"".join(p.to_bytes_uncompressed() for p in pts))
    bad[65 * 3 + 1] ^= 1
    with pytest.raises(PointDecodeError, match="point 3"):
        PointArray.parse(bytes(bad), 65)
    with pytest.raises(PointDecodeError):
        PointArray.parse(b"\x05" + bytes(32), 33)


def test_point_array_msm_negative_and_mixed_scalars():
    """Negative scalars (reduced mod Q) and a mix of small and huge ones take the
    Python path; small repeated ones the numpy direct path; all match."""
    pts = _random_points(12)
    for scalars in ([-1, 2, -3, 4, 0, 5, -6, 7, 8, 9, 10, -11],
                    [3, 3, 3, 5, 5, 0, 3, 5, 5, 3, 3, 3],
                    [1 << 70, 3, 3, Q - 1, 0, 7, 7, 7, 1, 1, 2, 2]):
        assert PointArray.from_points(pts).msm(scalars) == naive_msm(scalars, pts)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("c", [2, 3, 5, 6, 8])
def test_pippenger_every_plan_matches_naive(c, signed):
    """Every window and digit form (signed digits carry into the next window) equals one
    multiplication per term: top-heavy and all-ones scalars, digits at the sign
    boundary, repeated and opposite points."""
    base = _random_points(4)
    pts = [base[0], base[1], base[0], -base[0], base[2], base[3], base[1], base[2]]
    half = 1 << (c - 1)
    for bits in (1, c, 141, 256):
        top = (1 << bits) - 1
        ks = [top, 1, half % (1 << bits) or 1, (half + 1) % (1 << bits) or 1, secrets.randbits(bits) | 1,
              top ^ (top >> 1) or 1, Q - 1 if bits == 256 else top, 5 % (1 << bits) or 1]
        arr = PointArray.from_points(pts)
        assert _pippenger_rows(_limbs(ks), arr.rows, bits, (c, signed)) == naive_msm(ks, pts), (bits, ks)


def test_msm_limbs_matches_naive():
    """Scalars given as limbs: zero scalars and identity points skipped, scalars at or
    above Q multiply as integers, wrong shapes refused."""
    import numpy as np

    pts = _random_points(6)
    pts[2] = Point.identity()
    ks = [0, 3, 7, (1 << 256) - 1, Q, secrets.randbits(150)]
    limbs = _limbs(ks)
    assert PointArray.from_points(pts).msm_limbs(limbs) == naive_msm([k % Q for k in ks], pts)
    assert PointArray.from_points(pts).msm_limbs(np.zeros((6, 4), dtype=np.uint64)).is_identity
    with pytest.raises(ValueError):
        PointArray.from_points(pts).msm_limbs(limbs[:5])


@pytest.mark.parametrize("width", [33, 65])
def test_point_array_parse_names_the_first_bad_point(width):
    """A point off the curve and a bad prefix byte: the error names whichever comes first
    (as a point-by-point parse would); all-zero entries are the identity."""
    enc = Point.to_bytes if width == 33 else Point.to_bytes_uncompressed
    pts = _random_points(5)
    good = [enc(p) for p in pts]
    off_curve = bytearray(good[1])
    off_curve[-1] ^= 1 if width == 65 else 0
    if width == 33:
        off_curve[1:] = b"\x00" * 31 + b"\x05"  # x = 5: x^3 + 7 = 132 is not a square mod p
    bad_prefix = b"\x07" + good[3][1:]
    for blob, where in (([good[0], bytes(off_curve), good[2], bad_prefix, good[4]], "point 1"),
                        ([good[0], bad_prefix, good[2], bytes(off_curve), good[4]], "point 1"),
                        ([good[0], bytes(width), good[2], bad_prefix, good[4]], "point 3")):
        with pytest.raises(PointDecodeError, match=where):
            PointArray.parse(b"".join(blob), width)
    arr = PointArray.parse(b"".join([good[0], bytes(width), good[2]]), width)
    assert arr.points() == [pts[0], Point.identity(), pts[2]]


# -- constant-time multiplication by a secret scalar (secp256k1_ecdh / ecmult_const) ----------
_EDGE_SCALARS = [1, 2, 3, Q - 1, Q - 2, Q + 1, 2**255, 2**255 - 19, 2**256 - 1, 2**128 + 1, -1, -(2**255)]


@pytest.mark.parametrize("k", _EDGE_SCALARS)
def test_mul_secret_equals_tweak_mul_at_edge_scalars(k):
    for p in (G, H, base_mul(0xC0FFEE)):
        assert p.mul_secret(k) == p * k
        assert p.mul_secret(k).to_bytes() == (p * k).to_bytes()


@given(st.integers(min_value=0, max_value=2**256 + 5), st.integers(min_value=1, max_value=Q - 1))
@settings(max_examples=60, deadline=None)
def test_mul_secret_equals_tweak_mul(k, a):
    p = base_mul(a)
    assert p.mul_secret(k).to_bytes_uncompressed() == (p * k).to_bytes_uncompressed()


def test_mul_secret_matches_independent_affine_arithmetic():
    k = secrets.randbelow(Q)
    assert _xy(G.mul_secret(k)) == _affine_mul(k, _xy(G))


def test_mul_secret_by_zero_or_of_the_identity_is_the_identity():
    for k in (0, Q, 2 * Q, -Q):
        assert H.mul_secret(k).is_identity
    assert Point.identity().mul_secret(7).is_identity
    assert (H.mul_secret(5) + H.mul_secret(Q - 5)).is_identity
    with pytest.raises(TypeError):
        H.mul_secret(1.0)  # type: ignore[arg-type]
