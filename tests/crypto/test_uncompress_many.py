"""crypto.group.uncompress_many (the utility's ingest path) against the per-point path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterhub.crypto.group import G, Point, PointDecodeError, uncompress_many


@given(st.lists(st.integers(min_value=0, max_value=2**64), max_size=12))
def test_equals_the_per_point_path(ks):
    pts = [G * k for k in ks]  # k = 0 is the identity (33 zero bytes)
    blob = b"".join(p.to_bytes() for p in pts)
    assert uncompress_many(blob) == b"".join(p.to_bytes_uncompressed() for p in pts)


def test_refuses_what_from_bytes_refuses():
    good = (G * 5).to_bytes()
    with pytest.raises(PointDecodeError, match="point 1: bad prefix"):
        uncompress_many(good + b"\x04" + good[1:])
    x = 5  # x = 5: x^3 + 7 = 132 is not a square mod p, so no point has it
    with pytest.raises(PointDecodeError, match="point 0: not on secp256k1"):
        uncompress_many(b"\x02" + x.to_bytes(32, "big"))
    with pytest.raises(PointDecodeError):
        Point.from_bytes(b"\x02" + x.to_bytes(32, "big"))
    with pytest.raises(PointDecodeError, match="not 33-byte points"):
        uncompress_many(good[:-1])
    assert uncompress_many(b"") == b""
