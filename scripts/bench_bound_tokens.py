"""Benchmark (issue 13 item 4, docs/spec.md §8 "TLS on"): server CPU per RPC with a
certificate-bound token vs an unbound one, both over the same mTLS connection.

The server is a child process pinned to one core: a grpc.aio server with the real
``AuthInterceptor`` (verifier on an in-memory key set, no revocation feed), an mTLS listener
from a CA made here; the client (this process) runs on the other core with its own client
certificate, over ONE channel (one TLS connection) for every sample. Both tokens carry the same
claims and differ only in ``cnf.x5t#S256`` (of the client's certificate). A third variant sends
the unbound token again (``unbound_control``): its ratio to ``unbound`` is the noise floor of
the method. A fourth (``ceiling``) sends the unbound token to a method whose handler merely
calls ``context.auth_context()`` and discards it: grpc's own per-call cost of reading the peer
certificate (the only API that exposes it), which no bound-token check can avoid — so
``ceiling ÷ unbound`` is the floor under ``bound ÷ unbound``, measured in the same run. Each
round measures the server's CPU time — ``time.process_time_ns()`` of the server process (all
threads, nanoseconds), asked through a public control method before and after — over N calls
at concurrency C with one token; the order of the variants rotates every round.
The table gives medians over rounds, the median of the per-round ratios and their range.

``--instructions N`` counts instead the server's instructions per RPC under callgrind (a server
process per variant, minus one that served nothing; concurrency 1 unless ``--concurrency``
says otherwise, so the event loop's batching does not vary between runs): the
load-independent figure, for ``unbound``, ``bound`` and ``ceiling``.

Run: ``.venv/bin/python scripts/bench_bound_tokens.py [--quick] [--rounds R] [--calls N]
[--out docs/benchmarks] [--instructions N [--repeat R]]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def serve(folder: Path) -> None:
    """The child: the resource server, printing its port."""
    import grpc

    from tokenry.core.clock import SystemClock
    from tokenry.jose import JwksCache
    from tokenry.servicekit.server import listen, new_server
    from tokenry.servicekit.tls import ServerTls, Transport
    from tokenry.verifier import AuthInterceptor, MethodPolicy
    from tokenry.verifier._config import NoRevocationFeed
    from tokenry.verifier._verifier import Verifier, VerifierConfig

    class Source:
        async def fetch(self) -> tuple[str, int]:
            return (folder / "jwks.json").read_text(), 1

    async def main() -> None:
        clock = SystemClock()
        jwks = JwksCache(Source(), clock)
        await jwks.refresh(force=True)
        verifier = Verifier(
            VerifierConfig(issuer="https://issuer.bench", audience="bench-api"),
            jwks,
            NoRevocationFeed(),
            clock,
        )

        async def hello(_request: bytes, _context: Any) -> bytes:
            return b"ok"

        async def ceiling(_request: bytes, context: Any) -> bytes:
            context.auth_context()  # what reading the peer certificate costs grpc, discarded
            return b"ok"

        async def cpu(_request: bytes, _context: Any) -> bytes:
            return str(time.process_time_ns()).encode()

        async def probe(_request: bytes, context: Any) -> bytes:
            # In a real mTLS call: the CPU of what a bound token adds, call by call.
            from tokenry.verifier import _binding

            matches: _binding.Matches = {}
            assert _binding._current_call_matches(context, matches)
            n = 5000
            timed: dict[str, float] = {}
            for name, step in (
                ("auth_context", context.auth_context),
                ("check", lambda: _binding._current_call_matches(context, matches)),
            ):
                start = time.thread_time_ns()
                for _ in range(n):
                    step()
                timed[name] = (time.thread_time_ns() - start) / n / 1000
            return json.dumps(timed).encode()

        tls = ServerTls(folder / "server.pem", folder / "server-key.pem", folder / "ca.pem", True)
        transport = Transport(tls)
        server, _ = new_server(
            (),
            tls=transport,
            interceptors=[
                AuthInterceptor(
                    verifier, {"/b.B/*": MethodPolicy(), "/b.B/Cpu": MethodPolicy(public=True)}
                )
            ],
        )
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(hello)
        methods = {
            "H": handler,
            "Ceiling": grpc.unary_unary_rpc_method_handler(ceiling),
            "Cpu": grpc.unary_unary_rpc_method_handler(cpu),
            "Probe": grpc.unary_unary_rpc_method_handler(probe),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("b.B", methods),))
        port = listen(server, "127.0.0.1", 0, transport)
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def prepare(folder: Path) -> dict[str, str]:
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from jwt.algorithms import ECAlgorithm

    from tokenry.devstack.ca import CertificateAuthority

    ca = CertificateAuthority.generate("bench CA")
    ca.write(folder / "ca.pem", folder / "ca-key.pem")
    ca.issue("server").write(folder / "server.pem", folder / "server-key.pem")
    ca.issue("client", uris=("spiffe://bench/client",)).write(
        folder / "client.pem", folder / "client-key.pem"
    )
    cert = x509.load_pem_x509_certificate((folder / "client.pem").read_bytes())
    x5t = base64.urlsafe_b64encode(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest())
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1", "alg": "ES256"}
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    now = int(time.time())
    claims = {
        "iss": "https://issuer.bench",
        "sub": "client",
        "aud": "bench-api",
        "iat": now,
        "exp": now + 3600,
        "jti": "bench-jti-0000000000",
        "client_id": "client",
        "scope": "x",
    }
    headers = {"kid": "k1", "typ": "at+jwt"}
    unbound = jwt.encode(claims, key, algorithm="ES256", headers=headers)
    bound_claims = {**claims, "cnf": {"x5t#S256": x5t.rstrip(b"=").decode()}}
    bound = jwt.encode(bound_claims, key, algorithm="ES256", headers=headers)
    return {"unbound": unbound, "bound": bound}


async def drive(
    channel: Any, token: str, calls: int, concurrency: int, method: str = "/b.B/H"
) -> None:
    call: Any = channel.unary_unary(method)
    md = (("authorization", f"Bearer {token}"),)
    per = calls // concurrency

    async def worker() -> None:
        for _ in range(per):
            await call(b"", metadata=md, timeout=10)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def server_cpu_ns(channel: Any) -> int:
    return int(await channel.unary_unary("/b.B/Cpu")(b"", timeout=10))


VARIANTS = ("unbound", "bound", "unbound_control", "ceiling")
#: The token each variant sends, and the method it calls.
PLAN = {
    "unbound": ("unbound", "/b.B/H"),
    "bound": ("bound", "/b.B/H"),
    "unbound_control": ("unbound", "/b.B/H"),
    "ceiling": ("unbound", "/b.B/Ceiling"),
}


async def measure(
    port: int, folder: Path, tokens: dict[str, str], rounds: int, calls: int, concurrency: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Server CPU µs per RPC of each variant, per round, over one mTLS channel; then the
    direct probe (µs per step of the bound check, timed inside one real mTLS call)."""
    from tokenry.tls import ClientTls

    tls = ClientTls(folder / "ca.pem", folder / "client.pem", folder / "client-key.pem")
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    async with tls.aio_channel(f"127.0.0.1:{port}") as channel:
        for name in VARIANTS:  # warm-up: the connection, caches, the bound handler wrapper
            token, method = PLAN[name]
            await drive(channel, tokens[token], 1000, concurrency, method)
        for r in range(rounds):
            k = r % len(VARIANTS)
            order = VARIANTS[k:] + VARIANTS[:k]
            for name in order if r % 2 == 0 else tuple(reversed(order)):
                token, method = PLAN[name]
                before = await server_cpu_ns(channel)
                await drive(channel, tokens[token], calls, concurrency, method)
                after = await server_cpu_ns(channel)
                samples[name].append((after - before) / calls / 1000)
        md = (("authorization", f"Bearer {tokens['bound']}"),)
        call: Any = channel.unary_unary("/b.B/Probe")
        probe = json.loads(await call(b"", metadata=md, timeout=60))
    return samples, probe


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    med = statistics.median
    base = samples["unbound"]
    out: dict[str, Any] = {"median_us": {k: med(v) for k, v in samples.items()}}
    for name in ("bound", "unbound_control", "ceiling"):
        per_round = [a / b for a, b in zip(samples[name], base, strict=True)]
        out[name] = {
            "ratio_of_medians": med(samples[name]) / med(base),
            "median_of_round_ratios": med(per_round),
            "round_ratio_range": [min(per_round), max(per_round)],
        }
    return out


