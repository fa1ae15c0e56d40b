"""SIGKILL at random points of `meterhub demo` never leaves the data directory broken,
and the resumed run prints exactly what an uninterrupted run prints (docs/operations.md).

Each attempt is a forked child running ``meterhub.cli.main`` (the same code path as
the command, without paying the interpreter start-up and the simulator's warm-up each
time); the parent kills it
with SIGKILL after a random delay drawn from ``[0, T]``, ``T`` the duration of an
uninterrupted run measured first. A child that finishes before its kill must exit 0
with output identical to the uninterrupted run's; then the next attempts start on a
fresh data directory, until at least ``KILLS`` kills have landed.

The data directories live on tmpfs when there is one: a killed process loses nothing
that reached the kernel, with or without fsync, so tmpfs tests the same guarantee
faster (power loss is what fsync is for; the stores keep ``synchronous=FULL``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

KILLS = 50
# Two households, two days of 15-minute readings: enough for the coin-tossed samples
# (one reading in 100) to show in the output, small enough for 50 kills in about a minute.
ARGS = ["demo", "--households", "2", "--days", "2", "--interval", "15", "--no-progress", "--json"]


# The fraud section (docs/fraud.md) needs a feeder of more than five customers for its
# recovery round: six households, two days, killed in the run's later part, where the
# aggregation applets are installed, groups admitted, and releases and recoveries logged.
FRAUD_ARGS = ["demo", "--households", "6", "--days", "2", "--interval", "15", "--no-progress", "--json"]
FRAUD_KILLS = 8


def _run(data_dir: Path, out: Path, kill_after: float | None, args: list[str] = ARGS) -> tuple[bool, int | None, float]:
    """Run the demo in a forked child; (killed, exit code, seconds)."""
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        rc = 70
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(fd, "w", closefd=False)  # noqa: SIM115 - flushed below
            from meterhub.cli import main

            rc = main([*args, "--data-dir", str(data_dir)])
        finally:
            sys.stdout.flush()
            os._exit(rc)
    if kill_after is not None:
        deadline = t0 + kill_after
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return False, os.waitstatus_to_exitcode(status), time.monotonic() - t0
            time.sleep(0.002)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return True, None, time.monotonic() - t0
    return False, os.waitstatus_to_exitcode(status), time.monotonic() - t0


@pytest.fixture
def scratch(tmp_path):
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else tmp_path
    with tempfile.TemporaryDirectory(prefix="meterhub-kill-", dir=base) as d:
        yield Path(d)


def test_sigkill_at_random_points_resumes_to_the_uninterrupted_output(scratch):
    # One run in this process first: the forked children inherit its imports and the
    # simulator's caches, so an attempt spends its time in the demo's steps.
    import contextlib
    import io

    from meterhub.cli import main

    warm = io.StringIO()
    with contextlib.redirect_stdout(warm):
        assert main([*ARGS, "--data-dir", str(scratch / "warm-up")]) == 0

    ref_out = scratch / "reference.out"
    killed, rc, duration = _run(scratch / "reference", ref_out, None)
    assert not killed and rc == 0, ref_out.read_text()[-2000:]
    reference = ref_out.read_text()
    assert reference == warm.getvalue()  # a fixed seed reproduces the output
    assert '"all_verified": true' in reference
    # The coin toss shows in the output (else a re-tossed coin would go unnoticed).
    assert json.loads(reference)["settlement"]["readings_released"]["samples"] > 0

    rng = random.Random(20270315)  # a fixed schedule; the timing still varies run to run
    kills = finished = attempts = 0
    run_no = 0
    data_dir = scratch / f"run{run_no}"
    while kills < KILLS:
        attempts += 1
        assert attempts < 20 * KILLS, "the demo never completes between kills"
        out = scratch / "attempt.out"
        killed, rc, _ = _run(data_dir, out, rng.uniform(0.0, duration))
        if killed:
            kills += 1
            continue
        text = out.read_text()
        # Not killed: the run must have completed, with exactly the reference output.
        assert rc == 0, f"attempt {attempts} (after {kills} kills) failed: {text[-2000:]}"
        assert text == reference, f"attempt {attempts}: output differs from the uninterrupted run"
        finished += 1
        run_no += 1
        data_dir = scratch / f"run{run_no}"
    # Finish the last data directory and compare it too.
    killed, rc, _ = _run(data_dir, scratch / "final.out", None)
    text = (scratch / "final.out").read_text()
    assert rc == 0, text[-2000:]
    assert text == reference
    assert kills >= KILLS
    print(f"uninterrupted {duration:.2f} s; {kills} kills in {attempts} attempts, {finished + 1} data dirs completed")


def test_sigkill_in_the_fraud_section_resumes_to_the_uninterrupted_output(scratch):
    ref_out = scratch / "reference.out"
    killed, rc, duration = _run(scratch / "reference", ref_out, None, FRAUD_ARGS)
    assert not killed and rc == 0, ref_out.read_text()[-2000:]
    reference = ref_out.read_text()
    fraud = json.loads(reference)["fraud"]
    # the section ran its protocol: feeder-days verified, one of them after a recovery round
    assert fraud["feeder_days_verified"] == 2 and fraud["feeder_days_incomplete"] == 1 and fraud["all_verified"]
    # an unmasking round every day (double masking): 6 answers, then 5 with one hub missing
    assert json.loads(reference)["privacy"]["recipients"]["grid-operator"]["releases"]["recovery"] == 6 + 5
    rng = random.Random(20270316)
    kills = attempts = 0
    run_no = 0
    data_dir = scratch / f"run{run_no}"
    while kills < FRAUD_KILLS:
        attempts += 1
        assert attempts < 20 * FRAUD_KILLS, "the demo never completes between kills"
        out = scratch / "attempt.out"
        killed, rc, _ = _run(data_dir, out, rng.uniform(0.4 * duration, duration), FRAUD_ARGS)
        if killed:
            kills += 1
            continue
        text = out.read_text()
        assert rc == 0, f"attempt {attempts} (after {kills} kills) failed: {text[-2000:]}"
        assert text == reference, f"attempt {attempts}: output differs from the uninterrupted run"
        run_no += 1
        data_dir = scratch / f"run{run_no}"
    killed, rc, _ = _run(data_dir, scratch / "final.out", None, FRAUD_ARGS)
    text = (scratch / "final.out").read_text()
    assert rc == 0, text[-2000:]
    assert text == reference
