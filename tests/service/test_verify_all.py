"""`utility verify-all` on dask.distributed (docs/service.md, "Scale-out verification"):
the verdicts equal those of the single-process :meth:`UtilityStore.verify_pending`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from helpers import make_history
from meterhub.cli import main
from meterhub.crypto import ecdsa
from meterhub.hub.billing import bill_statement
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


def test_default_partitioning_matches_verify_pending(utility_db, tmp_path, scheduler, histories):
    _fill(utility_db, histories)
    assert verify_all(utility_db, scheduler=scheduler) == (5, 1)  # partition_size for 2 workers
    ref = str(tmp_path / "ref.sqlite")
    _fill(ref, histories)
    u = UtilityStore(Path(ref))
    assert u.verify_pending(page=2) == (5, 1)
    u.close()
    assert _verdicts(utility_db) == _verdicts(ref)


def test_partition_size():
    from meterhub.service.scaleout import MAX_METERS_PER_TASK, partition_size

    assert partition_size(40, 2) == 5  # four tasks per worker
    assert partition_size(41, 2) == 6
    assert partition_size(3, 2) == 1 and partition_size(0, 2) == 1
    assert partition_size(10**6, 8) == MAX_METERS_PER_TASK


def test_bulk_reads_give_the_verdicts_of_one_statement_at_a_time(utility_db, histories):
    """pending_verdicts_many reads a partition's meters, days and verified bills in bulk:
    its verdicts equal verify_statement's own (one query each), for a good statement, a
    false one, an identical repeat, one overlapping a verdict committed before, and the
    statement of a meter that is not registered. Registrations are not kept afterwards."""
    _fill(utility_db, histories)
    u = UtilityStore(utility_db if utility_db.startswith("postgresql://") else Path(utility_db))
    try:
        assert u.record_verdicts(u.pending_verdicts_many(["m-04"])) is None  # m-04 verified, committed
        h4 = histories[4]
        n0 = len(h4.days[0].openings)
        first_day = bill_statement(meter_id="m-04", tariff=h4.tariff, period_from=h4.start, period_to=h4.start,
                                   first_index=0, prices=h4.prices()[:n0], openings=h4.openings[:n0])
        assert u.verify_statement(first_day, record=False).reason.startswith("overlaps verified bill")
        u.submit_statement(first_day)  # a valid bill of day 1 alone: overlaps the verified one
        stray = make_history(n_days=2, seed=77, meter_id="m-05x")
        u.submit_statement(stray.statement)  # no such meter registered
        ids = [h.meter.meter_id for h in histories] + ["m-05x"]
        pending = u.conn.execute(
            "SELECT rowid, statement FROM bills WHERE verified IS NULL ORDER BY meter_id, rowid"
        ).fetchall()
        from meterhub.utility.store import statement_from_json

        one_by_one = [u.verify_statement(statement_from_json(text), record=False).reason for _, text in pending]
        got = u.pending_verdicts_many(ids)
        assert [v[3] for v in got] == [r[0] for r in pending]
        assert [v[1] for v in got] == one_by_one
        reasons = dict(zip([r[0] for r in pending], one_by_one, strict=True))
        assert any(r.startswith("overlaps verified bill") for r in reasons.values())
        assert "meter m-05x is not registered" in reasons.values()
        assert [v[0] for v in got] == [0 if r else 1 for r in one_by_one]
        assert not set(ids) & set(u._registrations)  # memory stays flat over many partitions
    finally:
        u.close()


def test_a_partition_writes_its_own_verdicts(tmp_path, histories):
    """verify_partition (a worker's task) records the verdicts itself and returns counts;
    run again (a retried task) it finds nothing pending and changes nothing."""
    from meterhub.service import scaleout

    db = str(tmp_path / "u.sqlite")
    _fill(db, histories)
    ids = [h.meter.meter_id for h in histories]
    try:
        assert scaleout.verify_partition(db, ids) == (5, 1)
        before = _verdicts(db)
        assert all(v[3] is not None for v in before)
        assert scaleout.verify_partition(db, ids) == (0, 0)
        assert _verdicts(db) == before
    finally:
        for s in scaleout._worker_stores.values():
            s.close()
        scaleout._worker_stores.clear()


def test_verify_all_does_not_run_the_whole_file_check(tmp_path, histories, monkeypatch):
    """SQLite's quick_check reads the whole file (2-3 s of CPU, up to a minute cold, for
    10,000 customer-months): neither verify-all's driver nor its workers run it; it cost a
    full read of the store per run and per worker, whatever the pending work, and the
    driver's came before any task started."""
    from meterhub.service import scaleout

    db = str(tmp_path / "u.sqlite")
    _fill(db, histories)
    opened: list[bool] = []
    real = scaleout.UtilityStore

    def recording(path, *, quick_check=True):
        opened.append(quick_check)
        return real(path, quick_check=quick_check)

    monkeypatch.setattr(scaleout, "UtilityStore", recording)
    try:
        assert scaleout.verify_partition(db, [h.meter.meter_id for h in histories]) == (5, 1)
    finally:
        for s in scaleout._worker_stores.values():
            s.close()
        scaleout._worker_stores.clear()
    assert opened == [False]
    assert scaleout._open(db).close() is None and opened == [False, False]
