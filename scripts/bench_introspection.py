"""Benchmark of introspection (docs/spec.md §8): opaque-token introspections/s over gRPC, durable
PostgreSQL, the introspector pinned to one core, next to a bare echo RPC pinned to the same core
and measured in the same run (interleaved rounds, medians).

- warm: 64 tokens introspected over and over (answers come from the positive cache);
- cold: every call introspects a token it has not seen (a SHA-256 lookup in PostgreSQL plus the
  PostgreSQL revocation check).

Targets: warm ≥ 0.85 ×, cold ≥ 0.55 × echo; p99 ≤ 3 × p50 at c=32.

The revocation window (issue 11), after the throughput runs: a token is introspected twice
(cached), revoked through the revocation service (its relay off, so NATS carries no event and
only PostgreSQL's NOTIFY can invalidate), and then introspected at once and again until it
answers inactive. Reported per trial:

- feed: Revoke ack → an outbox feed in this process (the introspector's code, its own LISTEN
  connection) has applied the revocation's seq — the NOTIFY path itself; negative when the
  notification beat the ack to the client;
- visible: Revoke ack → the first ``active: false`` answer from the introspector (one RPC more);
- immediate active: how often the Introspect sent right after the ack still answered active.

Run: ``.venv/bin/python scripts/bench_introspection.py [--quick] [--window N] [--window-only]``;
writes introspection.json (throughput), introspection_window.json and introspection.png under
docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_issuance import (
    Sample,
    _load,
    _register,
    _wait_port,
    add_event_loop_option,
    plot,
    print_table,
    summarize,
    use_event_loop,
)

from tokenry.core.client_secrets import Pepper, hash_secret, pepper_id
from tokenry.core.clients import ADMIN_SCOPE, INTROSPECT_SCOPE, Client
from tokenry.core.keywrap import Kek
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.devstack.ports import free_tcp_port
from tokenry.store.clients import ClientStore
from tokenry.store.outbox import OutboxRow
from tokenry.store.outbox_feed import OutboxFeed
from tokenry.v1 import introspector_pb2, issuer_pb2, revocation_pb2

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = 4
INTROSPECT = "/tokenry.v1.Introspector/Introspect"
REVOKE = "/tokenry.v1.Revocation/Revoke"


@dataclass
class Stack:
    introspector_addr: str
    issuer_addr: str
    revocation_addr: str
    dsn: str
    echo_addr: str
    introspector: subprocess.Popen[bytes]
    echo: subprocess.Popen[bytes]
    client_secret: str
    rs_secret: str


# The introspector limits each caller to 1,000 calls/s per process (core.clientauth.CallerLimiter,
# issue 13 item 8), below what one core serves here: the load's calls take turns over this many
# resource servers. "demo-api" is the tokens' audience; the others see them through the admin
# scope (core.introspection.may_see), which costs the server no more than the audience check.
RESOURCE_SERVERS = ("demo-api", *(f"demo-api-{i}" for i in range(2, 9)))


async def _register_rs(dsn: str, pepper: Pepper, secret: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        for client_id in RESOURCE_SERVERS:
            extra = frozenset() if client_id == "demo-api" else frozenset({ADMIN_SCOPE})
            await ClientStore(pool).upsert(
                Client(
                    client_id=client_id,
                    secret_hash=hash_secret(pepper, secret),
                    pepper_id=pepper.id,
                    grant_types=frozenset({"client_credentials"}),
                    scopes=frozenset({INTROSPECT_SCOPE}) | extra,
                    audiences=("tokenry",),
                )
            )
    finally:
        await pool.close()


_REPLY = ("--reply-size", "200")


def _grind(outdir: Path | None) -> list[str]:
    """The valgrind prefix for a pinned server under callgrind (``--instructions``), or none."""
    if outdir is None:
        return []
    out = f"--callgrind-out-file={outdir}/callgrind.%p"
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", out]


@contextlib.contextmanager
def stack(server_core: int, relay: bool = False, grind: Path | None = None) -> Iterator[Stack]:
    """The services, the introspector and the echo pinned to ``server_core``; with ``grind``,
    those two run under callgrind (counting off until ``callgrind_control -i on``)."""
    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    pg, nats = EmbeddedPostgres(tmp / "pg"), EmbeddedNats(tmp / "nats")  # durable: fsync on
    try:
        pg.start()
        nats.start()
        pepper_text = secrets.token_urlsafe(32)
        pepper = Pepper(pepper_id(pepper_text.encode()), pepper_text.encode())
        client_secret, rs_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        asyncio.run(_register(pg.dsn(), pepper, client_secret))
        asyncio.run(_register_rs(pg.dsn(), pepper, rs_secret))
        ports = {
            name: free_tcp_port()
            for name in ("issuer", "keyrotator", "revocation", "introspector", "echo")
        }
        env = {
            **os.environ,
            "TOKENRY_DEV": "1",
            "TOKENRY_DATABASE_URL": pg.dsn(),
            "TOKENRY_NATS_URL": nats.url,
            "TOKENRY_KEK": Kek.generate().encoded(),
            "TOKENRY_SECRET_PEPPER": pepper_text,
            "TOKENRY_ISSUER_URL": "https://issuer.bench",
            "TOKENRY_LOG_LEVEL": "WARNING",
            "TOKENRY_KEY_SETS": "access:ES256",
            **{f"TOKENRY_{n.upper()}_LISTEN": f"127.0.0.1:{p}" for n, p in ports.items()},
        }
        py = sys.executable
        pin = ["taskset", "-c", str(server_core)] if shutil.which("taskset") else []
        for name in ("keyrotator", "issuer", "revocation"):
            # The revocation service without its relay (unless --with-relay): no event reaches
            # NATS, so in the window runs only PostgreSQL's NOTIFY invalidates the cache.
            extra = {"TOKENRY_RELAY": "0"} if name == "revocation" and not relay else {}
            procs.append(
                subprocess.Popen([py, "-m", f"tokenry.services.{name}"], env={**env, **extra})
            )
            _wait_port(f"127.0.0.1:{ports[name]}", procs[-1])
        introspector = subprocess.Popen(
            [*pin, *_grind(grind), py, "-m", "tokenry.services.introspector"], env=env
        )
        procs.append(introspector)
        issuance = str(ROOT / "scripts" / "bench_issuance.py")
        echo = subprocess.Popen(
            [*pin, *_grind(grind), py, issuance, "--echo-server", str(ports["echo"]), *_REPLY],
            env=env,
        )
        procs.append(echo)
        started = 900.0 if grind else 60.0  # valgrind starts a server many times slower
        _wait_port(f"127.0.0.1:{ports['introspector']}", introspector, started)
        _wait_port(f"127.0.0.1:{ports['echo']}", echo, started)
        yield Stack(
            f"127.0.0.1:{ports['introspector']}",
            f"127.0.0.1:{ports['issuer']}",
            f"127.0.0.1:{ports['revocation']}",
            pg.dsn(),
            f"127.0.0.1:{ports['echo']}",
            introspector,
            echo,
            client_secret,
            rs_secret,
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        nats.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def run_ceiling_server(port: int, reply: bytes) -> None:
    """The in-run ceiling: an echo that does only the warm path's unavoidable work. It parses
    the request, reads the authorization metadata, finds the caller by BLAKE2s of it (a proven
    secret is never kept in clear, core.clientauth.ProvenSecrets) and the answer by BLAKE2s of
    the token (one dict lookup each), and returns the same response bytes the introspector
    sends (rendered once, as it renders a cached answer once)."""
    import hashlib

    callers: dict[bytes, str] = {}
    answers: dict[bytes, bytes] = {}
    parse = introspector_pb2.IntrospectRequest.FromString

    async def introspect(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        token = parse(request).token
        authorization = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                authorization = value
                break
        caller = callers.setdefault(hashlib.blake2s(authorization.encode()).digest(), "rs")
        return (
            answers.setdefault(hashlib.blake2s(token.encode()).digest(), reply) if caller else b""
        )

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(introspect)
        server.add_registered_method_handlers("tokenry.v1.Introspector", {"Introspect": handler})
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _basic(client_id: str, secret: str) -> tuple[tuple[str, str], ...]:
    return (
        ("authorization", "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()),
    )


async def mint(addr: str, secret: str, count: int, token_format: str = "opaque") -> list[str]:
    """Tokens from the real issuer, 32 requests in flight."""
    request = issuer_pb2.TokenRequest(
        grant_type="client_credentials", token_format=token_format
    ).SerializeToString()
    tokens: list[str] = []
    async with grpc.aio.insecure_channel(addr) as ch:
        call: Any = ch.unary_unary("/tokenry.v1.Issuer/Token")

        async def one() -> None:
            while len(tokens) < count:
                raw = await call(request, metadata=_basic("bench", secret), timeout=10)
                tokens.append(issuer_pb2.TokenResponse.FromString(raw).access_token)

        await asyncio.gather(*(one() for _ in range(32)))
    return tokens[:count]


class _Applied:
    """A FeedHandler that notes when each seq was applied (the introspector's handler does
    O(1) dictionary work per row on top of this)."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def apply(self, rows: Sequence[OutboxRow]) -> None:
        now = time.perf_counter()
        for row in rows:
            self.at[row.seq] = now

    def notified(self) -> None:
        pass

    def caught_up(self) -> None:
        pass

    def reset(self) -> None:
        pass