def server_instructions(
    folder: Path, variant: str, token: str, calls: int, concurrency: int
) -> int:
    """Instructions the server process executes (callgrind ``totals``) from start to exit, having
    served ``calls`` calls of ``variant`` over one mTLS channel (none when ``calls`` is 0)."""
    import re
    import signal

    out = folder / f"callgrind.{variant}.{calls}.out"
    child = subprocess.Popen(
        [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
            *(sys.executable, __file__, "--serve", str(folder)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())

        async def run() -> None:
            from tokenry.tls import ClientTls

            tls = ClientTls(folder / "ca.pem", folder / "client.pem", folder / "client-key.pem")
            async with tls.aio_channel(f"127.0.0.1:{port}") as channel:
                if calls:
                    await drive(channel, token, calls, concurrency, PLAN[variant][1])

        asyncio.run(run())
    finally:
        child.send_signal(signal.SIGTERM)  # callgrind writes its totals on the way out
        child.wait(timeout=120)
    found = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1))


INSTRUCTION_VARIANTS = ("unbound", "bound", "ceiling")


def count_instructions(calls: int, concurrency: int, repeat: int) -> dict[str, Any]:
    """Server instructions per RPC of unbound, bound and ceiling, each run minus a run that
    served none; ``repeat`` rounds, the variants' order rotated each round (a run's count
    moves by up to a few % with the box's load), reported as medians of the per-round ratios."""
    runs: dict[str, list[float]] = {name: [] for name in INSTRUCTION_VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokens = prepare(folder)
        idle = server_instructions(folder, "unbound", tokens["unbound"], 0, concurrency)
        for r in range(repeat):
            k = r % len(INSTRUCTION_VARIANTS)
            for name in INSTRUCTION_VARIANTS[k:] + INSTRUCTION_VARIANTS[:k]:
                total = server_instructions(folder, name, tokens[PLAN[name][0]], calls, concurrency)
                runs[name].append((total - idle) / calls)
            print(
                f"round {r + 1}: "
                + ", ".join(f"{name} {runs[name][-1]:,.0f}" for name in INSTRUCTION_VARIANTS),
                flush=True,
            )
    med = statistics.median
    ratio = {
        name: med(a / b for a, b in zip(runs[name], runs["unbound"], strict=True))
        for name in ("bound", "ceiling")
    }
    own = med(
        (b - c) / u for b, c, u in zip(runs["bound"], runs["ceiling"], runs["unbound"], strict=True)
    )
    print(
        f"server instructions per RPC (callgrind, {calls} calls, c={concurrency}, medians of "
        f"{repeat} rounds): " + ", ".join(f"{n} {med(v):,.0f}" for n, v in runs.items())
    )
    print(
        f"bound/unbound {ratio['bound']:.3f} (target ≤ 1.05); ceiling/unbound "
        f"{ratio['ceiling']:.3f} (grpc's auth_context() alone); the check's own share "
        f"(bound - ceiling)/unbound {own:.3f}   [medians of per-round ratios]"
    )
    return {"per_rpc": runs, "bound_ratio": ratio["bound"], "ceiling_ratio": ratio["ceiling"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None, help="calls per sample")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="default 16; 1 with --instructions"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="instead: count the server's instructions per RPC under callgrind (N calls per "
        "variant; needs valgrind; ≈ 1 minute per 1,000 calls)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of --instructions (default 3)"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.instructions:
        count_instructions(args.instructions, args.concurrency or 1, args.repeat)
        return
    concurrency = args.concurrency or 16
    rounds, calls = (5, 2000) if args.quick else (15, 4000)
    rounds = args.rounds or rounds
    calls = args.calls or calls
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokens = prepare(folder)
        child = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, __file__, "--serve", str(folder)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            os.sched_setaffinity(0, {1})
            samples, probe = asyncio.run(measure(port, folder, tokens, rounds, calls, concurrency))
        finally:
            child.terminate()
            child.wait()
    result = summary(samples)
    print("| token over mTLS (one connection) | server CPU µs/RPC (median of rounds) |")
    print("|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {result['median_us'][name]:.1f} |")
    notes = {
        "bound": "  (target ≤ 1.05)",
        "unbound_control": "  (noise floor)",
        "ceiling": "  (grpc's auth_context() alone: the floor under bound)",
    }
    for name in ("bound", "unbound_control", "ceiling"):
        r = result[name]
        low, high = r["round_ratio_range"]
        print(
            f"{name}/unbound: ratio of medians {r['ratio_of_medians']:.3f}, median of round "
            f"ratios {r['median_of_round_ratios']:.3f} (rounds {low:.3f}–{high:.3f})" + notes[name]
        )
    share = probe["check"] / result["median_us"]["unbound"] * 100
    print(
        "direct, in a real mTLS call (µs): "
        + ", ".join(f"{k} {v:.2f}" for k, v in probe.items())
        + f"; the whole check (auth_context() included) = {share:.1f} % of an unbound RPC's"
        " server CPU"
    )
    result["probe_us"] = probe
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bound_tokens.json").write_text(
        json.dumps(
            {
                "rounds": rounds,
                "calls": calls,
                "concurrency": concurrency,
                "samples_us": samples,
                "summary": result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
