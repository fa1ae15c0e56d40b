"""The hub's provers do work that does not depend on the readings (docs/privacy.md, "Timing:
what a recipient learns from how long the hub takes").

The grid operator asks the profiling applet for the score statement and may time the
answer. Before the fix the sum-of-squares prover formed ``A = <m, G> + <m, H> + alpha H``
with :func:`meterhub.crypto.group.msm` over the hourly readings themselves, which buckets
equal scalars, drops zero ones and picks its method from how many distinct values there
are: an empty house (zero hours) or a flat month took a shorter path. These tests count
the work of the commitment phase (everything before the first challenge) for months of the
same length and different readings: the multi-scalar plans must be the same and the point
additions equal up to the masks' randomness. Timing itself is measured by
``benchmarks/bench_timing_leak.py``, not here.
"""

from __future__ import annotations

import hashlib
import importlib
import random
from collections.abc import Iterator
from typing import Any

import pytest
from coincurve import PublicKey

import meterhub.crypto.bulletproofs._tables as tables
import meterhub.crypto.group.arrays as arrays
from meterhub.crypto import sumsquares
from meterhub.crypto.bulletproofs import ipa
from meterhub.crypto.bulletproofs._tables import generator_array
from meterhub.crypto.group import Q, msm_fixed_plan, naive_msm, random_scalar
from meterhub.crypto.pedersen import Opening, commit
from meterhub.model.formats.scores import scores_context

# the module, not the function :func:`meterhub.crypto.group.msm` the package exports under its name
msm_mod = importlib.import_module("meterhub.crypto.group.msm")
HOURS = 96  # four days of hourly profile intervals (padded to 128)


class _Stop(Exception):
    """Raised at the first challenge: the commitment phase is over."""


class _Work:
    """What the prover's commitment phase did: the plan of every Pippenger run, the
    buckets of every bucketed MSM, the number of multiplications and of points added."""

    def __init__(self) -> None:
        self.plans: list[tuple[int, int, tuple[int, bool]]] = []
        self.buckets: list[int] = []
        self.muls = 0
        self.base_muls = 0
        self.added = 0


class _CountingLib:
    """libsecp256k1 with its ``combine`` counted (points added), everything else passed on."""

    def __init__(self, lib: Any, work: _Work) -> None:
        self._lib = lib
        self._work = work

    def __getattr__(self, name: str) -> Any:
        f = getattr(self._lib, name)
        if name != "secp256k1_ec_pubkey_combine":
            return f
        work = self._work

        def combine(ctx: Any, out: Any, ptrs: Any, n: int) -> int:
            work.added += n
            return f(ctx, out, ptrs, n)

        return combine


def _instrument(monkeypatch: pytest.MonkeyPatch, work: _Work) -> None:
    for mod in (arrays, tables):
        monkeypatch.setattr(mod, "_lib", _CountingLib(mod._lib, work))
    for mod in (arrays, msm_mod):
        real_rows = mod._pippenger_rows

        def rows(limbs: Any, r: Any, bits: int, plan: Any = None, _real: Any = real_rows) -> Any:
            work.plans.append((len(r), bits, tuple(plan) if plan is not None else arrays._best_plan(len(r), bits)[:2]))
            return _real(limbs, r, bits, plan)

        monkeypatch.setattr(mod, "_pippenger_rows", rows)
        real_mul = mod._mul_pk

        def mul(pk: Any, k: int, _real: Any = real_mul) -> Any:
            work.muls += 1
            return _real(pk, k)

        monkeypatch.setattr(mod, "_mul_pk", mul)
    real_buckets = msm_mod._sum_buckets

    def buckets(b: dict[int, list[Any]], limit: int | None = None) -> Any:
        work.buckets.append(len(b))
        work.added += sum(len(v) for v in b.values())
        return real_buckets(b, limit)

    monkeypatch.setattr(msm_mod, "_sum_buckets", buckets)
    real_from_secret = PublicKey.from_secret.__func__  # type: ignore[attr-defined]

    def from_secret(cls: Any, secret: bytes, context: Any = None) -> Any:
        work.base_muls += 1
        return real_from_secret(cls, secret) if context is None else real_from_secret(cls, secret, context)

    monkeypatch.setattr(PublicKey, "from_secret", classmethod(from_secret))

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise _Stop

    monkeypatch.setattr(sumsquares, "_challenges", stop)


def _seeded(monkeypatch: pytest.MonkeyPatch, seed: int) -> random.Random:
    rng = random.Random(seed)

    def scalar() -> int:
        return rng.randrange(1, Q)

    monkeypatch.setattr(sumsquares, "random_scalar", scalar)
    monkeypatch.setattr(ipa, "random_scalar", scalar)
    return rng


