"""Benchmark of the issuer's ``--workers 2`` against ``--workers 1``: server CPU per request.

docs/spec.md §8 "two worker processes": server CPU per client-credentials JWT (ES256) with the
issuer run as two worker processes, against the same issuer run as one, measured in the same
run (interleaved, order flipped each round, medians).

Setup: scripts/bench_issuance.py's stack (embedded PostgreSQL and NATS, the key rotator, the
registered client), then two more issuers of the same code and environment on ports of their
own: ``--workers 1`` and ``--workers 2``. Both run under ``taskset -c <server core>`` (the
spawned second worker inherits the parent's affinity), so both workers of the two-worker issuer
share the one core the one-worker issuer has: the ratio is the per-request cost of a second
process (two event loops, two sets of caches and database pools, the kernel spreading
connections and switching between them), not the gain of a second core. The load is
bench_issuance's: ``c`` = 32 concurrent callers over 4 channels (each its own connection, so
SO_REUSEPORT can send them to either worker), client_secret_basic on every call, from this
process on the other core.

Server CPU per call = user + system CPU of every process of the issuer (the supervisor, which
serves too, and the workers it spawned: psutil ``children(recursive=True)``), summed before and
after each load, divided by the calls. Each two-worker load also reports each process's share
of that CPU; a load in which one worker got no connection (its share under 5 %) measures one
worker, so it is run again on new connections (up to 3 times, counted in the output). Before
the rounds each issuer gets one uncounted warm-up load that reaches every worker.

``--unpinned-rounds`` then lifts the pin of both issuers (every core) and reports throughput
and CPU per call as information, not the target (the load generator, which stays on its core,
shares those cores on a small machine).

Target: two workers' server CPU-µs per request ≤ 1.15 × one worker's.

Run: ``.venv/bin/python scripts/bench_workers.py [--quick] [--rounds N] [--seconds S]``.
Writes workers.json (raw samples) under docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts")]

import bench_issuance as bi  # noqa: E402
from benchkit import machine, stop_processes  # noqa: E402

from tokenry.devstack.ports import free_tcp_port  # noqa: E402

TARGET = 1.15
CONCURRENCY = 32
MIN_SHARE = 0.05  # below this a worker served no connection (idle background is ≪ 1 %)
ATTEMPTS = 3
TOKEN = "/tokenry.v1.Issuer/Token"


class ProcessTree:
    """Quacks like the ``psutil.Process`` bench_issuance's ``_load`` reads ``cpu_times()`` of,
    but sums the issuer's whole process tree, and keeps each process's own figure so a load
    can say which workers served it."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.snapshots: list[dict[int, float]] = []

    def processes(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def cpu_times(self) -> SimpleNamespace:
        snapshot = {}
        for proc in self.processes():
            times = proc.cpu_times()
            snapshot[proc.pid] = times.user + times.system
        self.snapshots.append(snapshot)
        return SimpleNamespace(user=sum(snapshot.values()), system=0.0)

    def last_deltas(self) -> dict[int, float]:
        """CPU seconds per process between the last two ``cpu_times()`` (one load)."""
        before, after = self.snapshots[-2], self.snapshots[-1]
        if before.keys() != after.keys():
            raise RuntimeError(f"issuer processes changed during a load: {before} -> {after}")
        return {pid: after[pid] - before[pid] for pid in after}


@dataclass
class Issuer:
    workers: int
    addr: str
    proc: subprocess.Popen[bytes]
    tree: ProcessTree = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ProcessTree(self.proc.pid)


def start_issuer(
    env: dict[str, str], workers: int, pin: list[str], procs: list[subprocess.Popen[bytes]]
) -> Issuer:
    port = free_tcp_port()
    proc = subprocess.Popen(
        [*pin, sys.executable, "-m", "tokenry.services.issuer", "--workers", str(workers)],
        env={**env, "TOKENRY_ISSUER_LISTEN": f"127.0.0.1:{port}"},
    )
    procs.append(proc)
    addr = f"127.0.0.1:{port}"
    bi._wait_port(addr, proc)
    issuer = Issuer(workers, addr, proc)
    # The health check may have reached the supervisor only: wait until every worker listens.
    deadline = time.monotonic() + 60
    while True:
        listening = [
            p
            for p in issuer.tree.processes()
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == port
                for c in p.net_connections("tcp")
            )
        ]
        if len(listening) == workers:
            return issuer
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(listening)} of {workers} workers listen on {addr}")
        time.sleep(0.2)


