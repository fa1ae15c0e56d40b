"""`utility verify-all` on dask.distributed (docs/service.md, "Scale-out verification"):
the verdicts equal those of the single-process :meth:`UtilityStore.verify_pending`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from helpers import make_history
from meterhub.cli import main
from meterhub.crypto import ecdsa
from meterhub.service.scaleout import verify_all
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.store import UtilityStore


@pytest.fixture(scope="module")
def scheduler():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def histories():
    return [make_history(n_days=2, seed=10 + k, meter_id=f"m-{k:02d}") for k in range(5)]


def _fill(db: str, histories) -> None:
    u = UtilityStore(db if db.startswith("postgresql://") else Path(db))
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    for k, h in enumerate(histories):
        u.register_meter(h.meter.meter_id, ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
        u.ingest_days(h.uploads())
        st = h.statement if k != 2 else dataclasses.replace(h.statement, total=h.statement.total + 1)
        u.submit_statement(st)
        if k == 3:
            u.submit_statement(h.statement)  # identical re-delivery: verified again (V21)
    u.close()


def _verdicts(db: str):
    u = UtilityStore(db if db.startswith("postgresql://") else Path(db))
    try:
        return u.bill_verdicts()
    finally:
        u.close()


def test_verify_all_on_a_cluster_matches_verify_pending(utility_db, tmp_path, scheduler, histories):
    _fill(utility_db, histories)
    assert verify_all(utility_db, scheduler=scheduler, meters_per_task=2) == (5, 1)
    ref = str(tmp_path / "ref.sqlite")
    _fill(ref, histories)
    u = UtilityStore(Path(ref))
    assert u.verify_pending() == (5, 1)
    u.close()
    assert _verdicts(utility_db) == _verdicts(ref)
    assert verify_all(utility_db, scheduler=scheduler) == (0, 0)  # nothing pending any more


def test_verify_all_cli_local_cluster(tmp_path, histories, capsys):
    db = str(tmp_path / "u.sqlite")
    _fill(db, histories)
    assert main(["utility", "verify-all", "--db", db, "--workers", "1"]) == 1  # one rejected
    assert "verified 5, rejected 1" in capsys.readouterr().out
    assert main(["utility", "verify-all", "--db", "mysql://x"]) == 2