def _months() -> dict[str, list[int]]:
    rng = random.Random(3)
    return {
        "lived-in": [rng.randint(0, 3600) for _ in range(HOURS)],
        "empty house (zero hours)": [0] * HOURS,
        "flat": [1234] * HOURS,
        "standby": [rng.choice([47, 48, 49]) for _ in range(HOURS)],
        "two days away": [rng.randint(0, 3600) for _ in range(HOURS // 2)] + [0] * (HOURS // 2),
    }


def _commitment_phase(monkeypatch: pytest.MonkeyPatch, readings: list[int]) -> _Work:
    """The work of ``sumsquares.prove`` up to its first challenge, same prover randomness
    for every month (the readings' blindings come from another generator)."""
    blind = random.Random(11)
    ops = [Opening(m, blind.randrange(Q)) for m in readings]
    cs = [commit(o.m, o.r)[0] for o in ops]
    generator_array(128)  # cached before counting, as in a long-running hub
    tables._h_table()
    work = _Work()
    with monkeypatch.context() as mp:
        _seeded(mp, 5)
        _instrument(mp, work)
        with pytest.raises(_Stop):
            sumsquares.prove(cs, ops, scores_context("m-t", "2027-04-01", "2027-04-04", 60))
    return work


def test_commitment_phase_work_does_not_depend_on_the_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    works = {name: _commitment_phase(monkeypatch, m) for name, m in _months().items()}
    ref = works["lived-in"]
    assert ref.plans, "the commitment phase runs Pippenger's method"
    for name, w in works.items():
        assert w.plans == ref.plans, f"{name}: another multi-scalar plan than a lived-in month"
        assert w.buckets == ref.buckets, f"{name}: other buckets"
        assert (w.muls, w.base_muls) == (ref.muls, ref.base_muls), f"{name}: other multiplications"
        # The masked scalars differ, so the zero digits and empty buckets differ by chance only.
        assert abs(w.added - ref.added) <= 0.02 * ref.added, f"{name}: {w.added} points added vs {ref.added}"


def _iter_proofs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[bytes, int]]:
    rng = _seeded(monkeypatch, 20261207)
    ms = [0, 0, 0, 7, 7, 7, 350, 1200, 0, 48, 48, 48, 3000, 0, 0, 1, 2, 3, 900, 900, 0, 0, 12, 12]
    ops = [Opening(m, rng.randrange(Q)) for m in ms]
    cs = [commit(o.m, o.r)[0] for o in ops]
    ctx = scores_context("m-golden", "2027-04-01", "2027-04-01", 60)
    proof, c_s, op = sumsquares.prove(cs, ops, ctx)
    assert op.m == sum(m * m for m in ms) and c_s == commit(op.m, op.r)[0]
    monkeypatch.undo()
    assert sumsquares.verify(cs, op.m, op.r, proof, ctx)
    yield proof, op.r


def test_proof_bytes_for_fixed_randomness_are_those_of_the_direct_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digest was taken from the prover before the fix (``A`` as ``<m, G> + <m, H> +
    alpha H`` directly) with the same seeded randomness: the masked computation gives the
    same points, so the same proof bytes, the same size and the same distribution."""
    proof, _ = next(_iter_proofs(monkeypatch))
    assert len(proof) == sumsquares.proof_size(24) == 628
    assert hashlib.sha256(proof).hexdigest() == "a3ef9bdf1db6a0ddf77c8eacbd9bef663a64b8565f7333ef3c86c6577f09bd11"


@pytest.mark.parametrize("count", [1, 2, 7, 64])
def test_msm_fixed_plan_is_the_multi_scalar_product(count: int) -> None:
    arr = generator_array(32)
    pts = arr.points()[:count]
    from meterhub.crypto.group import PointArray

    sub = PointArray.from_points(pts)
    for ks in ([random_scalar() for _ in range(count)], [0] * count, [Q - 1] * count, list(range(count))):
        assert msm_fixed_plan(ks, sub) == naive_msm(ks, pts)
    small = [random.Random(count).randrange(1 << 40) for _ in range(count)]
    assert msm_fixed_plan(small, sub, bits=40) == naive_msm(small, pts)


def test_msm_fixed_plan_refuses_what_it_cannot_plan() -> None:
    from meterhub.crypto.group import Point, PointArray

    arr = generator_array(2)
    with pytest.raises(ValueError, match="differ in length"):
        msm_fixed_plan([1], arr)
    with pytest.raises(ValueError, match="below 2\\^8"):
        msm_fixed_plan([1, 256, 3, 4], arr, bits=8)
    with pytest.raises(ValueError, match="every point live"):
        msm_fixed_plan([1, 2], PointArray.from_points([arr.point(0), Point.identity()]))
    with pytest.raises(ValueError, match="bits"):
        msm_fixed_plan([1, 2, 3, 4], arr, bits=0)


def test_tier_proofs_make_the_same_generator_multiplications_for_a_zero_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reading at its row's lower bound (``m - c_min = 0``) or with a zero price made one or
    two generator multiplications fewer before the fix (``lincomb`` skips a zero term)."""
    from meterhub.crypto import bulletproofs as bp
    from meterhub.crypto.transcript import ProofContext

    rows = [(0, 100, 10, 0), (100, 400, 20, 1000), (400, 1 << 16, 30, 7000)]
    ctx = ProofContext("m-t", "2027-04")
    count = [0]
    real = PublicKey.from_secret.__func__  # type: ignore[attr-defined]

    def from_secret(cls: Any, secret: bytes, context: Any = None) -> Any:
        count[0] += 1
        return real(cls, secret) if context is None else real(cls, secret, context)

    # One proof first: whatever a process builds once on its first tier proof (cached
    # tables and keys, depending on which tests ran before) is not per-reading work.
    c0, o0 = commit(5)
    bp.prove_tier(c0, o0, rows, ctx)
    counts = {}
    for m in (0, 1, 99, 100, 101, 65535):
        c, o = commit(m)
        count[0] = 0
        with monkeypatch.context() as mp:
            mp.setattr(PublicKey, "from_secret", classmethod(from_secret))
            proof, _, price = bp.prove_tier(c, o, rows, ctx)
        assert bp.verify_tier(c, rows, proof, ctx)
        counts[m] = count[0]
    assert len(set(counts.values())) == 1, counts
