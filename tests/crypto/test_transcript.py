"""Tests for the Fiat-Shamir transcript and the proof context."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto.group import Q, base_mul
from meterhub.crypto.transcript import ProofContext, ProofError, Transcript


def _chal(ops: list[tuple[bytes, bytes]], protocol: bytes = b"test/v1") -> int:
    t = Transcript(protocol)
    for label, msg in ops:
        t.append_message(label, msg)
    return t.challenge_scalar(b"c")


def test_deterministic_and_in_range() -> None:
    a = _chal([(b"x", b"1"), (b"y", b"2")])
    b = _chal([(b"x", b"1"), (b"y", b"2")])
    assert a == b
    assert 0 <= a < Q


def test_protocol_label_separates() -> None:
    assert _chal([], b"proto/a") != _chal([], b"proto/b")


def test_framing_is_unambiguous() -> None:
    # Without length prefixes these would hash the same bytes.
    assert _chal([(b"ab", b"c")]) != _chal([(b"a", b"bc")])
    assert _chal([(b"a", b"bc")]) != _chal([(b"a", b"b"), (b"", b"c")])
    assert _chal([(b"a", b"")]) != _chal([])


def test_successive_challenges_differ_and_chain() -> None:
    t = Transcript(b"test/v1")
    c1 = t.challenge_scalar(b"c")
    c2 = t.challenge_scalar(b"c")
    assert c1 != c2
    # A challenge depends on the challenges squeezed before it.
    u = Transcript(b"test/v1")
    u.challenge_scalar(b"other")
    assert u.challenge_scalar(b"c") != c2


def test_copy_is_independent() -> None:
    t = Transcript(b"test/v1")
    t.append_message(b"m", b"x")
    u = t.copy()
    u.append_message(b"m", b"y")
    v = t.copy()
    assert t.challenge_scalar(b"c") == v.challenge_scalar(b"c")
    assert u.challenge_scalar(b"c") != Transcript(b"test/v1").challenge_scalar(b"c")


def test_challenge_scalars_and_bytes() -> None:
    t = Transcript(b"test/v1")
    xs = t.challenge_scalars(b"w", 5)
    assert len(xs) == 5 and len(set(xs)) == 5 and all(0 <= x < Q for x in xs)
    assert len(Transcript(b"t").challenge_bytes(b"b", 100)) == 100
    many = Transcript(b"t").challenge_scalars(b"w", 200)
    assert len(set(many)) == 200


def test_typed_appends_are_distinct() -> None:
    def run(f) -> int:  # type: ignore[no-untyped-def]
        t = Transcript(b"test/v1")
        f(t)
        return t.challenge_scalar(b"c")

    vals = {
        run(lambda t: t.append_int(b"v", 5)),
        run(lambda t: t.append_int(b"v", -5)),
        run(lambda t: t.append_int(b"v", 0)),
        run(lambda t: t.append_u64(b"v", 5)),
        run(lambda t: t.append_scalar(b"v", 5)),
        run(lambda t: t.append_point(b"v", base_mul(5))),
        run(lambda t: t.append_points(b"v", [base_mul(5)])),
        run(lambda t: t.append_points(b"v", [])),
    }
    assert len(vals) == 8


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        Transcript(b"")
    with pytest.raises(ValueError):
        Transcript(b"x").append_u64(b"n", -1)
    with pytest.raises(ValueError):
        ProofContext(tariff_version=-1)
    assert issubclass(ProofError, ValueError)


BASE = ProofContext(
    meter_id="meter-1", period="2026-11", tariff_id="tou", tariff_version=3, statement=b"s"
)


@pytest.mark.parametrize(
    "change",
    [
        {"meter_id": "meter-2"},
        {"period": "2026-12"},
        {"tariff_id": "tou2"},
        {"tariff_version": 4},
        {"statement": b"t"},
    ],
)
def test_every_context_field_is_bound(change: dict[str, object]) -> None:
    other = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    a = BASE.transcript(b"p/v1").challenge_scalar(b"c")
    b = other.transcript(b"p/v1").challenge_scalar(b"c")
    assert a != b


def test_context_fields_do_not_run_together() -> None:
    a = ProofContext(meter_id="ab", period="c").transcript(b"p").challenge_scalar(b"c")
    b = ProofContext(meter_id="a", period="bc").transcript(b"p").challenge_scalar(b"c")
    assert a != b


ops_strategy = st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8)), max_size=4)


@settings(max_examples=200, deadline=None)
@given(ops_strategy, ops_strategy)
def test_distinct_absorb_sequences_give_distinct_challenges(
    a: list[tuple[bytes, bytes]], b: list[tuple[bytes, bytes]]
) -> None:
    if a != b:
        assert _chal(a) != _chal(b)
    else:
        assert _chal(a) == _chal(b)


def _frame(op: int, label: bytes, msg: bytes) -> bytes:
    return bytes([op]) + len(label).to_bytes(4, "big") + label + len(msg).to_bytes(8, "big") + msg


def test_matches_documented_layout() -> None:
    # Independent re-derivation of docs/proofs.md "Transcript" with hashlib.
    import hashlib

    prefix = b"meterhub/transcript/v1/sha256" + _frame(0, b"protocol", b"p/v1")
    prefix += _frame(1, b"lbl", b"message")
    chal_frame = _frame(2, b"c", (0).to_bytes(8, "big"))
    out = b"".join(
        hashlib.sha256(prefix + chal_frame + i.to_bytes(4, "big")).digest() for i in (0, 1)
    )
    t = Transcript(b"p/v1")
    t.append_message(b"lbl", b"message")
    assert t.challenge_scalar(b"c") == int.from_bytes(out, "big") % Q
    # The second challenge absorbs the first one's output and uses counter 1.
    prefix2 = prefix + _frame(2, b"c", out)
    chal_frame2 = _frame(2, b"c", (1).to_bytes(8, "big"))
    out2 = b"".join(
        hashlib.sha256(prefix2 + chal_frame2 + i.to_bytes(4, "big")).digest() for i in (0, 1)
    )
    assert t.challenge_scalar(b"c") == int.from_bytes(out2, "big") % Q


def test_context_type_checks() -> None:
    with pytest.raises(TypeError):
        ProofContext(meter_id=b"m")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ProofContext(statement="s")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProofContext(tariff_version=2**64)
