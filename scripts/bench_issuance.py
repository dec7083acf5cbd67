"""Benchmark of issuance (docs/spec.md §8): client-credentials tokens/s over gRPC, JWT (ES256) and
opaque, with the issuer pinned to one core, next to a bare grpc.aio echo RPC pinned to the same
core and measured in the same run (A/B interleaved, medians of several rounds).

Setup: embedded PostgreSQL and NATS in a temporary folder (unpinned), the key rotator (unpinned;
it creates the ES256 access key and runs the event relay), the issuer as its own process under
``taskset -c <server core>``, and an echo server the same way. The load generator runs in this
process on another core: ``c`` concurrent callers over 4 channels, each call authenticated with
client_secret_basic exactly like a real client; the echo call sends the same request bytes and
metadata and returns as many bytes as a token response. Server CPU per call comes from the
server process's own CPU time (psutil).

A second echo server, pinned the same way, makes one ES256 signature per call and nothing else:
the ceiling a zero-overhead issuer could reach on this machine, measured in the same run.
``--event-loop uvloop`` runs every pinned server (Tokenry's and both echoes) on uvloop.

Targets: issuance (JWT) ≥ 0.8 × echo throughput; p99 ≤ 3 × p50 at c=32.

``--tls`` runs every pinned server (the issuer and both echoes) with TLS from a throwaway CA
(servicekit's reloading credentials, as in production) and the load generator over TLS
channels, so the ratios are against a TLS echo in the same run (docs/spec.md §8 "TLS on"); its
results go to issuance-tls.json / issuance-tls.png.

Run: ``.venv/bin/python scripts/bench_issuance.py [--quick] [--seconds S] [--rounds N] [--tls]``.
Writes issuance.json (raw samples) and issuance.png (if matplotlib is installed) under
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
from benchkit import machine

from tokenry.core.client_secrets import Pepper, hash_secret, pepper_id
from tokenry.core.clients import CLIENT_CREDENTIALS, Client
from tokenry.core.keywrap import Kek
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.devstack.ports import free_tcp_port
from tokenry.store.clients import ClientStore
from tokenry.store.migrate import migrate
from tokenry.tls import ClientTls
from tokenry.v1 import issuer_pb2

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "bench"
CHANNELS = 4
ECHO_METHOD = "/bench.Echo/Echo"


# --- the echo server (run as a child: `bench_issuance.py --echo-server PORT`) -------------------


def run_echo_server(port: int, reply_size: int, sign: bool = False) -> None:
    """The baseline; with ``sign``, the ceiling: the same echo plus one ES256 signature per call,
    made as the issuer makes it (cryptography's ECDSA P-256/SHA-256, DER re-encoded as r‖s)."""
    reply = b"x" * reply_size
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.hazmat.primitives.hashes import SHA256

    key, ecdsa = ec.generate_private_key(ec.SECP256R1()), ec.ECDSA(SHA256())
    signing_input = b"e" * (reply_size * 3 // 4)  # a token's header.payload is about that long

    async def echo(_request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        if sign:
            r, s = decode_dss_signature(key.sign(signing_input, ecdsa))
            _ = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return reply

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        cert = os.environ.get("TOKENRY_TLS_CERT")
        if cert:  # --tls: the same reloading credentials as the services
            from tokenry.servicekit.tls import ServerTls, Transport, add_listener

            files = ServerTls(Path(cert), Path(os.environ["TOKENRY_TLS_KEY"]))
            add_listener(server, "127.0.0.1", port, Transport(files))
        else:
            server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    # The same loop as the services under test (--event-loop sets TOKENRY_EVENT_LOOP for all).
    if os.environ.get("TOKENRY_EVENT_LOOP") == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def add_event_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--event-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the loop of every pinned server, Tokenry's and the echo alike (TOKENRY_EVENT_LOOP)",
    )


def use_event_loop(args: argparse.Namespace) -> None:
    """Every server this benchmark starts inherits the environment: services and echo alike."""
    os.environ["TOKENRY_EVENT_LOOP"] = args.event_loop
    if args.event_loop != "asyncio" and args.out == ROOT / "docs" / "benchmarks":
        args.out = args.out / args.event_loop  # the docs/spec.md §8 figures stay the asyncio ones


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    issuer_addr: str
    echo_addr: str
    issuer: subprocess.Popen[bytes]
    echo: subprocess.Popen[bytes]
    secret: str
    signing_echo_addr: str = ""
    signing_echo: subprocess.Popen[bytes] | None = None
    tls: ClientTls | None = None


def _channel(addr: str, tls: ClientTls | None, options: list[tuple[str, Any]] | None = None) -> Any:
    """A grpc.aio channel, TLS when ``tls`` is given (--tls)."""
    if tls is None:
        return grpc.aio.insecure_channel(addr, options=options)
    return tls.aio_channel(addr, options=options)


def _wait_port(
    addr: str,
    proc: subprocess.Popen[bytes],
    timeout: float = 60.0,
    tls: ClientTls | None = None,
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(addr) if tls is None else tls.secure_channel(addr) as channel:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server for {addr} exited with {proc.returncode}")
            try:
                resp = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # the echo server: it is up
                    return
            time.sleep(0.1)
    raise TimeoutError(f"{addr} not serving after {timeout}s")


async def _register(dsn: str, pepper: Pepper, secret: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await ClientStore(pool).upsert(
            Client(
                client_id=CLIENT_ID,
                secret_hash=hash_secret(pepper, secret),
                pepper_id=pepper.id,
                grant_types=frozenset({CLIENT_CREDENTIALS}),
                scopes=frozenset({"demo.read", "demo.write"}),
                audiences=("demo-api",),
            )
        )
    finally:
        await pool.close()


@contextlib.contextmanager
def stack(
    server_core: int, reply_size: int, *, tls: bool = False, grind: str = "", grind_dir: str = ""
) -> Iterator[Stack]:
    """The services and echo servers; with ``grind`` ("jwt": the issuer, "sign": the ceiling
    echo), that one pinned server runs under valgrind's callgrind (counting off until told,
    dumps in ``grind_dir``)."""
    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-"))
    client_tls: ClientTls | None = None
    tls_env: dict[str, str] = {}
    if tls:
        from tokenry.devstack.ca import dev_pki

        pki = dev_pki(tmp / "tls", ["server"])
        client_tls = ClientTls(pki.ca)
        tls_env = {
            "TOKENRY_TLS_CERT": str(pki.cert("server")),
            "TOKENRY_TLS_KEY": str(pki.key("server")),
            "TOKENRY_TLS_CA": str(pki.ca),
        }
    procs: list[subprocess.Popen[bytes]] = []
    pg = EmbeddedPostgres(tmp / "pg", fsync=False)
    nats = EmbeddedNats(tmp / "nats")
    try:
        pg.start()
        nats.start()
        pepper_text = secrets.token_urlsafe(32)
        pepper = Pepper(pepper_id(pepper_text.encode()), pepper_text.encode())
        secret = secrets.token_urlsafe(32)
        asyncio.run(_register(pg.dsn(), pepper, secret))
        issuer_port, rotator_port, echo_port, sign_port = (free_tcp_port() for _ in range(4))
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
            "TOKENRY_ISSUER_LISTEN": f"127.0.0.1:{issuer_port}",
            "TOKENRY_KEYROTATOR_LISTEN": f"127.0.0.1:{rotator_port}",
            **tls_env,
        }
        py = sys.executable
        rotator = subprocess.Popen([py, "-m", "tokenry.services.keyrotator"], env=env)
        procs.append(rotator)
        _wait_port(f"127.0.0.1:{rotator_port}", rotator, tls=client_tls)
        pin = ["taskset", "-c", str(server_core)] if shutil.which("taskset") else []
        wrap = {kind: [*pin, *_callgrind(grind_dir)] if grind == kind else pin for kind in KINDS}
        wait = 900.0 if grind else 60.0  # valgrind starts a server many times slower
        issuer = subprocess.Popen([*wrap["jwt"], py, "-m", "tokenry.services.issuer"], env=env)
        procs.append(issuer)
        echo = subprocess.Popen(
            [*pin, py, __file__, "--echo-server", str(echo_port), "--reply-size", str(reply_size)],
            env=env,
        )
        procs.append(echo)
        sign_args = ["--echo-server", str(sign_port), "--reply-size", str(reply_size), "--sign"]
        signing = subprocess.Popen([*wrap["sign"], py, __file__, *sign_args], env=env)
        procs.append(signing)
        _wait_port(f"127.0.0.1:{issuer_port}", issuer, wait, tls=client_tls)
        _wait_port(f"127.0.0.1:{echo_port}", echo, tls=client_tls)
        _wait_port(f"127.0.0.1:{sign_port}", signing, wait, tls=client_tls)
        yield Stack(
            env,
            f"127.0.0.1:{issuer_port}",
            f"127.0.0.1:{echo_port}",
            issuer,
            echo,
            secret,
            f"127.0.0.1:{sign_port}",
            signing,
            client_tls,
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


# --- the load ------------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    concurrency: int
    calls: int
    seconds: float
    latencies_us: list[float]
    server_cpu_us_per_call: float
    errors: int

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(
    addr: str,
    method: str,
    request: bytes | Callable[[], bytes],
    metadata: tuple[tuple[str, str], ...] | Callable[[], tuple[tuple[str, str], ...]],
    concurrency: int,
    seconds: float,
    server: psutil.Process,
    kind: str,
    tls: ClientTls | None = None,
) -> Sample:
    channels = [
        _channel(addr, tls, [("grpc.use_local_subchannel_pool", 1)]) for _ in range(CHANNELS)
    ]
    calls: list[Any] = [ch.unary_unary(method) for ch in channels]
    # A fixed request, or a factory (e.g. a token never seen before, for a cold cache).
    next_request = request if callable(request) else (lambda: request)
    # Fixed metadata, or a factory (e.g. callers taking turns, bench_introspection).
    next_metadata = metadata if callable(metadata) else (lambda: metadata)
    try:
        for call in calls:  # warm every connection
            for _ in range(20):
                await call(next_request(), metadata=next_metadata(), timeout=10)
        latencies: list[float] = []
        errors = 0
        stop_at = 0.0

        async def worker(index: int) -> None:
            nonlocal errors
            call = calls[index % CHANNELS]
            perf = time.perf_counter
            while perf() < stop_at:
                body, meta = next_request(), next_metadata()
                started = perf()
                try:
                    await call(body, metadata=meta, timeout=10)
                except grpc.RpcError:
                    errors += 1
                    continue
                latencies.append((perf() - started) * 1e6)

        cpu0 = server.cpu_times()
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu1 = server.cpu_times()
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        n = len(latencies)
        return Sample(kind, concurrency, n, elapsed, latencies, cpu / max(n, 1) * 1e6, errors)
    finally:
        for ch in channels:
            await ch.close()


def _token_request(fmt: str) -> bytes:
    return issuer_pb2.TokenRequest(
        grant_type="client_credentials", scope="demo.read", token_format=fmt
    ).SerializeToString()


async def _reply_size(
    addr: str, metadata: tuple[tuple[str, str], ...], tls: ClientTls | None = None
) -> int:
    async with _channel(addr, tls) as ch:
        call: Any = ch.unary_unary("/tokenry.v1.Issuer/Token")
        resp: bytes = await call(_token_request("jwt"), metadata=metadata, timeout=10)
    return len(resp)


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    client_cores = [c for c in cores if c != server_core] or cores
    os.sched_setaffinity(0, client_cores)
    with stack(server_core, reply_size=700, tls=args.tls) as st:
        basic = base64.b64encode(f"{CLIENT_ID}:{st.secret}".encode()).decode()
        metadata = (("authorization", f"Basic {basic}"),)
        size = asyncio.run(_reply_size(st.issuer_addr, metadata, st.tls))
        issuer_proc = psutil.Process(st.issuer.pid)
        echo_proc = psutil.Process(st.echo.pid)
        assert st.signing_echo is not None
        kinds = {
            "echo": (st.echo_addr, ECHO_METHOD, _token_request("jwt"), echo_proc),
            "sign": (
                st.signing_echo_addr,
                ECHO_METHOD,
                _token_request("jwt"),
                psutil.Process(st.signing_echo.pid),
            ),
            "jwt": (st.issuer_addr, "/tokenry.v1.Issuer/Token", _token_request("jwt"), issuer_proc),
            "opaque": (
                st.issuer_addr,
                "/tokenry.v1.Issuer/Token",
                _token_request("opaque"),
                issuer_proc,
            ),
        }
        samples: list[Sample] = []
        for rnd in range(args.rounds):
            for concurrency in (1, 32):
                # Interleaved A/B: echo, jwt, opaque each round, order rotated.
                order = list(kinds)
                order = order[rnd % len(order) :] + order[: rnd % len(order)]
                for kind in order:
                    addr, method, request, proc = kinds[kind]
                    sample = asyncio.run(
                        _load(
                            addr,
                            method,
                            request,
                            metadata,
                            concurrency,
                            args.seconds,
                            proc,
                            kind,
                            tls=st.tls,
                        )
                    )
                    samples.append(sample)
                    print(
                        f"round {rnd + 1} c={concurrency:<2} {kind:<6} {sample.rate:8.0f}/s"
                        f"  p50 {sample.pct(0.5):7.0f} µs  p99 {sample.pct(0.99):7.0f} µs"
                        f"  server {sample.server_cpu_us_per_call:5.0f} µs/call"
                        + (f"  errors {sample.errors}" if sample.errors else ""),
                        flush=True,
                    )
    return {
        "machine": machine(server_core, client_cores),
        "token_response_bytes": size,
        "tls": args.tls,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
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
                # every n-th latency, ~300 per run: the distribution, not megabytes
                "latencies_us": [
                    round(x) for x in s.latencies_us[:: max(1, len(s.latencies_us) // 300)]
                ],
            }
            for s in samples
        ],
    }


KINDS = ("echo", "sign", "jwt", "opaque")
NAMES = {
    "echo": "bare echo",
    "sign": "echo + one ES256 signature (ceiling)",
    "jwt": "Token, JWT ES256",
    "opaque": "Token, opaque",
}


def summarize(results: dict[str, Any], kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    """Medians per (concurrency, kind), each rate also as a ratio of the same run's echo."""
    rows = []
    for concurrency in (1, 32):
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for s in results["samples"]:
            if s["concurrency"] == concurrency:
                by_kind.setdefault(s["kind"], []).append(s)
        echo_rate = statistics.median(s["rate"] for s in by_kind["echo"])
        for kind in kinds:
            runs = by_kind[kind]
            rate = statistics.median(s["rate"] for s in runs)
            p50 = statistics.median(s["p50_us"] for s in runs)
            p99 = statistics.median(s["p99_us"] for s in runs)
            rows.append(
                {
                    "concurrency": concurrency,
                    "kind": kind,
                    "rate": rate,
                    "vs_echo": rate / echo_rate,
                    "p50_us": p50,
                    "p99_us": p99,
                    "p99_over_p50": p99 / p50,
                    "server_cpu_us_per_call": statistics.median(
                        s["server_cpu_us_per_call"] for s in runs
                    ),
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]], names: dict[str, str] = NAMES) -> None:
    print("\n| c | RPC | calls/s | × echo | p50 µs | p99 µs | p99/p50 | server CPU µs/call |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['concurrency']} | {names[r['kind']]} | {r['rate']:.0f} | {r['vs_echo']:.2f} |"
            f" {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['p99_over_p50']:.2f} |"
            f" {r['server_cpu_us_per_call']:.0f} |"
        )


def plot(rows: list[dict[str, Any]], path: Path, what: str = "calls/s") -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, concurrency in zip(axes, (1, 32), strict=True):
        chosen = [r for r in rows if r["concurrency"] == concurrency]
        ax.bar([r["kind"] for r in chosen], [r["rate"] for r in chosen])
        ax.set_title(f"{what} at c={concurrency} (server on one core)")
    fig.tight_layout()
    fig.savefig(path)
    return True


# --- instructions per call (--callgrind) ----------------------------------------------------------


def _callgrind(folder: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={folder}/callgrind.%p",
    ]


def _callgrind_dump(pid: int, folder: Path, name: str) -> int:
    """Dump the counts since the last zeroing to ``folder/name``; the instructions counted."""
    before = set(folder.glob("callgrind.*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while not (new := set(folder.glob("callgrind.*")) - before):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no callgrind dump in {folder}")
        time.sleep(0.2)
    time.sleep(1.0)  # callgrind writes its dump asynchronously
    dump = new.pop().rename(folder / name)
    totals = [x for x in dump.read_text().splitlines() if x.startswith(("summary:", "totals:"))]
    return int(totals[0].split()[1])


def run_callgrind(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--callgrind KIND: the executed instructions per call of one pinned server ("jwt": the
    issuer, "sign": the ceiling echo) under the same load as the timed runs, which a shared
    machine cannot blur: counting zeroed after a 3 s warm-up, then ``--seconds`` of load at
    c = 32 and c = 1; first the same length idle, whose count per second is also reported less
    (background work: maintenance, the clock gate, keepalives). The dumps stay in a folder
    (printed) for ``callgrind_annotate --inclusive=yes``; compare the issuer's to the ceiling's
    function by function."""
    kind = args.callgrind
    folder = Path(tempfile.mkdtemp(prefix=f"tokenry-callgrind-{kind}-"))
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, [c for c in cores if c != cores[0]] or cores)
    rows: list[dict[str, Any]] = []
    with stack(cores[0], reply_size=700, grind=kind, grind_dir=str(folder)) as st:
        basic = base64.b64encode(f"{CLIENT_ID}:{st.secret}".encode()).decode()
        metadata = (("authorization", f"Basic {basic}"),)
        server = st.issuer if kind == "jwt" else st.signing_echo
        assert server is not None
        addr = st.issuer_addr if kind == "jwt" else st.signing_echo_addr
        method = "/tokenry.v1.Issuer/Token" if kind == "jwt" else ECHO_METHOD
        pid, proc = server.pid, psutil.Process(server.pid)  # taskset execs valgrind: same pid

        def control(*flags: str) -> None:
            subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)

        def load(concurrency: int, seconds: float) -> Sample:
            request = _token_request("jwt")
            run = _load(addr, method, request, metadata, concurrency, seconds, proc, kind)
            return asyncio.run(run)

        control("-i", "on")
        control("-z")
        time.sleep(args.seconds)
        idle = _callgrind_dump(pid, folder, "idle.out") / args.seconds
        for concurrency in (32, 1):
            load(concurrency, 3.0)  # warm-up, not counted
            control("-z")
            sample = load(concurrency, args.seconds)
            counted = _callgrind_dump(pid, folder, f"c{concurrency}.out")
            calls = sample.calls + CHANNELS * 20  # _load's warm-up calls are counted too
            rows.append(
                {
                    "kind": kind,
                    "concurrency": concurrency,
                    "calls": calls,
                    "errors": sample.errors,
                    "instructions_per_call": round(counted / calls),
                    "less_idle": round((counted - idle * sample.seconds) / calls),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(f"callgrind dumps: {folder}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (a smoke run)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--echo-server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--reply-size", type=int, default=700, help=argparse.SUPPRESS)
    parser.add_argument("--sign", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tls", action="store_true", help="every pinned server and the load over TLS"
    )
    parser.add_argument(
        "--callgrind",
        choices=("jwt", "sign"),
        help="instructions per call of the issuer (jwt) or the ceiling echo (sign) under "
        "valgrind instead (--seconds of load per concurrency; 15 s is a good length)",
    )
    add_event_loop_option(parser)
    args = parser.parse_args()
    if args.echo_server is not None:
        run_echo_server(args.echo_server, args.reply_size, args.sign)
        return 0
    if args.quick:
        args.seconds, args.rounds = 2.0, 2
    use_event_loop(args)
    if args.callgrind:
        run_callgrind(args)
        return 0
    results = run(args)
    results["event_loop"] = args.event_loop
    rows = summarize(results)
    results["summary"] = rows
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "issuance-tls" if args.tls else "issuance"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    plotted = plot(rows, args.out / f"{name}.png")
    print(f"\nraw samples: {args.out / f'{name}.json'}")
    print(f"plot: {args.out / f'{name}.png'}" if plotted else "plot: skipped (no matplotlib)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