@dataclass
class Sample:
    phase: str  # "pinned" or "unpinned"
    round: int
    workers: int
    sample: bi.Sample
    cpu_by_process: list[float]  # seconds, the supervisor first
    attempts: int

    @property
    def shares(self) -> list[float]:
        total = sum(self.cpu_by_process) or 1.0
        return [x / total for x in self.cpu_by_process]


def measure(
    issuer: Issuer,
    metadata: tuple[tuple[str, str], ...],
    seconds: float,
    phase: str,
    rnd: int,
) -> Sample:
    for attempt in range(1, ATTEMPTS + 1):
        sample = asyncio.run(
            bi._load(
                issuer.addr,
                TOKEN,
                bi._token_request("jwt"),
                metadata,
                CONCURRENCY,
                seconds,
                issuer.tree,  # a ProcessTree: only its cpu_times() is read
                f"workers={issuer.workers}",
            )
        )
        deltas = issuer.tree.last_deltas()
        by_process = [deltas[issuer.proc.pid]] + [
            v for pid, v in sorted(deltas.items()) if pid != issuer.proc.pid
        ]
        result = Sample(phase, rnd, issuer.workers, sample, by_process, attempt)
        if min(result.shares) >= MIN_SHARE or attempt == ATTEMPTS:
            return result
        print(f"  (a worker served nothing: shares {_shares(result)}; again on new connections)")
    raise AssertionError("unreachable")


def _shares(s: Sample) -> str:
    return "/".join(f"{x:.0%}" for x in s.shares)


