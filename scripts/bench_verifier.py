"""Benchmark of the resource-server verifier (docs/spec.md §8), every ratio against a baseline
measured in the same run, pinned to one core, A/B runs interleaved, medians of several rounds.

1. Cache hit, a fresh ``str`` per call, metrics on (an OpenTelemetry SDK meter provider observing
   the verifier), next to the floor: a dict lookup plus the revocation checks (jti, gid, sub,
   client_id watermarks, revoked kid) on a revocation set holding 10,000 entries.
   Measured as the interceptors call it (``Verifier.check_cached``), as the coroutine
   (``await Verifier.verify``), and with the metadata parse and scope check of the interceptor
   next to the floor plus a minimal metadata parse.
2. First sight (a token never seen: every call checks a signature) for ES256 and EdDSA, next to
   the raw ``cryptography`` verify of the same signatures and to ``jwt.decode`` (pyjwt with the
   public key object, the same claim checks requested).
3. What a request pays for authentication: the added CPU of the AuthInterceptor, measured (a)
   directly (``intercept_service`` with a trivial continuation) and (b) end to end (echo through
   the interceptor minus a bare grpc.aio echo RPC, client and server in this process).
4. What it would pay instead for an extra ``Introspect`` RPC: client + server CPU per call
   against the real introspector (the stack of ``bench_introspection.py``: embedded PostgreSQL
   and NATS, keyrotator, issuer, introspector; opaque tokens minted by the issuer). First sight
   is compared with a cold introspection (a token the introspector has not seen), the cache hit
   with a warm one; the in-process bare echo stays as a reference row.

5. Instructions per operation (``--instructions N``): each first-sight variant and the cache
   hit counted by callgrind (valgrind), which neither the machine's load nor its clock moves —
   the load-independent figure beside the CPU-time ratios.

Run: ``.venv/bin/python scripts/bench_verifier.py [--quick] [--cpu N] [--out docs/benchmarks]
[--no-introspector] [--only SECTION ...] [--runs N] [--instructions N]``.
Writes verifier.json (raw samples) and verifier.png next to docs/benchmarks/verifier.md;
``--runs N`` repeats the run in N fresh processes and writes the per-run ratios to
verifier_runs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from tokenry.core.clock import SystemClock
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.jose import Decoder, JwksCache, b64url_decode
from tokenry.verifier._metrics import VerifierMetrics
from tokenry.verifier._state import RevocationState
from tokenry.verifier._verifier import Verifier, VerifierConfig
from tokenry.verifier.interceptor import AuthInterceptor, MethodPolicy, ScopeCheck, bearer_token

ISSUER = "https://issuer.bench"
AUDIENCE = "demo-api"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_introspection's stack


# --- fixtures ------------------------------------------------------------------------------------


class Signer:
    def __init__(self, alg: str, kid: str) -> None:
        self.alg, self.kid = alg, kid
        if alg == "ES256":
            self.key: Any = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        else:
            self.key = Ed25519PrivateKey.generate()
            jwk = OKPAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.public = self.key.public_key()
        self.jwk = {**jwk, "kid": kid, "alg": alg, "use": "sig"}
        self.n = 0

    def token(self) -> str:
        self.n += 1
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "svc-orders",
            "aud": AUDIENCE,
            "exp": now + 3600,
            "iat": now - 1,
            "jti": f"{self.n:022d}",
            "gid": f"g{self.n:021d}",
            "client_id": "svc-orders",
            "scope": "demo.read demo.write",
        }
        return jwt.encode(
            claims, self.key, algorithm=self.alg, headers={"kid": self.kid, "typ": "at+jwt"}
        )


class StaticSource:
    def __init__(self, *signers: Signer) -> None:
        self.text = json.dumps({"keys": [s.jwk for s in signers]})

    async def fetch(self) -> tuple[str, int]:
        return self.text, 1


def build_verifier(signers: list[Signer], cache_size: int) -> Verifier:
    clock = SystemClock()
    jwks = JwksCache(StaticSource(*signers), clock)
    asyncio.run(jwks.refresh(force=True))
    state = RevocationState(clock, staleness_budget=24 * 3600.0)
    state.prove(0, clock.monotonic())  # proven current (applied seq 0 >= head 0)
    now = int(time.time())
    for i in range(10_000):  # a realistic denylist: lookups are dict probes of a big table
        state.revocations.apply(Revocation(RevocationKind.JTI, f"revoked-{i}", 0, now + 3600))
    for i in range(100):
        state.revocations.apply(Revocation(RevocationKind.SUBJECT, f"s{i}", now - 60, now + 3600))
        state.revocations.apply(Revocation(RevocationKind.CLIENT, f"c{i}", now - 60, now + 3600))
    state.revocations.apply(Revocation(RevocationKind.CLIENT, "svc-orders", now - 600, now + 3600))
    return Verifier(
        VerifierConfig(issuer=ISSUER, audience=AUDIENCE, cache_size=cache_size), jwks, state, clock
    )


def metrics_on(verifier: Verifier) -> Any:
    """An SDK meter provider with an in-memory reader observing the verifier (metrics on)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    VerifierMetrics(provider.get_meter("tokenry.verifier")).observe(verifier)
    return reader


