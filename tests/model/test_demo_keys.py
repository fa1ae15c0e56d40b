"""The demo keys come from one derivation (model/demo_keys.py, crypto.ecdsa.derive_signing_key)
and stay the keys that signed the shipped files."""

from __future__ import annotations

import hashlib

import pytest

from meterhub.crypto import ecdsa
from meterhub.model import demo_keys
from meterhub.tariffs.signing import demo_supplier_key, example_signed_tariff, verify_tariff


def test_shipped_example_tariff_verifies_under_the_derived_supplier_key() -> None:
    tariff = verify_tariff(example_signed_tariff(), demo_supplier_key().public_key())
    assert tariff.tariff_id


def test_derivation_is_seed_mod_n_minus_1_plus_1() -> None:
    seed = hashlib.sha256(demo_keys.SUPPLIER).digest()
    d = demo_keys.demo_signing_key(demo_keys.SUPPLIER).private_numbers().private_value
    assert d == int.from_bytes(seed, "big") % (ecdsa.N - 1) + 1
    assert ecdsa.derive_signing_key(b"\xff" * 32).private_numbers().private_value == (2**256 - 1) % (ecdsa.N - 1) + 1


def test_seed_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        ecdsa.derive_signing_key(b"short")


def test_named_keys_are_distinct() -> None:
    labels = [demo_keys.SUPPLIER, demo_keys.INDEX_PUBLISHER, demo_keys.PROFILE_PUBLISHER,
              demo_keys.GRID_OPERATOR_GROUP, demo_keys.FEEDER_METER]
    pubs = {ecdsa.public_bytes(demo_keys.demo_signing_key(label)) for label in labels}
    pubs.add(ecdsa.public_bytes(demo_keys.party_signing_key("dap/supplier")))
    assert len(pubs) == len(labels) + 1
