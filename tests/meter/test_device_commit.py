"""The meter's commitments: constant-time multiplications (crypto.pedersen.commit_point) and
the same bytes as the variable-time formula they replaced, ``base_mul(m) + H * r``."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from meterhub.crypto import ecdsa
from meterhub.crypto import pedersen as pedersen_mod
from meterhub.crypto.group import H, Q, base_mul
from meterhub.crypto.group import point as point_mod
from meterhub.meter import device as device_mod
from meterhub.meter.device import MAX_READING_WH, Meter

# One day of 96 readings with the edge values (0 Wh, the largest reading) among ordinary ones.
READINGS = [0, 1, 2, MAX_READING_WH, 0, 250] + [(37 * i) % 900 for i in range(90)]
DAY = date(2027, 3, 28)
# SHA-256 of the day's 96 concatenated commitments, computed with the meter before this change
# (``(base_mul(wh) + H * r).to_bytes()``, tweak_mul for ``r*H``) under the seeded blindings below.
PINNED_SHA256 = "4b317f9e63ad3cc641f4a70645b3f9ec3058f1b137775a8b9ad28588c8305b57"


def _seeded_blindings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The meter's blindings from a SHA-256 counter instead of ``secrets`` (reproducible)."""
    counter = iter(range(1 << 20))

    def draw() -> int:
        i = next(counter)
        return int.from_bytes(hashlib.sha256(b"meterhub/test/meter-blindings" + i.to_bytes(4, "big")).digest(), "big") % Q

    monkeypatch.setattr(device_mod, "random_scalar", draw)


def _meter() -> Meter:
    return Meter("m-ct", ecdsa.derive_signing_key(hashlib.sha256(b"meterhub/test/meter-ct-key").digest()))


def test_commitments_are_byte_identical_to_the_variable_time_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    _seeded_blindings(monkeypatch)
    rec = _meter().record_day(DAY, READINGS)
    old = b"".join((base_mul(o.m) + H * o.r).to_bytes() for o in rec.openings)
    assert rec.commitments == old
    assert [o.m for o in rec.openings] == READINGS
    assert hashlib.sha256(rec.commitments).hexdigest() == PINNED_SHA256


class _NoTweakMul:
    """coincurve's ``lib`` with ``secp256k1_ec_pubkey_tweak_mul`` refused, all else passed on."""

    def __init__(self, lib: object) -> None:
        self._lib = lib

    def __getattr__(self, name: str) -> object:
        if name == "secp256k1_ec_pubkey_tweak_mul":
            raise AssertionError("the variable-time tweak_mul was called")
        return getattr(self._lib, name)


def _refuse_variable_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_args: object) -> None:
        raise AssertionError("the variable-time _mul_pk was called")

    monkeypatch.setattr(point_mod, "_mul_pk", refused)
    monkeypatch.setattr(point_mod, "_lib", _NoTweakMul(point_mod._lib))


def test_meter_commits_without_the_variable_time_multiplication(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails before the change: the meter's ``H * r`` went to ``tweak_mul`` (wNAF ``ecmult``)."""
    meter = _meter()
    first = meter.record_day(DAY, READINGS)  # the real path, for the comparison below
    _refuse_variable_time(monkeypatch)
    rec = meter.record_day(date(2027, 3, 29), READINGS)
    assert len(rec.commitments) == 33 * len(READINGS)
    assert rec.batch.batch.prev_head == first.batch.batch.head
    monkeypatch.undo()
    assert rec.commitments == b"".join((base_mul(o.m) + H * o.r).to_bytes() for o in rec.openings)


def test_a_zero_reading_takes_the_same_multiplications_as_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """``base_mul(0)`` returns early; the meter's 0 Wh readings must not (``m + 1``, minus ``G``)."""
    scalars: list[int] = []
    real = pedersen_mod.base_mul

    def recording(k: int) -> object:
        scalars.append(k)
        return real(k)

    monkeypatch.setattr(pedersen_mod, "base_mul", recording)
    rec = _meter().record_day(DAY, READINGS)
    assert scalars == [wh + 1 for wh in READINGS]
    monkeypatch.undo()
    assert rec.commitments == b"".join((base_mul(o.m) + H * o.r).to_bytes() for o in rec.openings)
