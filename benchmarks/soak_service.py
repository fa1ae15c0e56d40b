"""Soak of ``utility serve`` under honest and hostile clients (issue 15; docs/service.md, "Soak").

A real server process (``meterhub utility serve``, SQLite by default, PostgreSQL with
``--postgres``) on 127.0.0.1 (loopback only, an ephemeral port) for ``--duration``
seconds (default 600: the issue's 10-minute soak). ``--clients`` honest meter hosts
deliver their days over keep-alive connections (one day per request; after the
first pass every delivery is an identical re-delivery) and read their coverage. The
run is split into ``--phases`` (default 10) alternating phases, A (honest clients
only) and B (honest clients plus hostile ones), so each figure under attack has its
same-run baseline; figures are medians over the phases of each kind, with the count.

Hostile clients (phase B; each kind bounded by its own connection count):

* slow heads (slowloris): request head lines a byte a second, never finished;
* slow bodies: a valid key and ``Content-Length`` then a byte a second;
* half-open: connect and send nothing (or a part of a head), never read;
* flooders: back-to-back requests with unknown keys (401), oversized bodies (413),
  malformed bodies (400), over keep-alive.

Reported: honest deliveries/s and latency p50/p90/p99/max per phase kind (ratio B/A),
honest errors (must be 0), refusals by status, how long the server took to close
hostile connections, the server's RSS (first vs last tenth of the run, max) and its
open file descriptors (max). The process exits 1 if an honest request failed, a
hostile connection outlived its deadline by more than 5 s, or RSS grew by more than
``--max-growth-mib`` (default 32) from the first to the last tenth.

Run: PYTHONPATH=src python benchmarks/soak_service.py [--duration 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import make_history  # noqa: E402
from meterhub.crypto import ecdsa  # noqa: E402
from meterhub.service.keys import ApiKeys  # noqa: E402
from meterhub.tariffs import dump_tariff, example_signed_tariff  # noqa: E402
from meterhub.utility.store import UtilityStore  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START = date(2027, 6, 1)
HOST = "127.0.0.1"  # loopback only


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[int, list[float]] = field(default_factory=dict)  # phase -> honest latencies
    honest_errors: list[str] = field(default_factory=list)
    refusals: dict[int, int] = field(default_factory=dict)
    hostile_lifetimes: dict[str, list[float]] = field(default_factory=dict)
    hostile_overdue: list[str] = field(default_factory=list)

    def refusal(self, status: int) -> None:
        with self.lock:
            self.refusals[status] = self.refusals.get(status, 0) + 1

    def lifetime(self, kind: str, seconds: float, deadline: float) -> None:
        with self.lock:
            self.hostile_lifetimes.setdefault(kind, []).append(seconds)
            if seconds > deadline + 5:
                self.hostile_overdue.append(f"{kind} connection lived {seconds:.1f} s (deadline {deadline:g} s)")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _hold(kind: str, port: int, send: bytes, trickle: bytes, deadline: float, stop: threading.Event,
          tally: Tally) -> None:
    """One hostile connection at a time, re-opened when the server closes it: sends
    ``send`` at once, then ``trickle`` a byte a second, never reads a response until
    the server closes; records how long the server let it live."""
    while not stop.is_set():
        try:
            s = socket.create_connection((HOST, port), timeout=5)
        except OSError:
            time.sleep(0.5)
            continue
        t0 = time.monotonic()
        closed = False
        try:
            s.settimeout(1.0)
            if send:
                s.sendall(send)
            k = 0
            while not stop.is_set():
                if trickle:
                    try:
                        s.sendall(trickle[k % len(trickle) : k % len(trickle) + 1])
                    except OSError:
                        closed = True
                        break
                    k += 1
                try:
                    data = s.recv(4096)
                    if not data:  # the server closed the connection
                        closed = True
                        break
                    if data.startswith(b"HTTP/1.1 "):
                        tally.refusal(int(data[9:12]))
                except TimeoutError:
                    continue  # still open: wait another second
                except OSError:
                    closed = True
                    break
        finally:
            s.close()
        if closed:
            tally.lifetime(kind, time.monotonic() - t0, deadline)


def _declared_too_large(port: int, headers: dict[str, str]) -> int:
    """A head declaring a 1 GiB body, on its own connection; the status of the answer."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        head = "POST /v1/days HTTP/1.1\r\nHost: utility\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall((head + "\r\n").encode())
        data = s.recv(4096)
    return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0


def _flood(port: int, key: str, stop: threading.Event, tally: Tally) -> None:
    import httpx

    bodies = [
        ({"Authorization": "Bearer mhk_not-a-key"}, b"{}"),
        ({"Authorization": f"Bearer {key}", "Content-Length": str(1 << 30)}, None),
        ({"Authorization": f"Bearer {key}"}, b"\xff\xfe not json"),
    ]
    n = 0
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as c:
        while not stop.is_set():
            headers, body = bodies[n % len(bodies)]
            n += 1
            try:
                if body is None:  # a declared size over the limit, no body sent: 413 at once
                    tally.refusal(_declared_too_large(port, headers))
                else:
                    tally.refusal(c.post("/v1/days", headers=headers, content=body).status_code)
            except (httpx.TransportError, OSError):
                tally.refusal(0)