def fresh_copies(token: str, n: int) -> list[str]:
    """n distinct str objects equal to token: each one's hash is computed on first use."""
    head, tail = token[:-1], token[-1]
    return [head + tail for _ in range(n)]


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (a cache hit, a known kid) without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def per_call_us(fn: Callable[[list[str]], None], batch: list[str]) -> float:
    # CPU time of this thread: time spent preempted by other processes does not count.
    start = time.thread_time_ns()
    fn(batch)
    return (time.thread_time_ns() - start) / len(batch) / 1000


def interleave(
    variants: dict[str, Callable[[list[str]], None]],
    make_batch: Callable[[], list[str]],
    rounds: int,
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in names:
            samples[name].append(per_call_us(variants[name], make_batch()))
    return samples


# --- 1. cache hit vs floor -----------------------------------------------------------------------


def bench_cache_hit(rounds: int, batch_size: int) -> dict[str, Any]:
    signer = Signer("ES256", "es-1")
    verifier = build_verifier([signer], cache_size=10_000)
    reader = metrics_on(verifier)
    token = signer.token()
    verifier.verify_blocking(token)  # cached from now on
    entry = verifier.cache.get(token)
    assert entry is not None
    floor_table = {token: entry}  # the floor's own dict: lookup + revocation checks
    revocations = verifier.state.revocations
    revoked_kids: set[str] = set()
    scopes_ok = ScopeCheck()
    required = MethodPolicy(scopes=frozenset({"demo.read"})).scopes

    def floor(batch: list[str]) -> None:
        get, check = floor_table.get, revocations.check
        for t in batch:
            e = get(t)
            if e is None or e.kid in revoked_kids:
                raise AssertionError
            if check(e.jti, e.gid, e.sub, e.client_id, e.iat) is not None:
                raise AssertionError

    def floor_with_metadata(batch: list[str]) -> None:
        get, check = floor_table.get, revocations.check
        for t in batch:
            metadata = (("user-agent", "grpc-python"), ("authorization", "Bearer " + t))
            found = None
            for key, value in metadata:
                if key == "authorization":
                    found = value[7:]
            e = get(found)  # type: ignore[arg-type]
            if e is None or e.kid in revoked_kids:
                raise AssertionError
            if check(e.jti, e.gid, e.sub, e.client_id, e.iat) is not None:
                raise AssertionError

    def check_cached(batch: list[str]) -> None:
        hit = verifier.check_cached
        for t in batch:
            if hit(t) is None:
                raise AssertionError

    loop = asyncio.new_event_loop()

    async def awaited(batch: list[str]) -> None:
        verify = verifier.verify
        for t in batch:
            await verify(t)

    def verify_coroutine(batch: list[str]) -> None:
        loop.run_until_complete(awaited(batch))

    def interceptor_hit(batch: list[str]) -> None:
        hit = verifier.check_cached
        for t in batch:
            metadata = (("user-agent", "grpc-python"), ("authorization", "Bearer " + t))
            claims = hit(bearer_token(metadata))  # type: ignore[arg-type]
            if claims is None or not scopes_ok(claims, required):
                raise AssertionError

    samples = interleave(
        {
            "floor": floor,
            "check_cached": check_cached,
            "verify_coroutine": verify_coroutine,
            "floor_with_metadata": floor_with_metadata,
            "interceptor_hit": interceptor_hit,
        },
        lambda: fresh_copies(token, batch_size),
        rounds,
    )
    reader.get_metrics_data()  # the export path works with the SDK installed
    loop.close()
    return {"samples_us": samples, "hits": verifier.stats.hits}


# --- 2. first sight vs raw cryptography and pyjwt ------------------------------------------------


def raw_verify_inputs(tokens: list[str], alg: str) -> list[tuple[bytes, bytes]]:
    """(signature, signed data) per token for the raw verify: the very same signatures, with the
    conversion pyjwt and we both need done beforehand (raw r‖s → DER for ECDSA), so that the raw
    verify is the true floor."""
    inputs = []
    for t in tokens:
        head, payload, sig = t.split(".")
        data = f"{head}.{payload}".encode()
        signature = b64url_decode(sig)
        if alg == "ES256":
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            signature = encode_dss_signature(r, s)
        inputs.append((signature, data))
    return inputs


def bench_first_sight(alg: str, rounds: int, batch_size: int) -> dict[str, Any]:
    """Many short interleaved rounds (``batch_size`` calls each): a sample that another process
    preempted — and whose caches it then evicted — is an outlier the median drops, instead of a
    tax that every long sample pays in proportion to its working set (the verifier's Python path
    loses more to a cold cache than the raw verify's few kilobytes of assembly).

    Every round signs new tokens, and one verifier sees each token once: every call of the
    verifier is a first sight, and it keeps what it verified (its cache grows by each round), as
    a resource server does.
    """
    signer = Signer(alg, f"{alg.lower()}-1")
    tokens = [signer.token() for _ in range(batch_size * rounds)]
    raw_inputs = raw_verify_inputs(tokens, alg)
    public = signer.public
    ecdsa = ec.ECDSA(SHA256())
    next_round = iter(range(rounds * 4))  # one batch per variant per round

    def batch() -> list[str]:
        i = next(next_round) // 4 * batch_size  # the four variants of a round share its tokens
        return [str(j) for j in range(i, i + batch_size)]

    def raw(batch_idx: list[str]) -> None:
        for i in batch_idx:
            sig, data = raw_inputs[int(i)]
            if alg == "ES256":
                public.verify(sig, data, ecdsa)
            else:
                public.verify(sig, data)

    def pyjwt_decode(batch_idx: list[str]) -> None:
        decode = jwt.decode
        for i in batch_idx:
            decode(
                tokens[int(i)],
                public,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "jti"]},
            )

    verifier = build_verifier([signer], cache_size=len(tokens) + 1)

    async def first_sights(batch_idx: list[str]) -> None:
        hit, verify = verifier.check_cached, verifier.verify
        for i in batch_idx:  # what AuthInterceptor does: the sync hit check, then await verify
            t = tokens[int(i)]
            if hit(t) is None:
                await verify(t)

    def tokenry(batch_idx: list[str]) -> None:
        before = verifier.stats.verified
        # Driven without an event loop (a known kid never suspends), so that a short round
        # does not pay a loop's run_until_complete per batch.
        run_sync(first_sights(batch_idx))
        assert verifier.stats.verified - before == len(batch_idx)  # every call a first sight

    decoder, keys = Decoder(), verifier.jwks.keys

    def jose_decode(batch_idx: list[str]) -> None:
        now = time.time()
        for i in batch_idx:  # the JOSE core alone: its result is dropped, not cached
            decoder.decode(tokens[int(i)], keys, issuer=ISSUER, audience=AUDIENCE, now=now)

    samples = interleave(
        {
            "raw_cryptography": raw,
            "pyjwt_decode": pyjwt_decode,
            "jose_decode": jose_decode,
            "tokenry_first_sight": tokenry,
        },
        batch,
        rounds,
    )
    return {"samples_us": samples, "rounds": rounds, "batch": batch_size}


