"""Benchmark of revocation throughput (issue 11): acknowledged revocations/s over gRPC with 16
and 64 in flight, the revocation service pinned to one core, next to a bare grpc.aio echo RPC
pinned to the same core with the same auth metadata and request bytes, measured in the same run
(interleaved rounds, medians).

Every acknowledged revocation is durable: PostgreSQL runs with fsync on, and the service
answers after COMMIT (docs/spec.md §4.1). Each call revokes a jti never revoked before (a leaked
batch of tokens), as an admin client authenticated with client_secret_basic. The service runs its
outbox relay (the event publisher) on the same pinned core, as deployed, unless ``--no-relay``.

Target: revocations ≥ 0.5 × echo throughput (the opaque-token issuance path, also one
group-committed insert, reaches 0.57 ×).

The in-run ceiling (kind ``ceiling``): the echo server's twin that, before answering, awaits a
group-committed durable INSERT of one row of the same size as a revocation's row and event
(``tokenry.store.batching.Coalescer``: one statement per batch, synchronous commit), pinned to
the same core. It is what any gRPC service that group-commits one row per call can reach on
this box; revocations are reported against it as well as against the echo.

``--relay-process`` runs the outbox relay in a second revocation service process pinned to the
client cores (``TOKENRY_RELAY=1``; it wins the publisher lease), and the measured one as a pure
API replica (``TOKENRY_RELAY=0``), as in a deployment where the lease holder is not the
replica taking the load (docs/events.md: ``TOKENRY_RELAY``). The JSON says where each process
ran.

``--request-ids`` adds a fourth kind: each revocation carries its own request_id, so its
idempotency record is written in the same transaction.

``--group-commit`` measures the write path alone, without gRPC or the service: 16 and 64
coroutines calling the service's own recorder (``PgRevocationRecorder``: group commit of the
revocation, its outbox row and event) in a loop against the same durable PostgreSQL, in one
process pinned to the server core. It says how far the database side is from being the limit.

``--profile FILE`` runs the revocation service under cProfile (one run of ``--seconds`` at
c=64, no echo) and writes the stats to FILE (``python -m pstats FILE``).

Run: ``.venv/bin/python scripts/bench_revocations.py [--quick] [--seconds S] [--rounds N]``.
Writes revocations.json (raw samples) and revocations.png (if matplotlib is installed; with
``--relay-process``, revocations-relay-process.json/png) under
docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_issuance import Sample, _load, _wait_port, add_event_loop_option, use_event_loop
from benchkit import machine, new_pepper, register, service_env, stop_stack, write_results

from tokenry.core.client_secrets import Pepper
from tokenry.core.clients import ADMIN_SCOPE, secret_client
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.devstack.ports import free_tcp_port
from tokenry.store.migrate import migrate
from tokenry.v1 import revocation_pb2

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "bench-admin"
REVOKE = "/tokenry.v1.Revocation/Revoke"
ECHO = "/bench.Echo/Echo"
CONCURRENCY = (16, 64)


@dataclass
class Stack:
    revocation_addr: str
    echo_addr: str
    revocation: subprocess.Popen[bytes]
    echo: subprocess.Popen[bytes]
    secret: str
    dsn: str
    ceiling_addr: str
    ceiling: subprocess.Popen[bytes]
    placement: dict[str, str]


# The ceiling's row: a revocation writes about this much (its row, its outbox event).
CEILING_TABLE = "CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, value text, payload bytea)"
CEILING_INSERT = (
    "INSERT INTO bench_ceiling (value, payload) SELECT * FROM unnest($1::text[], $2::bytea[])"
)


async def _register_admin(dsn: str, pepper: Pepper, secret: str) -> None:
    admin = secret_client(CLIENT_ID, secret, pepper, scopes={ADMIN_SCOPE}, audiences=("tokenry",))
    await register(dsn, [admin])
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CEILING_TABLE)
    finally:
        await conn.close()


@contextlib.contextmanager
def stack(
    server_core: int,
    *,
    relay: bool,
    profile: Path | None = None,
    relay_process: bool = False,
    client_cores: tuple[int, ...] = (),
) -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    pg, nats = EmbeddedPostgres(tmp / "pg"), EmbeddedNats(tmp / "nats")  # durable: fsync on
    try:
        pg.start()
        nats.start()
        pepper_text, pepper = new_pepper()
        secret = secrets.token_urlsafe(32)
        asyncio.run(_register_admin(pg.dsn(), pepper, secret))
        revocation_port, echo_port = free_tcp_port(), free_tcp_port()
        extra = {
            "TOKENRY_REVOCATION_LISTEN": f"127.0.0.1:{revocation_port}",
            "TOKENRY_RELAY": "1" if relay and not relay_process else "0",
        }
        env = service_env(pg.dsn(), nats.url, pepper_text, extra)
        py = sys.executable
        taskset = shutil.which("taskset")
        pin = ["taskset", "-c", str(server_core)] if taskset else []
        placement = {"revocation": f"core {server_core}" if taskset else "unpinned"}
        if relay_process:
            # The publisher: a second replica with the relay, on the client cores; started
            # first so that it holds the lease (the measured replica runs no relay at all).
            others = ",".join(map(str, client_cores))
            relay_pin = ["taskset", "-c", others] if taskset and others else []
            relay_port = free_tcp_port()
            relay_env = {
                **env,
                "TOKENRY_RELAY": "1",
                "TOKENRY_REVOCATION_LISTEN": f"127.0.0.1:{relay_port}",
            }
            relayer = subprocess.Popen(
                [*relay_pin, py, "-m", "tokenry.services.revocation"], env=relay_env
            )
            procs.append(relayer)
            _wait_port(f"127.0.0.1:{relay_port}", relayer)
            placement["relay"] = f"second revocation process, cores {others or 'unpinned'}"
        else:
            placement["relay"] = "in the revocation process" if relay else "none"
        run = [py, "-m", "cProfile", "-o", str(profile)] if profile else [py]
        revocation = subprocess.Popen([*pin, *run, "-m", "tokenry.services.revocation"], env=env)
        procs.append(revocation)
        issuance = str(ROOT / "scripts" / "bench_issuance.py")
        reply = len(_response_example())
        echo = subprocess.Popen(
            [*pin, py, issuance, "--echo-server", str(echo_port), "--reply-size", str(reply)],
            env=env,
        )
        procs.append(echo)
        ceiling_port = free_tcp_port()
        ceiling = subprocess.Popen(
            [*pin, py, __file__, "--ceiling-server", str(ceiling_port), "--reply-size", str(reply)],
            env=env,
        )
        procs.append(ceiling)
        placement["echo"] = placement["ceiling"] = placement["revocation"]
        placement["load, PostgreSQL, NATS"] = f"cores {','.join(map(str, client_cores))}"
        _wait_port(f"127.0.0.1:{revocation_port}", revocation)
        _wait_port(f"127.0.0.1:{echo_port}", echo)
        _wait_port(f"127.0.0.1:{ceiling_port}", ceiling)
        yield Stack(
            f"127.0.0.1:{revocation_port}",
            f"127.0.0.1:{echo_port}",
            revocation,
            echo,
            secret,
            pg.dsn(),
            f"127.0.0.1:{ceiling_port}",
            ceiling,
            placement,
        )
    finally:
        stop_stack(procs, nats, pg, tmp, timeout=20)


def run_ceiling_server(port: int, reply_size: int) -> None:
    """The in-run ceiling: the bare echo, plus one group-committed durable INSERT per call of a
    row the size of a revocation's row and event (see the module docstring)."""
    from tokenry.store.batching import Coalescer

    reply = b"x" * reply_size
    payload = b"p" * 160  # a revocation event's protobuf envelope is about this long

    async def main() -> None:
        pool = await asyncpg.create_pool(os.environ["TOKENRY_DATABASE_URL"], min_size=2)

        async def insert(values: list[str]) -> list[None]:
            await pool.execute(CEILING_INSERT, values, [payload] * len(values))
            return [None] * len(values)

        batch: Coalescer[str, None] = Coalescer(insert)

        async def echo(request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            await batch(request[:40].hex())
            return reply

        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _response_example() -> bytes:
    return revocation_pb2.RevokeResponse(
        seq=123_456, kind=1, not_before=0, expires_at=int(time.time()) + 900
    ).SerializeToString()


class Jtis:
    """A fresh jti per call (never revoked before), with the token's own exp; with
    ``request_ids``, each call also carries its own idempotency key (stored with the write)."""

    def __init__(self, tag: str, *, request_ids: bool = False) -> None:
        self._n = itertools.count()
        self._tag = tag
        self._exp = int(time.time()) + 600
        self._request_ids = request_ids

    def __call__(self) -> bytes:
        return revocation_pb2.RevokeRequest(
            jti=f"{self._tag}-{next(self._n)}",
            expires_at=self._exp,
            reason="bench",
            request_id=str(uuid.uuid4()) if self._request_ids else "",
        ).SerializeToString()


async def _check(dsn: str, *, relay: bool) -> dict[str, int]:
    """Every acknowledged revocation has its row and one event; the seq is gap-free; with a
    relay, every event is published (JetStream acknowledged it) within 30 s of the load."""
    conn = await asyncpg.connect(dsn)
    try:
        unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        deadline = time.monotonic() + 30
        while relay and time.monotonic() < deadline:
            if not await conn.fetchval(unpublished):
                break
            await asyncio.sleep(0.2)  # polling PostgreSQL: nothing in this process to wait on
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM revocations) AS revocations,"
            " (SELECT count(*) FROM outbox) AS events,"
            " (SELECT min(seq) FROM outbox) AS first, (SELECT max(seq) FROM outbox) AS last,"
            f" ({unpublished}) AS unpublished"
        )
        return dict(row) if row is not None else {}
    finally:
        await conn.close()