async def window(st: Stack, trials: int, relay: bool = False) -> dict[str, Any]:
    """Revoke ack → invalidated, NOTIFY path (see the module docstring)."""
    path = "NOTIFY and NATS" if relay else "NOTIFY path only; relay off"
    tokens = await mint(st.issuer_addr, st.client_secret, trials - trials // 2, "opaque")
    tokens += await mint(st.issuer_addr, st.client_secret, trials // 2, "jwt")
    recorder = _Applied()
    feed = OutboxFeed(lambda: asyncpg.connect(st.dsn), recorder)
    stop = asyncio.Event()
    following = asyncio.create_task(feed.run(stop))
    feed_ms: list[float] = []
    visible_ms: list[float] = []
    immediate_active = 0
    rs = _basic("demo-api", st.rs_secret)
    owner = _basic("bench", st.client_secret)
    try:
        async with (
            grpc.aio.insecure_channel(st.introspector_addr) as ich,
            grpc.aio.insecure_channel(st.revocation_addr) as rch,
        ):
            introspect: Any = ich.unary_unary(INTROSPECT)
            revoke: Any = rch.unary_unary(REVOKE)

            async def active(token: str) -> bool:
                req = introspector_pb2.IntrospectRequest(token=token).SerializeToString()
                raw = await introspect(req, metadata=rs, timeout=10)
                return bool(introspector_pb2.IntrospectResponse.FromString(raw).active)

            for token in tokens:
                if not (await active(token) and await active(token)):  # now cached
                    raise RuntimeError("a fresh token was not active")
                req = revocation_pb2.RevokeRequest(token=token).SerializeToString()
                raw = await revoke(req, metadata=owner, timeout=10)
                acked = time.perf_counter()
                seq = revocation_pb2.RevokeResponse.FromString(raw).seq
                first = True
                while await active(token):
                    immediate_active += first
                    first = False
                visible_ms.append((time.perf_counter() - acked) * 1000)
                await asyncio.wait_for(feed.applied.reached(seq), 10)
                feed_ms.append((recorder.at[seq] - acked) * 1000)
    finally:
        stop.set()
        await following

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]

    result: dict[str, Any] = {
        "trials": len(tokens),
        "paths": path,
        "feed_ms": {"p50": pct(feed_ms, 0.5), "p99": pct(feed_ms, 0.99), "max": max(feed_ms)},
        "visible_ms": {
            "p50": pct(visible_ms, 0.5),
            "p99": pct(visible_ms, 0.99),
            "max": max(visible_ms),
        },
        "immediate_active": immediate_active,
        "feed_samples_ms": [round(x, 3) for x in feed_ms],
        "visible_samples_ms": [round(x, 3) for x in visible_ms],
    }
    print(
        f"window over {len(tokens)} revocations ({path}):"
        f"\n  Revoke ack → feed applied:         p50 {result['feed_ms']['p50']:6.2f} ms"
        f"  p99 {result['feed_ms']['p99']:6.2f} ms  max {result['feed_ms']['max']:6.2f} ms"
        f"\n  Revoke ack → Introspect inactive:  p50 {result['visible_ms']['p50']:6.2f} ms"
        f"  p99 {result['visible_ms']['p99']:6.2f} ms  max {result['visible_ms']['max']:6.2f} ms"
        f"\n  immediate Introspect still active: {immediate_active} of {len(tokens)}",
        flush=True,
    )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    os.sched_setaffinity(0, [c for c in cores if c != server_core] or cores)
    with stack(server_core, relay=args.with_relay) as st:
        if args.window_only:
            return {"window": asyncio.run(window(st, args.window, args.with_relay))}
        cold_needed = int(args.rounds * 2 * args.seconds * 4000) + 1000
        print(f"minting {cold_needed} opaque tokens through the issuer…", flush=True)
        tokens = asyncio.run(mint(st.issuer_addr, st.client_secret, cold_needed))
        warm = tokens[:64]
        cold = iter(tokens[64:])
        warm_i = 0

        def warm_request() -> bytes:
            nonlocal warm_i
            warm_i += 1
            return introspector_pb2.IntrospectRequest(
                token=warm[warm_i % len(warm)]
            ).SerializeToString()

        def cold_request() -> bytes:
            return introspector_pb2.IntrospectRequest(token=next(cold)).SerializeToString()

        def echo_request() -> bytes:
            return introspector_pb2.IntrospectRequest(token=warm[0]).SerializeToString()

        callers = [_basic(client_id, st.rs_secret) for client_id in RESOURCE_SERVERS]
        turn = 0

        def metadata() -> tuple[tuple[str, str], ...]:
            nonlocal turn
            turn += 1
            return callers[turn % len(callers)]

        # The ceiling gets the introspector's own answer for a warm token, as bytes.
        with grpc.insecure_channel(st.introspector_addr) as ch:
            reply: bytes = ch.unary_unary(INTROSPECT)(
                warm_request(), metadata=callers[0], timeout=10
            )
        ceiling_port = free_tcp_port()
        pin = ["taskset", "-c", str(server_core)] if shutil.which("taskset") else []
        ceiling = subprocess.Popen(
            [*pin, sys.executable, __file__, "--ceiling-server", str(ceiling_port), reply.hex()]
        )
        _wait_port(f"127.0.0.1:{ceiling_port}", ceiling)
        kinds: dict[str, tuple[str, str, Callable[[], bytes], psutil.Process]] = {
            "ceiling": (
                f"127.0.0.1:{ceiling_port}",
                INTROSPECT,
                warm_request,
                psutil.Process(ceiling.pid),
            ),
            "echo": (st.echo_addr, "/bench.Echo/Echo", echo_request, psutil.Process(st.echo.pid)),
            "warm": (
                st.introspector_addr,
                INTROSPECT,
                warm_request,
                psutil.Process(st.introspector.pid),
            ),
            "cold": (
                st.introspector_addr,
                INTROSPECT,
                cold_request,
                psutil.Process(st.introspector.pid),
            ),
        }
        samples: list[Sample] = []
        for rnd in range(args.rounds):
            for concurrency in (1, 32):
                order = list(kinds)[rnd % len(kinds) :] + list(kinds)[: rnd % len(kinds)]
                for kind in order:
                    addr, method, request, proc = kinds[kind]
                    sample = asyncio.run(
                        _load(
                            addr, method, request, metadata, concurrency, args.seconds, proc, kind
                        )
                    )
                    samples.append(sample)
                    print(
                        f"round {rnd + 1} c={concurrency:<2} {kind:<5} {sample.rate:8.0f}/s"
                        f"  p50 {sample.pct(0.5):7.0f} µs  p99 {sample.pct(0.99):7.0f} µs"
                        f"  server {sample.server_cpu_us_per_call:5.0f} µs/call"
                        + (f"  errors {sample.errors}" if sample.errors else ""),
                        flush=True,
                    )
        ceiling.terminate()
        ceiling.wait(10)
        measured = asyncio.run(window(st, args.window, args.with_relay)) if args.window else None
    return {
        "window": measured,
        "server_core": server_core,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "samples": [
            {
                "kind": s.kind,
                "concurrency": s.concurrency,
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


def _dump(pid: int, outdir: Path) -> int:
    """``callgrind_control -d``: the instructions counted since the last zeroing."""
    before = set(outdir.glob("callgrind.*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = set(outdir.glob("callgrind.*")) - before
        if new:
            time.sleep(1.0)  # let the writer finish
            dump = new.pop()
            for line in dump.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise TimeoutError(f"no callgrind dump in {outdir}")


def _patiently(load: tuple[Any, ...], attempts: int = 3, zero: int | None = None) -> Sample:
    """``_load(*load)`` again when one of its first calls outlives its deadline: under valgrind
    the first calls of a code path can take seconds (translation), whatever the load. With
    ``zero``, that process's counts are zeroed before each attempt."""
    for attempt in range(attempts):
        if zero is not None:
            subprocess.run(["callgrind_control", "-z", str(zero)], check=True)
        try:
            return asyncio.run(_load(*load))
        except grpc.RpcError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def instructions(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--instructions: executed instructions per call of the pinned servers under callgrind at
    c = ``--concurrency`` (what a shared machine cannot blur). Per kind: a warm-up load, then
    ``callgrind_control -z``, a ``--seconds`` load, ``-d``; the same server's instructions over
    an idle window of the same length (its timers: key refresh, outbox feed poll) are
    subtracted. Dumps stay in ``--grind-dir`` for callgrind_annotate."""
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    os.sched_setaffinity(0, [c for c in cores if c != server_core] or cores)
    outdir: Path = args.grind_dir
    outdir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    with stack(server_core, grind=outdir) as st:
        tokens = asyncio.run(mint(st.issuer_addr, st.client_secret, args.cold_tokens))
        warm, cold = tokens[:64], iter(tokens[64:])
        warm_i = 0

        def warm_request() -> bytes:
            nonlocal warm_i
            warm_i += 1
            return introspector_pb2.IntrospectRequest(
                token=warm[warm_i % len(warm)]
            ).SerializeToString()

        def cold_request() -> bytes:
            return introspector_pb2.IntrospectRequest(token=next(cold)).SerializeToString()

        callers = [_basic(client_id, st.rs_secret) for client_id in RESOURCE_SERVERS]
        turn = 0

        def metadata() -> tuple[tuple[str, str], ...]:
            nonlocal turn
            turn += 1
            return callers[turn % len(callers)]

        with grpc.insecure_channel(st.introspector_addr) as ch:
            reply: bytes = ch.unary_unary(INTROSPECT)(
                warm_request(), metadata=callers[0], timeout=10
            )
        ceiling_port = free_tcp_port()
        pin = ["taskset", "-c", str(server_core)] if shutil.which("taskset") else []
        ceiling = subprocess.Popen(
            [
                *pin,
                *_grind(outdir),
                sys.executable,
                __file__,
                "--ceiling-server",
                str(ceiling_port),
                reply.hex(),
            ]
        )
        try:
            _wait_port(f"127.0.0.1:{ceiling_port}", ceiling, 900.0)
            kinds = {
                "echo": (st.echo_addr, "/bench.Echo/Echo", warm_request, st.echo.pid),
                "ceiling": (f"127.0.0.1:{ceiling_port}", INTROSPECT, warm_request, ceiling.pid),
                "warm": (st.introspector_addr, INTROSPECT, warm_request, st.introspector.pid),
                "cold": (st.introspector_addr, INTROSPECT, cold_request, st.introspector.pid),
            }
            for pid in {k[3] for k in kinds.values()}:
                subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True)
            for kind in args.kinds.split(","):
                addr, method, request, pid = kinds[kind]
                proc = psutil.Process(pid)
                subprocess.run(["callgrind_control", "-z", str(pid)], check=True)
                time.sleep(args.seconds)
                idle = _dump(pid, outdir)
                load = (addr, method, request, metadata, args.concurrency)
                # Code run for the first time under valgrind is slow to translate: a few
                # calls one at a time first, then a warm-up load, neither counted.
                with grpc.insecure_channel(addr) as ch:
                    for _ in range(8):
                        ch.unary_unary(method)(request(), metadata=metadata(), timeout=300)
                _patiently((*load, 2.0, proc, kind))
                sample = _patiently((*load, args.seconds, proc, kind), zero=pid)
                total = _dump(pid, outdir)
                calls = sample.calls + CHANNELS * 20  # _load's own warm-up calls count too
                row = {
                    "kind": kind,
                    "concurrency": args.concurrency,
                    "calls": calls,
                    "errors": sample.errors,
                    "instructions_per_call": round((total - idle) / calls),
                    "idle_instructions": idle,
                }
                results.append(row)
                print(json.dumps(row), flush=True)
        finally:
            ceiling.terminate()
            ceiling.wait(30)
    return results


KINDS = ("echo", "ceiling", "warm", "cold")
NAMES = {
    "echo": "bare echo",
    "ceiling": "ceiling: echo + the warm path's unavoidable work",
    "warm": "Introspect, warm cache",
    "cold": "Introspect, cold (PostgreSQL)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (a smoke run)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument(
        "--window", type=int, default=200, help="revocations timed for the window (0: none)"
    )
    parser.add_argument(
        "--window-only", action="store_true", help="only the window, no throughput runs"
    )
    parser.add_argument(
        "--with-relay",
        action="store_true",
        help="run the outbox relay: NATS events invalidate too (the window of both paths)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instructions per call of each pinned server under callgrind instead of timing",
    )
    parser.add_argument("--kinds", default="echo,ceiling,warm,cold", help="with --instructions")
    parser.add_argument("--concurrency", type=int, default=32, help="with --instructions")
    parser.add_argument("--cold-tokens", type=int, default=6000, help="with --instructions")
    parser.add_argument(
        "--grind-dir", type=Path, default=Path("/tmp/tokenry-intro-grind"), help="callgrind dumps"
    )
    parser.add_argument("--ceiling-server", nargs=2, default=None, help=argparse.SUPPRESS)
    add_event_loop_option(parser)
    args = parser.parse_args()
    if args.ceiling_server is not None:
        run_ceiling_server(int(args.ceiling_server[0]), bytes.fromhex(args.ceiling_server[1]))
        return 0
    if args.quick:
        args.seconds, args.rounds = 2.0, 2
    use_event_loop(args)
    if args.instructions:
        instructions(args)
        return 0
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    measured = results.pop("window")
    if measured is not None:
        measured["event_loop"] = args.event_loop
        (args.out / "introspection_window.json").write_text(json.dumps(measured, indent=1))
        print(f"window: {args.out / 'introspection_window.json'}")
    if args.window_only:
        return 0
    results["event_loop"] = args.event_loop
    results["summary"] = summarize(results, KINDS)
    print_table(results["summary"], NAMES)
    for c in (1, 32):
        rate = {r["kind"]: r["rate"] for r in results["summary"] if r["concurrency"] == c}
        print(
            f"c={c}: warm / ceiling {rate['warm'] / rate['ceiling']:.3f},"
            f" cold / ceiling {rate['cold'] / rate['ceiling']:.3f}"
        )
    (args.out / "introspection.json").write_text(json.dumps(results, indent=1))
    plotted = plot(results["summary"], args.out / "introspection.png", "introspections/s")
    print(f"\nraw samples: {args.out / 'introspection.json'}")
    print(f"plot: {args.out / 'introspection.png'}" if plotted else "plot: skipped (no matplotlib)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