def run(args: argparse.Namespace) -> dict:
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="mh-soak-"))
    if args.postgres:
        import psycopg

        admin = os.environ.get("MH_PG_DSN") or (ROOT / ".pgdsn").read_text().strip()
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS mh_soak WITH (FORCE)")
            c.execute("CREATE DATABASE mh_soak")
        db = admin.rpartition("/")[0] + "/mh_soak"
    else:
        db = str(tmp / "utility.sqlite")
    hs = [make_history(start=START, n_days=args.days, seed=1000 + k, meter_id=f"soak-{k:03d}")
          for k in range(args.clients)]
    u = UtilityStore(db if "://" in db else Path(db))
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    for h in hs:
        u.register_meter(h.meter.meter_id, ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15,
                         tariff=signed, supplier="s")
    u.close()
    keys = ApiKeys({})
    meter_keys = [keys.add(f"host-{h.meter.meter_id}", "meter", [h.meter.meter_id]) for h in hs]
    keys.save(tmp / "keys.json")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterhub.cli", "utility", "serve", "--db", db, "--listen", f"{HOST}:{port}",
         "--keys", str(tmp / "keys.json"), "--head-timeout", str(args.head_timeout),
         "--body-timeout", str(args.body_timeout)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "wb"),  # noqa: SIM115
    )
    tally = Tally()
    rss: list[tuple[float, int]] = []
    fds: list[int] = []
    phase_len = args.duration / args.phases
    try:
        url = f"http://{HOST}:{port}"
        for _ in range(400):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError("the server did not start")
        t_start = time.monotonic()
        t_end = t_start + args.duration

        def phase_of(t: float) -> int:
            return min(args.phases - 1, int((t - t_start) / phase_len))

        def honest(k: int) -> None:
            bodies = [(up.to_json() + "\n").encode() for up in hs[k].uploads()]
            n = 0
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {meter_keys[k]}"}, timeout=60) as c:
                while time.monotonic() < t_end:
                    t0 = time.monotonic()
                    try:
                        if n % 10 == 9:
                            r = c.get(f"/v1/meters/{hs[k].meter.meter_id}/coverage")
                        else:
                            r = c.post("/v1/days", content=bodies[n % len(bodies)])
                        ok = r.status_code == 200
                        why = f"HTTP {r.status_code}: {r.text[:120]}"
                    except httpx.TransportError as exc:
                        ok, why = False, f"{type(exc).__name__}: {exc}"
                    dt = time.monotonic() - t0
                    with tally.lock:
                        if ok:
                            tally.latencies.setdefault(phase_of(t0), []).append(dt)
                        else:
                            tally.honest_errors.append(why)
                    n += 1

        threads = [threading.Thread(target=honest, args=(k,), daemon=True) for k in range(args.clients)]
        for t in threads:
            t.start()
        head = b"POST /v1/days HTTP/1.1\r\nHost: utility\r\n"
        body_head = (f"POST /v1/days HTTP/1.1\r\nHost: utility\r\nAuthorization: Bearer {meter_keys[0]}\r\n"
                     "Content-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n").encode()
        hostile_specs = (
            [("slow-head", head, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", args.head_timeout)] * args.slow
            + [("slow-body", body_head, b"{", args.body_timeout)] * args.slow
            + [("half-open", b"", b"", args.head_timeout)] * args.half_open
            + [("half-open-head", head[:20], b"", args.head_timeout)] * args.half_open
        )
        for p in range(args.phases):
            p_end = t_start + (p + 1) * phase_len
            stop = threading.Event()
            hostile: list[threading.Thread] = []
            if p % 2 == 1:  # phase B: under attack
                for kind, send, trickle, deadline in hostile_specs:
                    hostile.append(threading.Thread(target=_hold, args=(kind, port, send, trickle, deadline, stop,
                                                                          tally), daemon=True))
                for _ in range(args.flooders):
                    hostile.append(threading.Thread(target=_flood, args=(port, meter_keys[0], stop, tally),
                                                    daemon=True))
                for t in hostile:
                    t.start()
            while time.monotonic() < p_end:
                rss.append((time.monotonic() - t_start, _rss_kib(proc.pid)))
                fds.append(_fds(proc.pid))
                time.sleep(min(1.0, max(0.0, p_end - time.monotonic())))
            stop.set()
            for t in hostile:
                t.join(10)
        for t in threads:
            t.join(60)
    finally:
        proc.terminate()
        proc.wait(10)
    if args.postgres:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS mh_soak WITH (FORCE)")

    def stats(phases: list[int]) -> dict:
        rates, p50, p90, p99, mx = [], [], [], [], []
        for p in phases:
            lat = sorted(tally.latencies.get(p, []))
            if not lat:
                continue
            rates.append(len(lat) / phase_len)
            p50.append(lat[len(lat) // 2])
            p90.append(lat[int(len(lat) * 0.9)])
            p99.append(lat[min(len(lat) - 1, int(len(lat) * 0.99))])
            mx.append(lat[-1])
        med = statistics.median
        return {"phases": len(rates), "deliveries_per_s": med(rates), "p50_ms": 1e3 * med(p50),
                "p90_ms": 1e3 * med(p90), "p99_ms": 1e3 * med(p99), "max_ms": 1e3 * max(mx)}

    tenth = max(1, len(rss) // 10)
    first = statistics.median(r for _, r in rss[:tenth]) / 1024
    last = statistics.median(r for _, r in rss[-tenth:]) / 1024
    quiet = stats([p for p in range(args.phases) if p % 2 == 0])
    attack = stats([p for p in range(args.phases) if p % 2 == 1])
    res = {
        "duration_s": args.duration, "phases": args.phases, "clients": args.clients,
        "backend": "postgres" if args.postgres else "sqlite",
        "hostile": {"slow_head": args.slow, "slow_body": args.slow, "half_open": 2 * args.half_open,
                    "flooders": args.flooders},
        "quiet": quiet, "attack": attack,
        "attack_vs_quiet": {"throughput": attack["deliveries_per_s"] / quiet["deliveries_per_s"],
                            "p99": attack["p99_ms"] / quiet["p99_ms"]},
        "honest_requests": sum(len(v) for v in tally.latencies.values()),
        "honest_errors": len(tally.honest_errors), "honest_error_samples": tally.honest_errors[:5],
        "refusals": {str(k): v for k, v in sorted(tally.refusals.items())},
        "hostile_closed": {k: {"n": len(v), "median_s": statistics.median(v), "max_s": max(v)}
                           for k, v in sorted(tally.hostile_lifetimes.items())},
        "hostile_overdue": tally.hostile_overdue[:5],
        "rss_mib": {"first_tenth": first, "last_tenth": last, "growth": last - first,
                    "max": max(r for _, r in rss) / 1024, "samples": len(rss)},
        "fds_max": max(fds), "fds_last": fds[-1],
    }
    res["ok"] = (res["honest_errors"] == 0 and not tally.hostile_overdue
                 and res["rss_mib"]["growth"] <= args.max_growth_mib)
    return res


def _print(r: dict) -> None:
    print(f"soak of `utility serve` ({r['backend']}), {r['duration_s']:.0f} s, {r['phases']} phases "
          f"alternating quiet (A) and under attack (B); {r['clients']} honest clients; hostile per B phase: "
          f"{r['hostile']}")
    for name in ("quiet", "attack"):
        s = r[name]
        print(f"  {name:<6} honest deliveries/s {s['deliveries_per_s']:8,.0f}   p50 {s['p50_ms']:6.1f} ms  "
              f"p90 {s['p90_ms']:6.1f} ms  p99 {s['p99_ms']:6.1f} ms  max {s['max_ms']:7.1f} ms  "
              f"(median of {s['phases']} phases)")
    q = r["attack_vs_quiet"]
    print(f"  attack/quiet: throughput x{q['throughput']:.2f}, p99 x{q['p99']:.2f}")
    print(f"  honest requests {r['honest_requests']:,}, errors {r['honest_errors']}")
    print(f"  refusals by status: {r['refusals']}")
    for k, v in r["hostile_closed"].items():
        print(f"  {k:<15} closed by the server: {v['n']:5d} connections, median {v['median_s']:.1f} s, "
              f"max {v['max_s']:.1f} s")
    m = r["rss_mib"]
    print(f"  server RSS: first tenth {m['first_tenth']:.1f} MiB, last tenth {m['last_tenth']:.1f} MiB "
          f"(growth {m['growth']:+.1f}), max {m['max']:.1f}; open fds max {r['fds_max']}, at the end "
          f"{r['fds_last']}")
    print("  verdict:", "OK" if r["ok"] else "FAILED " + "; ".join(r["hostile_overdue"] + r["honest_error_samples"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default: 600)")
    ap.add_argument("--phases", type=int, default=10, help="alternating quiet/attack phases (default: 10)")
    ap.add_argument("--clients", type=int, default=50, help="honest clients (default: 50)")
    ap.add_argument("--days", type=int, default=4, help="days per honest meter (default: 4)")
    ap.add_argument("--slow", type=int, default=20, help="slow-head and slow-body connections each (default: 20)")
    ap.add_argument("--half-open", type=int, default=25, help="silent and half-head connections each (default: 25)")
    ap.add_argument("--flooders", type=int, default=2, help="flooding clients (default: 2)")
    ap.add_argument("--head-timeout", type=float, default=10.0, help="server --head-timeout (default: 10)")
    ap.add_argument("--body-timeout", type=float, default=30.0, help="server --body-timeout (default: 30)")
    ap.add_argument("--max-growth-mib", type=float, default=32.0, help="RSS growth allowed (default: 32)")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL from $MH_PG_DSN or .pgdsn")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)
    if a.phases < 2 or a.duration <= 0:
        ap.error("--phases at least 2, --duration positive")
    r = run(a)
    print(json.dumps(r, indent=1)) if a.json else _print(r)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