async def _group_commit_rate(dsn: str, concurrency: int, seconds: float) -> float:
    """Revocations/s through PgRevocationRecorder alone (no gRPC, no authentication)."""
    from functools import partial

    from tokenry.bus import codec
    from tokenry.bus.codec import Subjects
    from tokenry.core.clock import SystemClock
    from tokenry.core.revocations import Revocation, RevocationKind
    from tokenry.flows.revocation import RevocationWrite
    from tokenry.store.revocation_recorder import PgRevocationRecorder
    from tokenry.store.revocations import RevocationStore

    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    recorder = PgRevocationRecorder(
        RevocationStore(pool), partial(codec.revocation_event, Subjects()), SystemClock()
    )
    done = 0
    tag = secrets.token_hex(4)
    stop = time.monotonic() + seconds

    async def worker(index: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop:
            now = time.time()
            rev = Revocation(RevocationKind.JTI, f"{tag}-{index}-{n}", 0, int(now) + 600)
            await recorder.record(
                RevocationWrite(rev, CLIENT_ID, now, None, True, None, None, False)
            )
            n += 1
            done += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        await pool.close()
    return done / (time.monotonic() - started)


def group_commit(args: argparse.Namespace) -> None:
    """``--group-commit``: the write path's own rate (see the module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-"))
    pg = EmbeddedPostgres(tmp / "pg")  # durable: fsync on
    os.sched_setaffinity(0, [sorted(os.sched_getaffinity(0))[0]])
    try:
        pg.start()
        asyncio.run(_migrate(pg.dsn()))
        rates: dict[int, list[float]] = {c: [] for c in CONCURRENCY}
        for rnd in range(args.rounds):
            for concurrency in CONCURRENCY:
                rate = asyncio.run(_group_commit_rate(pg.dsn(), concurrency, args.seconds))
                rates[concurrency].append(rate)
                print(f"round {rnd + 1} c={concurrency:<2} recorder {rate:8.0f}/s", flush=True)
        for concurrency, values in rates.items():
            median = statistics.median(values)
            print(f"c={concurrency}: median {median:.0f}/s (load {os.getloadavg()[0]:.1f})")
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    client_cores = [c for c in cores if c != server_core] or cores
    os.sched_setaffinity(0, client_cores)
    samples: list[Sample] = []
    with stack(
        server_core,
        relay=args.relay,
        profile=args.profile,
        relay_process=args.relay_process,
        client_cores=tuple(client_cores),
    ) as st:
        basic = base64.b64encode(f"{CLIENT_ID}:{st.secret}".encode()).decode()
        metadata = (("authorization", f"Basic {basic}"),)
        revocation = psutil.Process(st.revocation.pid)
        procs = {
            "echo": (st.echo_addr, ECHO, psutil.Process(st.echo.pid)),
            "ceiling": (st.ceiling_addr, ECHO, psutil.Process(st.ceiling.pid)),
            "revoke": (st.revocation_addr, REVOKE, revocation),
            "revoke_id": (st.revocation_addr, REVOKE, revocation),
        }
        kinds = ["revoke"] if args.profile else ["echo", "ceiling", "revoke"]
        if args.request_ids and not args.profile:
            kinds.append("revoke_id")
        concurrencies = (64,) if args.profile else CONCURRENCY
        for rnd in range(1 if args.profile else args.rounds):
            for concurrency in concurrencies:
                order = kinds[rnd % len(kinds) :] + kinds[: rnd % len(kinds)]
                for kind in order:
                    addr, method, proc = procs[kind]
                    jtis = Jtis(f"r{rnd}c{concurrency}{kind}", request_ids=kind == "revoke_id")
                    sample = asyncio.run(
                        _load(addr, method, jtis, metadata, concurrency, args.seconds, proc, kind)
                    )
                    samples.append(sample)
                    print(
                        f"round {rnd + 1} c={concurrency:<2} {kind:<9} {sample.rate:8.0f}/s"
                        f"  p50 {sample.pct(0.5):7.0f} µs  p99 {sample.pct(0.99):7.0f} µs"
                        f"  server {sample.server_cpu_us_per_call:5.0f} µs/call"
                        + (f"  errors {sample.errors}" if sample.errors else ""),
                        flush=True,
                    )
        check = asyncio.run(_check(st.dsn, relay=args.relay))
        placement = st.placement
    acknowledged = sum(s.calls for s in samples if s.kind.startswith("revoke"))
    print(f"\nstore: {check} (acknowledged in the timed runs: {acknowledged}, plus warm-up)")
    return {
        "machine": machine(server_core, client_cores),
        "placement": placement,
        "relay_in_process": args.relay and not args.relay_process,
        "load_average": os.getloadavg(),
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "store_check": check,
        "samples": [
            {
                "kind": s.kind,
                "concurrency": s.concurrency,
                "calls": s.calls,
                "seconds": s.seconds,
                "rate": s.rate,
                "p50_us": s.pct(0.5),
                "p99_us": s.pct(0.99),
                "server_cpu_us_per_call": s.server_cpu_us_per_call,
                "errors": s.errors,
                "latencies_us": [
                    round(x) for x in s.latencies_us[:: max(1, len(s.latencies_us) // 300)]
                ],
            }
            for s in samples
        ],
    }


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Medians per (concurrency, kind), each rate also as a ratio of the same run's echo."""
    rows = []
    for concurrency in CONCURRENCY:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for s in results["samples"]:
            if s["concurrency"] == concurrency:
                by_kind.setdefault(s["kind"], []).append(s)
        if "echo" not in by_kind:
            continue
        echo_rate = statistics.median(s["rate"] for s in by_kind["echo"])
        ceiling = by_kind.get("ceiling")
        ceiling_rate = statistics.median(s["rate"] for s in ceiling) if ceiling else None
        for kind, runs in by_kind.items():
            rate = statistics.median(s["rate"] for s in runs)
            rows.append(
                {
                    "concurrency": concurrency,
                    "kind": kind,
                    "rate": rate,
                    "vs_echo": rate / echo_rate,
                    "vs_ceiling": rate / ceiling_rate if ceiling_rate else None,
                    "p50_us": statistics.median(s["p50_us"] for s in runs),
                    "p99_us": statistics.median(s["p99_us"] for s in runs),
                    "server_cpu_us_per_call": statistics.median(
                        s["server_cpu_us_per_call"] for s in runs
                    ),
                }
            )
    return rows


NAMES = {
    "echo": "bare echo (same auth metadata)",
    "ceiling": "ceiling: echo + group-committed insert",
    "revoke": "Revoke by jti (durable)",
    "revoke_id": "Revoke by jti with a request_id",
}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "\n| in flight | RPC | calls/s | × echo | × ceiling | p50 µs | p99 µs"
        " | server CPU µs/call |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        vs_ceiling = "" if r.get("vs_ceiling") is None else f"{r['vs_ceiling']:.2f}"
        print(
            f"| {r['concurrency']} | {NAMES[r['kind']]} | {r['rate']:.0f} | {r['vs_echo']:.2f} |"
            f" {vs_ceiling} | {r['p50_us']:.0f} | {r['p99_us']:.0f}"
            f" | {r['server_cpu_us_per_call']:.0f} |"
        )


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(CONCURRENCY), figsize=(10, 4))
    for ax, concurrency in zip(axes, CONCURRENCY, strict=True):
        chosen = [r for r in rows if r["concurrency"] == concurrency]
        ax.bar([r["kind"] for r in chosen], [r["rate"] for r in chosen])
        ax.set_title(f"calls/s, {concurrency} in flight (server on one core)")
    fig.tight_layout()
    fig.savefig(path)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (a smoke run)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--no-relay", dest="relay", action="store_false", help="run the service without its relay"
    )
    parser.add_argument(
        "--relay-process",
        action="store_true",
        help="the relay in a second revocation process on the client cores (a pure API replica)",
    )
    parser.add_argument("--ceiling-server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--reply-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument(
        "--request-ids",
        action="store_true",
        help="also measure revocations that carry a request_id (idempotency record)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the service")
    parser.add_argument(
        "--group-commit", action="store_true", help="the recorder alone: no gRPC, no service"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    add_event_loop_option(parser)
    args = parser.parse_args()
    if args.ceiling_server is not None:
        run_ceiling_server(args.ceiling_server, args.reply_size)
        return 0
    if args.quick:
        args.seconds, args.rounds = 2.0, 2
    use_event_loop(args)
    if args.group_commit:
        group_commit(args)
        return 0
    results = run(args)
    if args.profile:
        print(f"profile: {args.profile} (python -m pstats)")
        return 0
    results["event_loop"] = args.event_loop
    rows = summarize(results)
    results["summary"] = rows
    print_table(rows)
    name = "revocations-relay-process" if args.relay_process else "revocations"
    write_results(args.out, name, results, lambda png: plot(rows, png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
