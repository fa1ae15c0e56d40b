"""`meterhub utility verify-all`: every pending bill statement verified, partitioned by
meter, on dask.distributed (docs/service.md, "Scale-out verification").

The driver streams meter ids from the database in pages and submits one task per
partition of meters; each task opens its own connection to the same database (SQLite
file on a shared disk, or PostgreSQL), verifies those meters' pending statements with
:meth:`UtilityStore.pending_verdicts` (read only) and returns the verdicts; the driver
writes each partition's verdicts in one transaction as it completes. All statements of
one meter are in one partition, so the overlap rule (V21) sees all of them; memory on
the driver stays bounded by ``max_in_flight`` partitions. An interrupted run leaves
the unverified rows pending and a rerun continues with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..utility.store import UtilityStore

__all__ = ["verify_all", "verify_partition"]


def _open(db: str) -> UtilityStore:
    from ..storage.postgres import is_postgres_url

    return UtilityStore(db if is_postgres_url(db) else Path(db))


_worker_stores: dict[str, UtilityStore] = {}  # one connection per database per worker process


def verify_partition(db: str, meter_ids: list[str]) -> list[tuple[int, str, str, int]]:
    """Runs on a worker: the pending verdicts of ``meter_ids`` (nothing is written).

    The worker keeps its connection (and the store's tariff/key caches) between tasks;
    after a database error it is dropped and the task fails (Dask retries it elsewhere
    or the run stops; nothing was written)."""
    store = _worker_stores.get(db)
    if store is None:
        store = _worker_stores[db] = _open(db)
    try:
        out: list[tuple[int, str, str, int]] = []
        for m in meter_ids:
            out.extend(store.pending_verdicts(m))
        return out
    except BaseException:
        _worker_stores.pop(db, None)
        store.close()
        raise


def _pending_meters(store: UtilityStore, page: int) -> Iterator[list[str]]:
    last = ""
    while True:
        rows = store.conn.execute(
            "SELECT DISTINCT meter_id FROM bills WHERE verified IS NULL AND meter_id > ? "
            "ORDER BY meter_id LIMIT ?",
            (last, page),
        ).fetchall()
        if not rows:
            return
        ids = [r[0] for r in rows]
        last = ids[-1]
        yield ids


def verify_all(
    db: str,
    *,
    scheduler: str | None = None,
    workers: int = 1,
    meters_per_task: int = 50,
    max_in_flight: int = 64,
    progress: Callable[[int, int], None] | None = None,
    client: Any = None,
) -> tuple[int, int]:
    """Verify every pending statement; ``(verified, rejected)``.

    ``scheduler``: address of a running dask scheduler (``tcp://host:8786``); else a
    ``LocalCluster`` of ``workers`` single-threaded processes (the verifier is
    pure-Python/CPU bound, so processes, not threads, scale). ``client``: a connected
    ``dask.distributed.Client`` to use (and leave open) instead."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster: Any = None
    own = client is None
    if not own:
        pass  # the caller's client, left open
    elif scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
    store = _open(db)
    ok = bad = 0
    try:
        pending = as_completed()
        in_flight = 0

        def drain(n: int) -> None:
            nonlocal ok, bad, in_flight
            while in_flight > n:
                fut = next(pending)
                verdicts = fut.result()
                store.record_verdicts(verdicts)
                ok += sum(v[0] for v in verdicts)
                bad += sum(1 - v[0] for v in verdicts)
                in_flight -= 1
                if progress:
                    progress(ok, bad)

        for ids in _pending_meters(store, meters_per_task):
            pending.add(client.submit(verify_partition, db, ids, pure=False))
            in_flight += 1
            drain(max_in_flight)
        drain(0)
    finally:
        store.close()
        if own:
            client.close()
        if cluster is not None:
            cluster.close()
    return ok, bad
