"""Benchmark: what telemetry costs on issuance (docs/spec.md §8 "telemetry on", issue 15).

Three issuers against the same PostgreSQL, NATS and key rotator, each pinned to the same core
(one at a time under load), measured A/B/C interleaved in the same run, medians of rounds:

- ``off``: no OTEL_* variables (the default: no SDK installed);
- ``on``: Tokenry's telemetry as an operator would run it: OTLP traces sampled at 1 % at the
  gRPC edge, OTLP metrics every 10 s and the Prometheus scrape endpoint on;
- ``scrape``: metrics on the Prometheus scrape endpoint only (no OTLP exporter, no traces);
- ``contrib``: the same metrics, but traces from the OpenTelemetry gRPC instrumentation
  (opentelemetry-instrumentation-grpc's aio server interceptor) with the SDK's
  ``parentbased_traceidratio`` sampler at 1 % — the alternative the lean wrapper replaced.

The OTLP endpoint is a real OTLP/gRPC receiver in this process (tests/integration/
otlp_support.py) that discards what it receives. Load: client-credentials JWT (ES256) tokens,
``c`` concurrent callers over 4 connections (scripts/bench_issuance.py's load generator).

Target: ``on`` ≥ 0.95 × ``off`` (tokens/s), i.e. telemetry costs ≤ 5 %.

Run: ``.venv/bin/python scripts/bench_telemetry.py [--quick] [--seconds S] [--rounds N]``;
writes docs/benchmarks/telemetry.json (raw samples).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests" / "integration")]

import bench_issuance as bi  # noqa: E402
from benchkit import machine, new_pepper, service_env, stop_stack  # noqa: E402
from otlp_support import OtlpReceiver  # noqa: E402

from tokenry.core.keywrap import Kek  # noqa: E402
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres  # noqa: E402
from tokenry.devstack.ports import free_tcp_port  # noqa: E402

TOKEN = "/tokenry.v1.Issuer/Token"
CONTRIB = (
    "from opentelemetry import trace;"
    "from opentelemetry.sdk.trace import TracerProvider;"
    "from opentelemetry.sdk.trace.export import BatchSpanProcessor;"
    "from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio;"
    "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter;"
    "p = TracerProvider(sampler=ParentBasedTraceIdRatio(0.01));"
    "p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()));"
    "trace.set_tracer_provider(p);"
    "from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer;"
    "GrpcAioInstrumentorServer().instrument();"
    "import runpy; runpy.run_module('tokenry.services.issuer', run_name='__main__')"
)
# Tokenry's telemetry (installed by the issuer from OTEL_*), plus the asyncpg instrumentation
# on its own provider at 1 % (opentelemetry-instrumentation-asyncpg: a span object per query).
CONTRIB_PG = (
    "from opentelemetry.sdk.trace import TracerProvider;"
    "from opentelemetry.sdk.trace.export import BatchSpanProcessor;"
    "from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio;"
    "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter;"
    "p = TracerProvider(sampler=ParentBasedTraceIdRatio(0.01));"
    "p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()));"
    "from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor;"
    "AsyncPGInstrumentor().instrument(tracer_provider=p);"
    "import runpy; runpy.run_module('tokenry.services.issuer', run_name='__main__')"
)


#: opentelemetry-instrumentation-asyncpg is not a dependency of Tokenry (it lost to the query
#: spans of store.db): install it by hand (pip install opentelemetry-instrumentation-asyncpg)
#: to measure it; without it, its variants are skipped.
_HAVE_CONTRIB_PG = importlib.util.find_spec("opentelemetry.instrumentation.asyncpg") is not None


def _sink_thread() -> tuple[str, OtlpReceiver]:
    """An OTLP receiver on its own event loop thread (the load runs asyncio.run per sample)."""
    sink = OtlpReceiver(keep=False)
    ready: list[str] = []
    started = threading.Event()

    def serve() -> None:
        async def main() -> None:
            ready.append(await sink.start())
            started.set()
            await asyncio.Event().wait()

        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    started.wait(30)
    return ready[0], sink


def run(args: argparse.Namespace) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    server_core = cores[0]
    client_cores = [c for c in cores if c != server_core] or cores
    endpoint, sink = _sink_thread()
    os.sched_setaffinity(0, client_cores)
    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-tel-"))
    pg, nats = EmbeddedPostgres(tmp / "pg", fsync=False), EmbeddedNats(tmp / "nats")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pg.start()
        nats.start()
        pepper_text, pepper = new_pepper()
        secret = secrets.token_urlsafe(32)
        asyncio.run(bi._register(pg.dsn(), pepper, secret))
        rotator_port = free_tcp_port()
        extra = {
            "TOKENRY_KEK": Kek.generate().encoded(),
            "TOKENRY_KEY_SETS": "access:ES256",
            "TOKENRY_KEYROTATOR_LISTEN": f"127.0.0.1:{rotator_port}",
        }
        env = service_env(pg.dsn(), nats.url, pepper_text, extra, keep_otel=False)
        py = sys.executable
        rotator = subprocess.Popen([py, "-m", "tokenry.services.keyrotator"], env=env)
        procs.append(rotator)
        bi._wait_port(f"127.0.0.1:{rotator_port}", rotator)
        telemetry = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
            "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        }
        variants = {
            "off": ([py, "-m", "tokenry.services.issuer"], {}),
            "on": (
                [py, "-m", "tokenry.services.issuer"],
                {**telemetry, "TOKENRY_METRICS_LISTEN": f"127.0.0.1:{free_tcp_port()}"},
            ),
            "scrape": (  # metrics on the scrape endpoint only: no OTLP exporter in the process
                [py, "-m", "tokenry.services.issuer"],
                {"TOKENRY_METRICS_LISTEN": f"127.0.0.1:{free_tcp_port()}"},
            ),
            **(
                {
                    "contrib-pg": (
                        [py, "-c", CONTRIB_PG],
                        {**telemetry, "TOKENRY_METRICS_LISTEN": f"127.0.0.1:{free_tcp_port()}"},
                    )
                }
                if _HAVE_CONTRIB_PG
                else {}
            ),
            "contrib": (
                [py, "-c", CONTRIB],
                {
                    **telemetry,
                    "OTEL_TRACES_EXPORTER": "none",  # the contrib tracer provider is set above
                    "TOKENRY_METRICS_LISTEN": f"127.0.0.1:{free_tcp_port()}",
                },
            ),
        }
        pin = ["taskset", "-c", str(server_core)] if shutil.which("taskset") else []
        servers: dict[str, tuple[str, psutil.Process]] = {}
        for name, (cmd, extra) in variants.items():
            port = free_tcp_port()
            proc = subprocess.Popen(
                [*pin, *cmd], env={**env, **extra, "TOKENRY_ISSUER_LISTEN": f"127.0.0.1:{port}"}
            )
            procs.append(proc)
            bi._wait_port(f"127.0.0.1:{port}", proc)
            servers[name] = (f"127.0.0.1:{port}", psutil.Process(proc.pid))
        basic = base64.b64encode(f"{bi.CLIENT_ID}:{secret}".encode()).decode()
        metadata = (("authorization", f"Basic {basic}"),)
        request = bi._token_request(args.format)
        samples: list[bi.Sample] = []
        for rnd in range(args.rounds):
            for concurrency in (1, 32):
                order = list(servers)
                order = order[rnd % len(order) :] + order[: rnd % len(order)]
                for name in order:
                    addr, proc = servers[name]
                    sample = asyncio.run(
                        bi._load(
                            addr, TOKEN, request, metadata, concurrency, args.seconds, proc, name
                        )
                    )
                    samples.append(sample)
                    print(
                        f"round {rnd + 1} c={concurrency:<2} {name:<8} {sample.rate:8.0f}/s"
                        f"  p50 {sample.pct(0.5):7.0f} µs  p99 {sample.pct(0.99):7.0f} µs"
                        f"  server {sample.server_cpu_us_per_call:5.0f} µs/call"
                        + (f"  errors {sample.errors}" if sample.errors else ""),
                        flush=True,
                    )
    finally:
        stop_stack(procs, nats, pg, tmp)
    return {
        "machine": machine(server_core),
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "otlp_exports_received": sink.exports,
        "samples": [
            {
                "kind": s.kind,
                "concurrency": s.concurrency,
                "calls": s.calls,
                "rate": s.rate,
                "p50_us": s.pct(0.5),
                "p99_us": s.pct(0.99),
                "server_cpu_us_per_call": s.server_cpu_us_per_call,
                "errors": s.errors,
            }
            for s in samples
        ],
    }


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for concurrency in (1, 32):
        med: dict[str, dict[str, float]] = {}
        for kind in ("off", "on", "scrape", "contrib-pg", "contrib"):
            if not any(s["kind"] == kind for s in results["samples"]):
                continue
            runs = [
                s
                for s in results["samples"]
                if s["kind"] == kind and s["concurrency"] == concurrency
            ]
            med[kind] = {
                key: statistics.median(r[key] for r in runs)
                for key in ("rate", "p50_us", "p99_us", "server_cpu_us_per_call")
            }
        for kind, m in med.items():
            rows.append(
                {
                    "concurrency": concurrency,
                    "kind": kind,
                    **m,
                    "rate_vs_off": m["rate"] / med["off"]["rate"],
                    "cpu_vs_off": m["server_cpu_us_per_call"]
                    / med["off"]["server_cpu_us_per_call"],
                }
            )
    return rows


def micro(repeat: int = 7, n: int = 20_000) -> dict[str, float]:
    """In-process: µs per call that the per-RPC wrapper adds to a handler that does nothing
    (metrics on, traces at 1 %), and what one SDK ``Histogram.record`` would have cost."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tokenry.servicekit import telemetry as otel
    from tokenry.servicekit.metrics import IssuedTokens
    from tokenry.servicekit.rpctelemetry import RpcTelemetry, rpc_duration

    class Ctx:
        def code(self) -> None:
            return None

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("authorization", "Basic eDp5"),)

    async def inner(_request: bytes, _ctx: Any) -> bytes:
        return b""

    meters = otel.EdgeMeterProvider(metric_readers=[InMemoryMetricReader(), InMemoryMetricReader()])
    tracers = otel.EdgeTracerProvider(edge_ratio=0.01, sampler=otel.FollowParent())
    rpc = RpcTelemetry(
        meters.get_meter("m"), tracers.get_tracer("t"), 0.01, duration=rpc_duration(meters)
    )
    wrapped = rpc.wrap("/tokenry.v1.Issuer/Token", grpc.unary_unary_rpc_method_handler(inner))
    issued = IssuedTokens(meters.get_meter("m"))
    histogram = meters.get_meter("m").create_histogram("h", unit="s")
    attrs = {"rpc.method": "tokenry.v1.Issuer/Token", "rpc.grpc.status_code": "OK"}

    async def bare_call() -> None:
        await inner(b"", None)

    ctx = Ctx()

    async def wrapped_call() -> None:
        await wrapped.unary_unary(b"", ctx)  # type: ignore[misc]
        issued.add("client_credentials", "jwt", "bench")

    async def sdk_record() -> None:
        histogram.record(0.0004, attrs)

    async def best(fn: Any) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(n):
                await fn()
            times.append((time.perf_counter() - started) / n * 1e6)
        return min(times)

    async def run_all() -> dict[str, float]:
        return {
            "bare_us": await best(bare_call),
            "wrapped_us": await best(wrapped_call),
            "sdk_histogram_record_us": await best(sdk_record),
        }

    return asyncio.run(run_all())


