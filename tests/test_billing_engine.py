"""model/billing: one engine per tariff kind, prover beside verifier, chosen from one table."""

from __future__ import annotations

import dataclasses
import pathlib
from datetime import timedelta
from types import SimpleNamespace

import pytest

from helpers import make_history
from meterhub.model.billing import KINDS, BillJob, engine_for, issue_statement
from meterhub.model.formats.statements import (
    BandedBillStatement,
    BillStatement,
    ProvenBillStatement,
)
from meterhub.tariffs import (
    KIND_INCLINING_BLOCK,
    KIND_POLYNOMIAL,
    KIND_TIERED,
    KIND_TIME_OF_USE,
    TariffError,
)
from meterhub.tariffs.nonlinear import example_nonlinear_tariff
from meterhub.utility.verifier import verify_statement_verdict

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "meterhub"


def _job(h, tariff, **kw) -> BillJob:
    return BillJob(
        meter_id=h.registration.meter_id, tariff=tariff, period_from=h.start,
        period_to=h.start + timedelta(days=len(h.days) - 1), first_index=0, openings=h.openings,
        tz="Europe/Berlin", interval_minutes=15, **kw,
    )


def test_every_tariff_kind_has_one_engine() -> None:
    assert set(KINDS) == {KIND_TIME_OF_USE, KIND_TIERED, KIND_INCLINING_BLOCK, KIND_POLYNOMIAL}
    for kind, engine in KINDS.items():
        assert kind in engine.kinds


def test_unknown_kind_is_a_tariff_error() -> None:
    h = make_history(n_days=1)
    with pytest.raises(TariffError, match="no billing engine"):
        engine_for(SimpleNamespace(kind="flat-rate"))  # type: ignore[arg-type]
    assert engine_for(h.tariff) is KINDS[KIND_TIME_OF_USE]


def test_time_of_use_issues_v1_and_v3_and_the_same_bytes_as_before() -> None:
    h = make_history(n_days=1)
    v1 = issue_statement(_job(h, h.tariff))
    assert isinstance(v1, BillStatement)
    assert v1.to_json() == h.statement.to_json()  # helpers build it with hub.billing.bill_statement
    v3 = issue_statement(_job(h, h.tariff, metering_point="DE0001234567890123456789012345678",
                              contract_id="C-1"))
    assert isinstance(v3, BandedBillStatement) and v3.energy_charge == v1.energy_charge
    with pytest.raises(ValueError, match="both"):
        issue_statement(_job(h, h.tariff, contract_id="C-1"))


@pytest.mark.parametrize("kind", [KIND_TIERED, KIND_INCLINING_BLOCK, KIND_POLYNOMIAL])
def test_each_non_linear_kind_round_trips_through_its_own_verifier(kind: str) -> None:
    h = make_history(n_days=1)
    tariff = example_nonlinear_tariff(kind)
    st = issue_statement(_job(h, tariff))
    assert isinstance(st, ProvenBillStatement) and st.tariff_kind == kind
    days = h.day_commitments()
    assert verify_statement_verdict(st, h.registration, days, tariff).ok
    forged = dataclasses.replace(st, energy_charge=st.energy_charge + 1, total=st.total + 1)
    assert not verify_statement_verdict(forged, h.registration, days, tariff).ok
    with pytest.raises(ValueError, match="time-of-use"):
        issue_statement(_job(h, tariff, metering_point="x", contract_id="y"))


def test_a_statement_of_the_wrong_version_for_the_kind_is_rejected() -> None:
    h = make_history(n_days=1)
    tariff = example_nonlinear_tariff(KIND_TIERED)
    days = h.day_commitments()
    v = verify_statement_verdict(h.statement, h.registration, days, tariff)
    assert not v.ok
    proven = issue_statement(_job(h, tariff))
    v = verify_statement_verdict(proven, h.registration, days, h.tariff)
    assert not v.ok


@pytest.mark.parametrize(
    ("path", "fork"),
    [
        ("cli/hub.py", "isinstance(tariff, NonLinearTariff)"),
        ("applets/billing.py", "isinstance(tariff, NonLinearTariff)"),
        ("utility/store.py", "isinstance(tariff, NonLinearTariff)"),
        ("hub/proving.py", "KIND_TIERED"),
        ("utility/proof_verifier.py", "KIND_TIERED"),
    ],
)
def test_the_call_sites_do_not_fork_on_the_tariff_kind(path: str, fork: str) -> None:
    """The five places that each decided linear versus non-linear billing (CLI, applet,
    utility store, prover, verifier) now call the engine."""
    assert fork not in (SRC / path).read_text()