# --- 3. interceptor vs an extra RPC --------------------------------------------------------------


async def _echo(request: bytes, _context: Any) -> bytes:
    return request


class _PassThrough(grpc.aio.ServerInterceptor):
    """Does nothing: what grpc.aio's interceptor machinery costs by itself."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        return await continuation(handler_call_details)


def _details(method: str, token: str) -> Any:
    class Details(grpc.HandlerCallDetails):
        def __init__(self) -> None:
            self.method = method
            self.invocation_metadata = (
                ("user-agent", "grpc-python-asyncio"),
                ("authorization", f"Bearer {token}"),
            )

    return Details()


async def _bench_rpc(rounds: int, calls: int) -> dict[str, Any]:
    signer = Signer("ES256", "es-1")
    verifier = await asyncio.to_thread(build_verifier, [signer], 100_000)
    policy = {"/bench.Echo/*": MethodPolicy(scopes=frozenset({"demo.read"}))}
    interceptor = AuthInterceptor(verifier, policy)
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    generic = grpc.method_handlers_generic_handler("bench.Echo", {"Call": handler})
    bare = grpc.aio.server()
    protected = grpc.aio.server(interceptors=[interceptor])
    noop = grpc.aio.server(interceptors=[_PassThrough()])
    ports = []
    for server in (bare, protected, noop):
        server.add_generic_rpc_handlers([generic])
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
    token = signer.token()
    fresh_tokens = [signer.token() for _ in range(calls * rounds)]
    fresh_iter = iter(fresh_tokens)
    samples: dict[str, list[float]] = {
        "bare_rpc": [],
        "rpc_with_noop_interceptor": [],
        "rpc_with_interceptor_hit": [],
        "rpc_with_interceptor_first_sight": [],
        "interceptor_hit_direct": [],
        "interceptor_first_sight_direct": [],
    }
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}") as ch_bare,
        grpc.aio.insecure_channel(f"127.0.0.1:{ports[1]}") as ch_auth,
        grpc.aio.insecure_channel(f"127.0.0.1:{ports[2]}") as ch_noop,
    ):
        call_bare = ch_bare.unary_unary("/bench.Echo/Call")
        call_auth = ch_auth.unary_unary("/bench.Echo/Call")
        call_noop = ch_noop.unary_unary("/bench.Echo/Call")
        metadata = (("authorization", f"Bearer {token}"),)
        for _ in range(200):  # warm up the channels and the cache
            await call_bare(b"x")
            await call_noop(b"x", metadata=metadata)
            await call_auth(b"x", metadata=metadata)

        async def rpc_bare() -> None:
            for _ in range(calls):
                await call_bare(b"x")

        async def rpc_noop() -> None:
            for _ in range(calls):
                await call_noop(b"x", metadata=metadata)

        async def rpc_hit() -> None:
            for _ in range(calls):
                await call_auth(b"x", metadata=metadata)

        async def rpc_first() -> None:
            for _ in range(calls):
                await call_auth(b"x", metadata=(("authorization", f"Bearer {next(fresh_iter)}"),))

        async def direct_hit() -> None:
            async def continuation(_d: Any) -> Any:
                return handler

            details = _details("/bench.Echo/Call", token)
            for _ in range(calls * 20):
                await interceptor.intercept_service(continuation, details)

        direct_tokens = [signer.token() for _ in range(calls * rounds)]
        direct_iter = iter(direct_tokens)

        async def direct_first() -> None:
            async def continuation(_d: Any) -> Any:
                return handler

            for _ in range(calls):
                details = _details("/bench.Echo/Call", next(direct_iter))
                await interceptor.intercept_service(continuation, details)

        runs = {
            "bare_rpc": (rpc_bare, calls),
            "rpc_with_noop_interceptor": (rpc_noop, calls),
            "rpc_with_interceptor_hit": (rpc_hit, calls),
            "rpc_with_interceptor_first_sight": (rpc_first, calls),
            "interceptor_hit_direct": (direct_hit, calls * 20),
            "interceptor_first_sight_direct": (direct_first, calls),
        }
        for r in range(rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                fn, n = runs[name]
                start = time.process_time_ns()
                await fn()
                samples[name].append((time.process_time_ns() - start) / n / 1000)
    for server in (bare, protected, noop):
        await server.stop(None)
    return {"samples_cpu_us": samples}


# --- 4. a real Introspect RPC (the introspector service, out of process) -------------------------


def _cpu_seconds(proc: Any) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _introspect_calls(
    addr: str, method: str, requests: list[bytes], metadata: Any, server: Any
) -> tuple[float, float]:
    """One call at a time (as an interceptor would make it): (client, server) CPU µs per call."""
    async with grpc.aio.insecure_channel(addr) as channel:
        call = channel.unary_unary(method)
        for request in requests[:20]:  # connect and warm the channel (not timed)
            await call(request, metadata=metadata, timeout=10)
        timed = requests[20:]
        client_start, server_start = time.process_time_ns(), _cpu_seconds(server)
        for request in timed:
            await call(request, metadata=metadata, timeout=10)
        server_s = _cpu_seconds(server) - server_start
        client_ns = time.process_time_ns() - client_start
    return client_ns / len(timed) / 1000, server_s * 1e6 / len(timed)


def bench_introspect(rounds: int, calls: int, server_core: int) -> dict[str, Any]:
    """CPU per ``Introspect`` call, client + introspector process, on a real stack.

    The stack is the one ``bench_introspection.py`` starts (embedded PostgreSQL and NATS,
    keyrotator, issuer, introspector pinned to ``server_core``; opaque tokens minted by the
    issuer; caller ``demo-api`` holding tokenry:introspect). cold: every call introspects a token
    the introspector has not seen (its PostgreSQL lookups); warm: 64 tokens asked over and over
    (its positive cache); echo: a bare echo server process on the same core, for reference.
    PostgreSQL's own CPU is not counted (it is a third process), so cold is an underestimate.
    """
    import psutil
    from bench_introspection import INTROSPECT, _basic, mint, stack

    from tokenry.v1 import introspector_pb2

    def request(token: str) -> bytes:
        return introspector_pb2.IntrospectRequest(token=token).SerializeToString()

    per_run = calls + 20
    with stack(server_core) as st:
        tokens = asyncio.run(mint(st.issuer_addr, st.client_secret, 64 + rounds * per_run))
        warm = [request(tokens[i % 64]) for i in range(per_run)]
        cold = iter(tokens[64:])
        metadata = _basic("demo-api", st.rs_secret)
        introspector, echo = psutil.Process(st.introspector.pid), psutil.Process(st.echo.pid)
        # The warm set enters the introspector's cache before any timed run.
        asyncio.run(_introspect_calls(st.introspector_addr, INTROSPECT, warm, metadata, echo))
        samples: dict[str, list[float]] = {}
        for r in range(rounds):
            kinds = ["echo", "warm", "cold"]
            for kind in kinds[r % 3 :] + kinds[: r % 3]:
                if kind == "echo":
                    addr, method, reqs, proc = st.echo_addr, "/bench.Echo/Echo", warm, echo
                elif kind == "warm":
                    addr, method, reqs, proc = st.introspector_addr, INTROSPECT, warm, introspector
                else:
                    reqs = [request(next(cold)) for _ in range(per_run)]
                    addr, method, proc = st.introspector_addr, INTROSPECT, introspector
                client, server = asyncio.run(_introspect_calls(addr, method, reqs, metadata, proc))
                samples.setdefault(f"{kind}_client", []).append(client)
                samples.setdefault(f"{kind}_server", []).append(server)
                samples.setdefault(kind, []).append(client + server)
    return {"samples_cpu_us": samples, "server_core": server_core}


# --- 5. instruction counts (callgrind): the load-independent figure -----------------------------

#: What ``--instructions`` counts, per operation: the first-sight variants over fresh tokens, the
#: cache-hit variants over fresh ``str`` copies of one cached token.
CALLGRIND_VARIANTS: dict[str, tuple[str, ...]] = {
    "ES256": ("raw_cryptography", "jose_decode", "pyjwt_decode", "tokenry_first_sight"),
    "EdDSA": ("raw_cryptography", "jose_decode", "pyjwt_decode", "tokenry_first_sight"),
    "hit": ("floor", "check_cached"),
}


def callgrind_workload(variant: str, alg: str, n: int) -> None:
    """Run inside valgrind: build everything, then run ``n`` operations inside
    ``operator.call`` — the one C function that ``--toggle-collect`` counts, so that the set-up
    (key generation, signing, imports) is left out."""
    import operator

    signer = Signer("ES256" if alg == "hit" else alg, "k-1")
    verifier = build_verifier([signer], cache_size=4 * n + 16)
    loop = asyncio.new_event_loop()
    if alg == "hit":
        token = signer.token()
        verifier.verify_blocking(token)
        entry = verifier.cache.get(token)
        assert entry is not None
        table, check = {token: entry}, verifier.state.revocations.check
        copies = fresh_copies(token, n)

        def floor() -> None:
            get = table.get
            for t in copies:
                e = get(t)
                if e is None or check(e.jti, e.gid, e.sub, e.client_id, e.iat) is not None:
                    raise AssertionError

        def check_cached() -> None:
            hit = verifier.check_cached
            for t in copies:
                if hit(t) is None:
                    raise AssertionError

        operator.call({"floor": floor, "check_cached": check_cached}[variant])
        return
    tokens = [signer.token() for _ in range(n)]
    raw_inputs = raw_verify_inputs(tokens, alg)
    public, ecdsa = signer.public, ec.ECDSA(SHA256())
    decoder, keys, now = Decoder(), verifier.jwks.keys, time.time()

    def raw_cryptography() -> None:
        for sig, data in raw_inputs:
            public.verify(sig, data, ecdsa) if alg == "ES256" else public.verify(sig, data)

    def jose_decode() -> None:
        for t in tokens:
            decoder.decode(t, keys, issuer=ISSUER, audience=AUDIENCE, now=now)

    def pyjwt_decode() -> None:
        for t in tokens:
            jwt.decode(
                t,
                public,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "jti"]},
            )

    async def first_sights() -> None:
        hit, verify = verifier.check_cached, verifier.verify
        for t in tokens:
            if hit(t) is None:
                await verify(t)

    def tokenry_first_sight() -> None:
        loop.run_until_complete(first_sights())
        assert verifier.stats.verified == n

    variants = {
        "raw_cryptography": raw_cryptography,
        "jose_decode": jose_decode,
        "pyjwt_decode": pyjwt_decode,
        "tokenry_first_sight": tokenry_first_sight,
    }
    operator.call(variants[variant])


def count_instructions(n: int) -> dict[str, dict[str, float]]:
    """Instructions per operation (callgrind ``Ir``), one valgrind process per variant.

    Counts do not depend on the machine's load or frequency; the same build gives the same
    count to within a few hundred instructions per operation (PYTHONHASHSEED fixed).
    """
    import re
    import subprocess

    counts: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for alg, variants in CALLGRIND_VARIANTS.items():
            for variant in variants:
                done = subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--toggle-collect=_operator_call",
                        f"--callgrind-out-file={tmp}/callgrind.out",
                        sys.executable,
                        __file__,
                        "--callgrind-variant",
                        f"{alg}:{variant}:{n}",
                    ],
                    env={**os.environ, "PYTHONHASHSEED": "0"},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                found = re.search(r"Collected : (\d+)", done.stderr)
                assert found is not None, done.stderr[-2000:]
                counts.setdefault(alg, {})[variant] = int(found.group(1)) / n
                print(f"instructions {alg} {variant}: {counts[alg][variant]:,.0f}", flush=True)
    return counts


def instruction_rows(counts: dict[str, dict[str, float]]) -> list[Row]:
    rows: list[Row] = []
    for alg in ("ES256", "EdDSA"):
        base = counts[alg]["raw_cryptography"]
        for variant in CALLGRIND_VARIANTS[alg]:
            ir = counts[alg][variant]
            rows.append(
                (f"{alg} {variant} (instructions)", f"{ir:,.0f}", "", f"{ir / base:.3f}", "")
            )
    floor = counts["hit"]["floor"]
    for variant in CALLGRIND_VARIANTS["hit"]:
        ir = counts["hit"][variant]
        rows.append((f"hit {variant} (instructions)", f"{ir:,.0f}", "", f"{ir / floor:.3f}", ""))
    return rows


# --- report --------------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs)


Row = tuple[str, str, str, str, str]


def _row(name: str, xs: list[float], base: list[float] | None, target: str = "") -> Row:
    if base is None:
        return (name, f"{med(xs):.3g}", f"{min(xs):.3g}", "", target)
    ratio = f"{med(xs) / med(base):.2f} ({min(xs) / min(base):.2f})"
    return (name, f"{med(xs):.3g}", f"{min(xs):.3g}", ratio, target)


def _cheaper(name: str, cost: list[float], rpc: list[float], target: str = "") -> Row:
    ratio = f"{med(rpc) / med(cost):.0f} ({min(rpc) / min(cost):.0f})"
    return (name, f"{med(cost):.3g}", f"{min(cost):.3g}", ratio, target)


def report(results: dict[str, Any]) -> list[Row]:
    """Rows: name, median µs, min µs, ratio of medians (ratio of mins), target."""
    rows: list[Row] = []
    if "cache_hit" in results:
        rows += _hit_rows(results["cache_hit"]["samples_us"])
    for alg in ("ES256", "EdDSA"):
        if f"first_sight_{alg}" in results:
            rows += _first_sight_rows(alg, results[f"first_sight_{alg}"]["samples_us"])
    if "rpc" in results:
        rows += _rpc_rows(results)
    if "instructions" in results:
        rows += instruction_rows(results["instructions"])
    return rows


def _hit_rows(hit: dict[str, list[float]]) -> list[Row]:
    return [
        _row("floor: dict lookup + revocation checks", hit["floor"], None),
        _row("hit: Verifier.check_cached", hit["check_cached"], hit["floor"], "≤ 1.3 × floor"),
        _row("hit: await Verifier.verify", hit["verify_coroutine"], hit["floor"]),
        _row("floor + metadata parse", hit["floor_with_metadata"], None),
        _row(
            "hit: metadata + check_cached + scope",
            hit["interceptor_hit"],
            hit["floor_with_metadata"],
            "× (floor + metadata)",
        ),
    ]


def _first_sight_rows(alg: str, fs: dict[str, list[float]]) -> list[Row]:
    raw = fs["raw_cryptography"]
    return [
        _row(f"{alg} raw cryptography verify", raw, None),
        _row(f"{alg} pyjwt.decode", fs["pyjwt_decode"], raw, "× raw"),
        _row(f"{alg} jose.Decoder.decode (core only)", fs["jose_decode"], raw, "× raw"),
        _row(f"{alg} first sight (verifier)", fs["tokenry_first_sight"], raw, "≤ 1.25 × raw"),
    ]


def _rpc_rows(results: dict[str, Any]) -> list[Row]:
    rpc = results["rpc"]["samples_cpu_us"]
    bare = rpc["bare_rpc"]
    hit_direct, first_direct = rpc["interceptor_hit_direct"], rpc["interceptor_first_sight_direct"]
    rows = [
        _row("AuthInterceptor hit, direct", hit_direct, None),
        _row("AuthInterceptor first sight, direct", first_direct, None),
    ]
    if "introspect" in results:
        intro = results["introspect"]["samples_cpu_us"]
        rows += [
            _row("Introspect, cold: client + server CPU/call", intro["cold"], None),
            _row("Introspect, warm: client + server CPU/call", intro["warm"], None),
            _row("echo RPC out of process: client + server", intro["echo"], None),
            _cheaper("interceptor hit: warm Introspect ÷", hit_direct, intro["warm"], "≥ 100"),
            _cheaper(
                "interceptor first sight: cold Introspect ÷", first_direct, intro["cold"], "≥ 5"
            ),
        ]
    rows += [
        _row("bare in-process echo RPC CPU/call (reference)", bare, None),
        _cheaper("interceptor hit: in-process echo ÷", hit_direct, bare, "(reference)"),
        _cheaper("interceptor first sight: in-process echo ÷", first_direct, bare, "(reference)"),
    ]
    for label, key in (
        ("end to end: no-op grpc.aio interceptor", "rpc_with_noop_interceptor"),
        ("end to end: AuthInterceptor, hit", "rpc_with_interceptor_hit"),
        ("end to end: AuthInterceptor, first sight", "rpc_with_interceptor_first_sight"),
    ):
        added = [a - b for a, b in zip(rpc[key], bare, strict=True)]
        rows.append((label + " (added)", f"{med(added):.3g}", "", "", "same-round difference"))
    return rows


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [
        ("Cache hit (µs/verification)", results["cache_hit"]["samples_us"]),
        (
            "First sight ES256 / EdDSA (µs)",
            {
                f"{alg} {name}": v
                for alg in ("ES256", "EdDSA")
                for name, v in results[f"first_sight_{alg}"]["samples_us"].items()
            },
        ),
        (
            "CPU per request (µs)",
            {
                **results["rpc"]["samples_cpu_us"],
                **{
                    f"Introspect {k}" if k != "echo" else "echo out of process": v
                    for k, v in results.get("introspect", {}).get("samples_cpu_us", {}).items()
                    if k in ("cold", "warm", "echo")
                },
            },
        ),
    ]
    for ax, (title, data) in zip(axes, panels, strict=True):
        names = list(data)
        ax.boxplot([data[n] for n in names], orientation="horizontal")
        ax.set_yticks(range(1, len(names) + 1), [n.replace("_", " ") for n in names], fontsize=7)
        ax.set_title(title)
        ax.set_xscale("log" if title.startswith("CPU") else "linear")
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("tokenry verifier — interleaved rounds on one pinned core (CPU time per call)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


SECTIONS = ("hit", "first-sight", "rpc", "introspect")
#: The ratios a ``--runs`` summary follows: (section key, variant, baseline).
RUN_RATIOS = (
    ("cache_hit", "check_cached", "floor"),
    ("first_sight_ES256", "tokenry_first_sight", "raw_cryptography"),
    ("first_sight_ES256", "jose_decode", "raw_cryptography"),
    ("first_sight_EdDSA", "tokenry_first_sight", "raw_cryptography"),
)


def repeat_runs(args: argparse.Namespace, sections: list[str]) -> None:
    """Run the benchmark ``args.runs`` times in fresh processes; print each run's ratio of
    medians and the median and range over runs (what moves between runs, not within one)."""
    import subprocess

    per_run: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            out = Path(tmp) / str(i)
            command = [sys.executable, __file__, "--out", str(out)]
            command += [f"--only={section}" for section in sections]
            command += ["--quick"] if args.quick else []
            command += [f"--cpu={args.cpu}"] if args.cpu is not None else []
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            samples = json.loads((out / "verifier.json").read_text())
            for key, variant, base in RUN_RATIOS:
                if key in samples:
                    xs = samples[key]["samples_us"]
                    ratio = med(xs[variant]) / med(xs[base])
                    per_run.setdefault(f"{key} {variant} / {base}", []).append(ratio)
            print(f"run {i + 1}/{args.runs}: done", flush=True)
    print()
    for name, ratios in per_run.items():
        shown = ", ".join(f"{r:.3f}" for r in ratios)
        print(
            f"{name}: median of runs {med(ratios):.3f}, range {min(ratios):.3f}–"
            f"{max(ratios):.3f} ({shown})"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verifier_runs.json").write_text(json.dumps(per_run, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: last)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where verifier.json/.png go (default docs/benchmarks; a temp dir with --quick, "
        "so a smoke run never overwrites the recorded results)",
    )
    parser.add_argument(
        "--no-introspector",
        action="store_true",
        help="skip the real Introspect RPC (it starts PostgreSQL, NATS and three services)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only these sections (repeatable; default: all)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the run in N fresh processes, one after the other, and report the median "
        "and spread of each run's ratios (the run-to-run figure; the json goes to "
        "verifier_runs.json)",
    )
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count instructions per operation under callgrind (N operations per "
        "variant; needs valgrind; ≈ 15 s per variant at N=200)",
    )
    parser.add_argument("--callgrind-variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind_variant:
        alg, variant, n = args.callgrind_variant.split(":")
        callgrind_workload(variant, alg, int(n))
        return
    sections = args.only or list(SECTIONS)
    if args.no_introspector and "introspect" in sections:
        sections.remove("introspect")
    if args.out is None:
        quick_dir = Path(tempfile.gettempdir()) / "tokenry-bench"
        args.out = quick_dir if args.quick else ROOT / "docs" / "benchmarks"
    cores = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else cores[-1]
    server_core = next((c for c in cores if c != cpu), cpu)  # the introspector stack's core
    os.sched_setaffinity(0, {cpu})
    rounds = 5 if args.quick else 15
    batch = 5_000 if args.quick else 20_000
    # First sight: short rounds (see bench_first_sight), three times as many.
    first_rounds, first_batch = (15, 100) if args.quick else (45, 200)
    calls = 300 if args.quick else 2_000

    results: dict[str, Any] = {
        "meta": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_pinned": cpu,
            "grpc": grpc.__version__,
            "pyjwt": jwt.__version__,
            "rounds": rounds,
            "introspect": "client + introspector process CPU per call, one call at a time; "
            "PostgreSQL's CPU not counted",
        }
    }
    if args.runs > 1:
        repeat_runs(args, sections)
        return
    print(f"pinned to CPU {cpu}; {rounds} interleaved rounds per comparison", flush=True)
    if "hit" in sections:
        results["cache_hit"] = bench_cache_hit(rounds, batch)
        print("cache hit: done", flush=True)
    if "first-sight" in sections:
        for alg in ("ES256", "EdDSA"):
            results[f"first_sight_{alg}"] = bench_first_sight(alg, first_rounds, first_batch)
            print(f"first sight {alg}: done", flush=True)
    if "rpc" in sections or "introspect" in sections:
        results["rpc"] = asyncio.run(_bench_rpc(rounds, calls))
        print("RPC: done", flush=True)
    if "introspect" in sections:
        intro_calls = 200 if args.quick else 500
        results["introspect"] = bench_introspect(rounds, intro_calls, server_core)
        print("Introspect (real stack): done", flush=True)
    if args.instructions:
        results["instructions"] = count_instructions(args.instructions)
    print()

    rows = report(results)
    width = max(len(r[0]) for r in rows)
    header = ("measurement", "median µs", "min µs", "ratio (of mins)", "target")
    print(f"{header[0]:<{width}}  {header[1]:>9}  {header[2]:>7}  {header[3]:>15}  {header[4]}")
    for name, median, low, ratio, target in rows:
        print(f"{name:<{width}}  {median:>9}  {low:>7}  {ratio:>15}  {target}")
    results["table"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verifier.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    complete = all(f"first_sight_{a}" in results for a in ("ES256", "EdDSA"))
    complete = complete and "cache_hit" in results and "rpc" in results
    plotted = complete and plot(results, args.out / "verifier.png")
    print(f"\nraw samples: {args.out / 'verifier.json'}")
    if plotted:
        print(f"plot: {args.out / 'verifier.png'}")
    else:
        print("plot: skipped (" + ("no matplotlib" if complete else "not every section ran") + ")")


if __name__ == "__main__":
    main()