def micro_db(repeat: int = 7, n: int = 2_000) -> dict[str, float]:
    """In-process, against a real PostgreSQL: client CPU µs (this thread's CPU time, so neither
    PostgreSQL's work nor time preempted by other processes counts) per ``fetchval('SELECT 1')``
    outside a sampled
    trace (99 % of the calls at 1 % sampling) through asyncpg's own connection, through
    Tokenry's :class:`~tokenry.store.db.TracedConnection`, and through asyncpg's connection
    instrumented by opentelemetry-instrumentation-asyncpg (its own tracer provider with the
    SDK's ``parentbased_traceidratio`` at 1 %, as a user of it would configure). The three are
    interleaved in each round; the best round of each is kept."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    from tokenry.servicekit import telemetry as otel
    from tokenry.store.db import create_pool

    ours = otel.EdgeTracerProvider(edge_ratio=0.01, sampler=otel.FollowParent())
    contrib = TracerProvider(sampler=ParentBasedTraceIdRatio(0.01))
    contrib.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-db-"))
    pg = EmbeddedPostgres(tmp / "pg", fsync=False)

    async def timed(pool: Any) -> float:
        started = time.thread_time_ns()
        for _ in range(n):
            await pool.fetchval("SELECT 1")
        return (time.thread_time_ns() - started) / n / 1e3

    async def run_all() -> dict[str, float]:
        from opentelemetry import trace

        trace.set_tracer_provider(ours)  # what a service with telemetry on installs
        plain = await create_pool(pg.dsn(), min_size=1, max_size=1, traced=False)
        traced = await create_pool(pg.dsn(), min_size=1, max_size=1, traced=True)
        best: dict[str, float] = {"asyncpg_us": 1e9, "traced_us": 1e9, "contrib_us": 1e9}
        await timed(plain), await timed(traced)  # warm up
        for _ in range(repeat):
            best["asyncpg_us"] = min(best["asyncpg_us"], await timed(plain))
            best["traced_us"] = min(best["traced_us"], await timed(traced))
            if _HAVE_CONTRIB_PG:
                from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

                AsyncPGInstrumentor().instrument(tracer_provider=contrib)
                best["contrib_us"] = min(best["contrib_us"], await timed(plain))
                AsyncPGInstrumentor().uninstrument()
        await plain.close()
        await traced.close()
        return best

    pg.start()
    try:
        return asyncio.run(run_all())
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def micro_http(repeat: int = 7, n: int = 20_000) -> dict[str, float]:
    """In-process: µs per request that servicekit.httptelemetry adds around a raw ASGI app that
    answers at once (metrics on, traces at 1 %), as the gateway's fast path is wrapped."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tokenry.servicekit import telemetry as otel
    from tokenry.servicekit.httptelemetry import HttpTelemetry, http_duration

    async def app(_scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    meters = otel.EdgeMeterProvider(metric_readers=[InMemoryMetricReader()])
    tracers = otel.EdgeTracerProvider(edge_ratio=0.01, sampler=otel.FollowParent())
    wrapped = HttpTelemetry(
        app,
        ["/oauth2/token"],
        meter=meters.get_meter("m"),
        tracer=tracers.get_tracer("t"),
        ratio=0.01,
        duration=http_duration(meters),
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/oauth2/token",
        "scheme": "https",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    request = {"type": "http.request", "body": b"grant_type=client_credentials"}

    async def receive() -> dict[str, Any]:
        return request

    async def send(_message: Any) -> None:
        return None

    async def best(target: Any) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(n):
                await target(scope, receive, send)
            times.append((time.perf_counter() - started) / n * 1e6)
        return min(times)

    async def run_all() -> dict[str, float]:
        return {"bare_us": await best(app), "wrapped_us": await best(wrapped)}

    return asyncio.run(run_all())


def verifier_cache_hit(rounds: int = 9, batch: int = 20_000) -> dict[str, Any]:
    """In-process, pinned by the caller: the verifier's cache hit (``check_cached``, a fresh
    ``str`` per call) with telemetry off (no SDK) and on (the SDK meter provider observing the
    verifier, Tokenry's tracer provider at 1 % installed as the global), next to the floor of
    scripts/bench_verifier.py (a dict lookup plus the revocation checks), interleaved; CPU time
    per call, medians of ``rounds``."""
    import bench_verifier as bv
    from opentelemetry import trace
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tokenry.servicekit import telemetry as otel
    from tokenry.verifier import VerifierMetrics

    signer = bv.Signer("ES256", "es-1")
    off = bv.build_verifier([signer], cache_size=10_000)
    on = bv.build_verifier([signer], cache_size=10_000)
    reader = InMemoryMetricReader()
    meters = otel.EdgeMeterProvider(metric_readers=[reader])
    VerifierMetrics(meters.get_meter("tokenry.verifier")).observe(on)
    trace.set_tracer_provider(otel.EdgeTracerProvider(edge_ratio=0.01, sampler=otel.FollowParent()))
    token = signer.token()
    off.verify_blocking(token)
    on.verify_blocking(token)
    entry = off.cache.get(token)
    assert entry is not None
    table = {token: entry}
    revocations = off.state.revocations

    def floor(items: list[str]) -> None:
        get, check = table.get, revocations.check
        for t in items:
            e = get(t)
            if e is None or check(e.jti, e.gid, e.sub, e.client_id, e.iat) is not None:
                raise AssertionError

    def hits(verifier: Any) -> Any:
        def run(items: list[str]) -> None:
            hit = verifier.check_cached
            for t in items:
                if hit(t) is None:
                    raise AssertionError

        return run

    samples = bv.interleave(
        {"floor": floor, "off": hits(off), "on": hits(on)},
        lambda: bv.fresh_copies(token, batch),
        rounds,
    )
    reader.get_metrics_data()  # the collection path works with the SDK installed
    med = {name: statistics.median(v) for name, v in samples.items()}
    return {
        "samples_us": samples,
        "median_us": med,
        "on_vs_off": med["on"] / med["off"],
        "off_vs_floor": med["off"] / med["floor"],
        "on_vs_floor": med["on"] / med["floor"],
    }


def verifier_child(argv: list[str]) -> None:
    """bench_propagation's verifier process (``--verifiers N …``), with Tokenry's telemetry
    installed from the ``OTEL_*`` variables it inherits (none: nothing installed) and each
    verifier observed by VerifierMetrics (the lag histogram, per applied event)."""
    import bench_propagation as bp

    from tokenry.servicekit import telemetry as otel
    from tokenry.verifier import VerifierMetrics

    parser = argparse.ArgumentParser()
    for name in ("--nats-url", "--revocation-addr", "--jwks-file"):
        parser.add_argument(name)
    parser.add_argument("--verifiers", type=int)
    args = parser.parse_args(argv)
    done = otel.configure(otel.read_settings("verifier"))
    if done.meter_provider is not None:
        observer = VerifierMetrics()
        start = bp._start

        async def observed(a: argparse.Namespace, jwks: str, **kwargs: Any) -> Any:
            runtime = await start(a, jwks, **kwargs)
            observer.observe_runtime(runtime)
            return runtime

        bp._start = observed  # type: ignore[assignment]
    try:
        asyncio.run(bp.verifier_process(args))
    finally:
        done.shutdown()


def propagation_run(
    rounds: int, verifiers: int, count: int, on_first: bool = False
) -> dict[str, Any]:
    """Revocation propagation (Revoke acknowledged → applied at every verifier) on two stacks
    side by side (scripts/bench_propagation.py's), one with telemetry off and one on (the
    revocation service: OTLP traces at 1 %, OTLP metrics, scrape endpoint; its verifiers: the
    SDK from the same variables, lag histogram recorded per event), alternated round by round.
    ``on_first`` builds the telemetry stack first (the two stacks are separate PostgreSQL and
    NATS instances: swapping them tells a stack's own difference from telemetry's)."""
    import bench_propagation as bp

    bp.__file__ = __file__  # its children run this script (verifier_child) instead
    endpoint, sink = _sink_thread()
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    telemetry = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
    }
    samples: dict[str, list[dict[str, float]]] = {"off": [], "on": []}

    def telemetry_stack(stacks: contextlib.ExitStack) -> Any:
        os.environ.update(telemetry, TOKENRY_METRICS_LISTEN=f"127.0.0.1:{free_tcp_port()}")
        try:
            return stacks.enter_context(bp.stack(False))
        finally:
            for key in (*telemetry, "TOKENRY_METRICS_LISTEN"):
                os.environ.pop(key, None)

    with contextlib.ExitStack() as stacks:
        if on_first:
            on = telemetry_stack(stacks)
            off = stacks.enter_context(bp.stack(False))
        else:
            off = stacks.enter_context(bp.stack(False))
            on = telemetry_stack(stacks)
        on.env.pop("TOKENRY_METRICS_LISTEN", None)  # the verifier children scrape nowhere
        for rnd in range(rounds):
            order = [("off", off), ("on", on)] if rnd % 2 == 0 else [("on", on), ("off", off)]
            for name, s in order:
                got = asyncio.run(bp.propagation(s, 1, verifiers, count, 0.02))
                lags = got["ack_to_all_applied_ms"]
                row = {"p50_ms": bp._pct(lags, 0.5), "p99_ms": bp._pct(lags, 0.99)}
                samples[name].append(row)
                print(
                    f"round {rnd + 1} {name:<3} p50 {row['p50_ms']:6.2f} ms"
                    f"  p99 {row['p99_ms']:6.2f} ms",
                    flush=True,
                )
    med = {
        name: {k: statistics.median(r[k] for r in rows) for k in ("p50_ms", "p99_ms")}
        for name, rows in samples.items()
    }
    return {
        "verifiers": verifiers,
        "revocations_per_round": count,
        "rounds": rounds,
        "telemetry_stack_built_first": on_first,
        "samples": samples,
        "median": med,
        "p50_on_vs_off": med["on"]["p50_ms"] / med["off"]["p50_ms"],
        "p99_on_vs_off": med["on"]["p99_ms"] / med["off"]["p99_ms"],
        "otlp_exports_received": sink.exports,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--micro", action="store_true", help="only the in-process per-call cost")
    parser.add_argument(
        "--micro-db", action="store_true", help="only the per-query cost of the query spans"
    )
    parser.add_argument(
        "--verifier", action="store_true", help="only the verifier's cache hit, off vs on"
    )
    parser.add_argument(
        "--micro-http", action="store_true", help="only the per-request cost of httptelemetry"
    )
    parser.add_argument("--format", choices=("jwt", "opaque"), default="jwt", help="token format")
    parser.add_argument(
        "--propagation",
        action="store_true",
        help="only revocation propagation, telemetry off vs on (two stacks, same run)",
    )
    parser.add_argument("--revocations", type=int, default=100, help="per propagation round")
    parser.add_argument("--verifiers", type=int, default=5, help="propagation: verifiers")
    parser.add_argument(
        "--on-first", action="store_true", help="propagation: build the telemetry stack first"
    )
    if "--nats-url" in sys.argv:  # a propagation child (bench_propagation's verifier process)
        verifier_child(sys.argv[1:])
        return 0
    args = parser.parse_args()
    if args.micro_http:
        got = micro_http()
        print(
            f"per request: bare ASGI {got['bare_us']:.2f} µs, with httptelemetry "
            f"{got['wrapped_us']:.2f} µs (+{got['wrapped_us'] - got['bare_us']:.2f} µs)"
        )
        return 0
    if args.verifier:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
        got = verifier_cache_hit(rounds=5 if args.quick else 9)
        med = got["median_us"]
        print(
            f"cache hit CPU µs/call (medians): floor {med['floor']:.3f}, off {med['off']:.3f}, "
            f"on {med['on']:.3f}; on/off {got['on_vs_off']:.3f}, off/floor "
            f"{got['off_vs_floor']:.3f}, on/floor {got['on_vs_floor']:.3f}"
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "telemetry_verifier.json").write_text(json.dumps(got, indent=1) + "\n")
        return 0
    if args.propagation:
        got = propagation_run(args.rounds, args.verifiers, args.revocations, args.on_first)
        m = got["median"]
        print(
            f"propagation (ack → all {args.verifiers} applied), medians of {args.rounds} rounds:"
            f" off p50 {m['off']['p50_ms']:.2f} / p99 {m['off']['p99_ms']:.2f} ms, on p50 "
            f"{m['on']['p50_ms']:.2f} / p99 {m['on']['p99_ms']:.2f} ms; on/off p50 "
            f"{got['p50_on_vs_off']:.3f}, p99 {got['p99_on_vs_off']:.3f}"
        )
        args.out.mkdir(parents=True, exist_ok=True)
        name = (
            "telemetry_propagation_on_first.json" if args.on_first else "telemetry_propagation.json"
        )
        (args.out / name).write_text(json.dumps(got, indent=1) + "\n")
        return 0
    if args.micro_db:
        got = micro_db()
        base = got["asyncpg_us"]
        if not _HAVE_CONTRIB_PG:
            print("opentelemetry-instrumentation-asyncpg is not installed: its row is skipped")
        print(
            f"client CPU per query (SELECT 1, not sampled): asyncpg {base:.1f} µs, "
            f"TracedConnection {got['traced_us']:.1f} µs ({got['traced_us'] / base:.3f} ×), "
            f"opentelemetry-instrumentation-asyncpg {got['contrib_us']:.1f} µs "
            f"({got['contrib_us'] / base:.3f} ×)"
        )
        return 0
    if args.micro:
        got = micro()
        added = got["wrapped_us"] - got["bare_us"]
        print(
            f"per call: bare {got['bare_us']:.2f} µs, wrapped {got['wrapped_us']:.2f} µs "
            f"(+{added:.2f} µs); one SDK Histogram.record {got['sdk_histogram_record_us']:.2f} µs"
        )
        return 0
    if args.quick:
        args.seconds, args.rounds = 2.0, 3
    results = run(args)
    rows = summarize(results)
    results["summary"] = rows
    print(
        f"\n{'c':>3} {'telemetry':<10} {'tokens/s':>9} {'× off':>6} {'p50 µs':>7} "
        f"{'p99 µs':>7} {'CPU µs/call':>11} {'× off':>6}"
    )
    for r in rows:
        print(
            f"{r['concurrency']:>3} {r['kind']:<10} {r['rate']:>9.0f} {r['rate_vs_off']:>6.3f} "
            f"{r['p50_us']:>7.0f} {r['p99_us']:>7.0f} {r['server_cpu_us_per_call']:>11.0f} "
            f"{r['cpu_vs_off']:>6.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "telemetry.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