def _print(s: Sample) -> None:
    x = s.sample
    print(
        f"round {s.round + 1} {s.phase:<8} workers={s.workers} {x.rate:7.0f}/s"
        f"  p50 {x.pct(0.5):6.0f} µs  p99 {x.pct(0.99):6.0f} µs"
        f"  server {x.server_cpu_us_per_call:5.0f} µs/call"
        f"  CPU by process {_shares(s)}"
        + (f"  attempts {s.attempts}" if s.attempts > 1 else "")
        + (f"  errors {x.errors}" if x.errors else ""),
        flush=True,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    client_cores = [c for c in cores if c != server_core] or cores
    os.sched_setaffinity(0, client_cores)
    os.environ.pop("TOKENRY_WORKERS", None)  # the stack's own issuer stays one process
    pin = ["taskset", "-c", str(server_core)] if shutil.which("taskset") else []
    samples: list[Sample] = []
    with bi.stack(server_core, reply_size=700) as st:
        # The stack's issuer and echoes stay idle on the server core; ours get their own ports.
        procs: list[subprocess.Popen[bytes]] = []
        try:
            issuers = [start_issuer(st.env, n, pin, procs) for n in (1, 2)]
            basic = base64.b64encode(f"{bi.CLIENT_ID}:{st.secret}".encode()).decode()
            metadata = (("authorization", f"Basic {basic}"),)
            for issuer in issuers:
                # Not counted: every worker's first calls fill its own caches and pools, which
                # a long-running worker has done long ago.
                warm = measure(issuer, metadata, min(args.seconds, 3.0), "warm-up", -1)
                print(f"warm-up workers={issuer.workers}: CPU by process {_shares(warm)}")
            for rnd in range(args.rounds):
                for issuer in issuers if rnd % 2 == 0 else issuers[::-1]:
                    samples.append(measure(issuer, metadata, args.seconds, "pinned", rnd))
                    _print(samples[-1])
            if args.unpinned_rounds:
                for issuer in issuers:
                    for proc in issuer.tree.processes():
                        proc.cpu_affinity(cores)
                for rnd in range(args.unpinned_rounds):
                    for issuer in issuers if rnd % 2 == 0 else issuers[::-1]:
                        samples.append(measure(issuer, metadata, args.seconds, "unpinned", rnd))
                        _print(samples[-1])
        finally:
            stop_processes(procs)
    return {
        "machine": machine(server_core, client_cores),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.started)),
        "concurrency": CONCURRENCY,
        "channels": bi.CHANNELS,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "unpinned_rounds": args.unpinned_rounds,
        "samples": [
            {
                "phase": s.phase,
                "round": s.round,
                "workers": s.workers,
                "calls": s.sample.calls,
                "seconds": s.sample.seconds,
                "rate": s.sample.rate,
                "p50_us": s.sample.pct(0.5),
                "p99_us": s.sample.pct(0.99),
                "server_cpu_us_per_call": s.sample.server_cpu_us_per_call,
                "cpu_s_by_process": s.cpu_by_process,
                "cpu_share_by_process": s.shares,
                "attempts": s.attempts,
                "errors": s.sample.errors,
                "latencies_us": [
                    round(x)
                    for x in s.sample.latencies_us[:: max(1, len(s.sample.latencies_us) // 300)]
                ],
            }
            for s in samples
        ],
    }


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Medians per (phase, workers); per pinned round the CPU ratio two ÷ one of that round."""
    rows = []
    for phase in ("pinned", "unpinned"):
        for workers in (1, 2):
            runs = [
                s for s in results["samples"] if s["phase"] == phase and s["workers"] == workers
            ]
            if not runs:
                continue
            rows.append(
                {
                    "phase": phase,
                    "workers": workers,
                    "rate": statistics.median(s["rate"] for s in runs),
                    "p50_us": statistics.median(s["p50_us"] for s in runs),
                    "p99_us": statistics.median(s["p99_us"] for s in runs),
                    "server_cpu_us_per_call": statistics.median(
                        s["server_cpu_us_per_call"] for s in runs
                    ),
                    "min_share": min(min(s["cpu_share_by_process"]) for s in runs),
                    "errors": sum(s["errors"] for s in runs),
                }
            )
    pinned = [s for s in results["samples"] if s["phase"] == "pinned"]
    per_round = []
    for rnd in sorted({s["round"] for s in pinned}):
        one, two = (
            next(s for s in pinned if s["round"] == rnd and s["workers"] == n) for n in (1, 2)
        )
        per_round.append(two["server_cpu_us_per_call"] / one["server_cpu_us_per_call"])

    def ratio(phase: str, key: str) -> float | None:
        by = {r["workers"]: r[key] for r in rows if r["phase"] == phase}
        return by[2] / by[1] if len(by) == 2 else None

    return {
        "rows": rows,
        "cpu_ratio_per_round": per_round,
        "cpu_ratio_median_of_rounds": statistics.median(per_round),
        "cpu_ratio_of_medians": ratio("pinned", "server_cpu_us_per_call"),
        "rate_ratio_of_medians": ratio("pinned", "rate"),
        # information only: each worker may get a core, and the load generator shares them
        "unpinned_cpu_ratio_of_medians": ratio("unpinned", "server_cpu_us_per_call"),
        "unpinned_rate_ratio_of_medians": ratio("unpinned", "rate"),
        "target": TARGET,
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(
        f"\nc={CONCURRENCY}, client-credentials JWT (ES256); pinned: every issuer process on one"
        " core, the load on the other"
    )
    print("\n| issuer | pin | calls/s | p50 µs | p99 µs | server CPU µs/call | least CPU share |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in summary["rows"]:
        print(
            f"| --workers {r['workers']} | {r['phase']} | {r['rate']:.0f} | {r['p50_us']:.0f} |"
            f" {r['p99_us']:.0f} | {r['server_cpu_us_per_call']:.0f} | {r['min_share']:.0%} |"
        )
    per_round = summary["cpu_ratio_per_round"]
    ratio = summary["cpu_ratio_median_of_rounds"]
    print(
        f"\nserver CPU per call, two workers ÷ one (pinned): {ratio:.3f} median of"
        f" {len(per_round)} rounds (range {min(per_round):.3f}–{max(per_round):.3f};"
        f" ratio of medians {summary['cpu_ratio_of_medians']:.3f});"
        f" throughput two ÷ one {summary['rate_ratio_of_medians']:.3f}"
    )
    if summary["unpinned_rate_ratio_of_medians"] is not None:
        print(
            "unpinned (information, not the target): throughput two ÷ one"
            f" {summary['unpinned_rate_ratio_of_medians']:.3f}, server CPU per call two ÷ one"
            f" {summary['unpinned_cpu_ratio_of_medians']:.3f}"
        )
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"target: ≤ {TARGET} × one worker: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (a smoke run)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per load")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved pinned rounds")
    parser.add_argument(
        "--unpinned-rounds",
        type=int,
        default=2,
        help="rounds with the pin lifted afterwards, throughput only (0: none)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.unpinned_rounds = 2.0, 2, min(args.unpinned_rounds, 1)
    args.started = time.time()
    results = run(args)
    summary = summarize(results)
    results["summary"] = summary
    print_summary(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "workers.json").write_text(json.dumps(results, indent=1))
    print(f"\nraw samples: {args.out / 'workers.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
