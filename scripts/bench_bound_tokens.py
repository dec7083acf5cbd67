"""Benchmark (issue 13 item 4, docs/spec.md §8 "TLS on"): server CPU per RPC with a
certificate-bound token vs an unbound one, both over the same mTLS connection.

The server is a child process pinned to one core: a grpc.aio server with the real
``AuthInterceptor`` (verifier on an in-memory key set, no revocation feed), an mTLS listener
from a CA made here; the client (this process) runs on the other core with its own client
certificate, over ONE channel (one TLS connection) for every sample. Both tokens carry the same
claims and differ only in ``cnf.x5t#S256`` (of the client's certificate). A third variant sends
the unbound token again (``unbound_control``): its ratio to ``unbound`` is the noise floor of
the method. Each round measures the server's CPU time — ``time.process_time_ns()`` of the server
process (all threads, nanoseconds), asked through a public control method before and after —
over N calls at concurrency C with one token; the order of the variants rotates every round.
The table gives medians over rounds, the median of the per-round ratios and their range.

``--instructions N`` counts instead the server's instructions per RPC under callgrind (a server
process per variant, minus one that served nothing): the load-independent figure.

Run: ``.venv/bin/python scripts/bench_bound_tokens.py [--quick] [--rounds R] [--calls N]
[--out docs/benchmarks] [--instructions N]``.
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

        async def cpu(_request: bytes, _context: Any) -> bytes:
            return str(time.process_time_ns()).encode()

        async def probe(_request: bytes, context: Any) -> bytes:
            # In a real mTLS call: the CPU of what a bound token adds, call by call.
            from tokenry.verifier._binding import bound_thumbprint, certificate_matches
            from tokenry.verifier.interceptor import current_claims

            expected = bound_thumbprint(current_claims())
            assert expected
            assert certificate_matches(context, expected)
            n = 5000
            timed: dict[str, float] = {}
            for name, step in (
                ("auth_context", context.auth_context),
                ("certificate_matches", lambda: certificate_matches(context, expected)),
                ("bound_thumbprint", lambda: bound_thumbprint(current_claims())),
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


async def drive(channel: Any, token: str, calls: int, concurrency: int) -> None:
    call: Any = channel.unary_unary("/b.B/H")
    md = (("authorization", f"Bearer {token}"),)
    per = calls // concurrency

    async def worker() -> None:
        for _ in range(per):
            await call(b"", metadata=md, timeout=10)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def server_cpu_ns(channel: Any) -> int:
    return int(await channel.unary_unary("/b.B/Cpu")(b"", timeout=10))


VARIANTS = ("unbound", "bound", "unbound_control")


async def measure(
    port: int, folder: Path, tokens: dict[str, str], rounds: int, calls: int, concurrency: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Server CPU µs per RPC of each variant, per round, over one mTLS channel; then the
    direct probe (µs per step of the bound check, timed inside one real mTLS call)."""
    from tokenry.tls import ClientTls

    tls = ClientTls(folder / "ca.pem", folder / "client.pem", folder / "client-key.pem")
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    token_of = {"unbound": tokens["unbound"], "bound": tokens["bound"]}
    token_of["unbound_control"] = tokens["unbound"]
    async with tls.aio_channel(f"127.0.0.1:{port}") as channel:
        for name in VARIANTS:  # warm-up: the connection, caches, the bound handler wrapper
            await drive(channel, token_of[name], 1000, concurrency)
        for r in range(rounds):
            order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
            for name in order if r % 2 == 0 else tuple(reversed(order)):
                before = await server_cpu_ns(channel)
                await drive(channel, token_of[name], calls, concurrency)
                after = await server_cpu_ns(channel)
                samples[name].append((after - before) / calls / 1000)
        md = (("authorization", f"Bearer {tokens['bound']}"),)
        probe = json.loads(await channel.unary_unary("/b.B/Probe")(b"", metadata=md, timeout=60))
    return samples, probe


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    med = statistics.median
    base = samples["unbound"]
    out: dict[str, Any] = {"median_us": {k: med(v) for k, v in samples.items()}}
    for name in ("bound", "unbound_control"):
        per_round = [a / b for a, b in zip(samples[name], base, strict=True)]
        out[name] = {
            "ratio_of_medians": med(samples[name]) / med(base),
            "median_of_round_ratios": med(per_round),
            "round_ratio_range": [min(per_round), max(per_round)],
        }
    return out


def server_instructions(folder: Path, token: str, calls: int) -> int:
    """Instructions the server process executes (callgrind ``totals``) from start to exit, having
    served ``calls`` calls with ``token`` over one mTLS channel (none when ``calls`` is 0)."""
    import re
    import signal

    out = folder / f"callgrind.{calls}.{len(token)}.out"
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
                    await drive(channel, token, calls, 8)

        asyncio.run(run())
    finally:
        child.send_signal(signal.SIGTERM)  # callgrind writes its totals on the way out
        child.wait(timeout=120)
    found = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1))


def count_instructions(calls: int) -> dict[str, float]:
    """Server instructions per RPC, unbound and bound: each run minus a run that served none."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokens = prepare(folder)
        idle = server_instructions(folder, tokens["unbound"], 0)
        per_rpc = {
            name: (server_instructions(folder, tokens[name], calls) - idle) / calls
            for name in ("unbound", "bound")
        }
    per_rpc["ratio"] = per_rpc["bound"] / per_rpc["unbound"]
    print(
        f"server instructions per RPC (callgrind, {calls} calls): "
        f"unbound {per_rpc['unbound']:,.0f}, bound {per_rpc['bound']:,.0f}, "
        f"ratio {per_rpc['ratio']:.3f}"
    )
    return per_rpc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None, help="calls per sample")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="instead: count the server's instructions per RPC under callgrind (N calls per "
        "variant; needs valgrind; ≈ 1 minute per 1,000 calls)",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.instructions:
        count_instructions(args.instructions)
        return
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
            samples, probe = asyncio.run(
                measure(port, folder, tokens, rounds, calls, args.concurrency)
            )
        finally:
            child.terminate()
            child.wait()
    result = summary(samples)
    print("| token over mTLS (one connection) | server CPU µs/RPC (median of rounds) |")
    print("|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {result['median_us'][name]:.1f} |")
    for name in ("bound", "unbound_control"):
        r = result[name]
        low, high = r["round_ratio_range"]
        print(
            f"{name}/unbound: ratio of medians {r['ratio_of_medians']:.3f}, median of round "
            f"ratios {r['median_of_round_ratios']:.3f} (rounds {low:.3f}–{high:.3f})"
            + ("  (target ≤ 1.05)" if name == "bound" else "  (noise floor)")
        )
    added = probe["certificate_matches"] + probe["bound_thumbprint"]
    share = added / result["median_us"]["unbound"] * 100
    print(
        "direct, in a real mTLS call (µs): "
        + ", ".join(f"{k} {v:.2f}" for k, v in probe.items())
        + f"; the check adds {added:.1f} µs (+ one wrapper frame) = {share:.1f} % of an"
        " unbound RPC's server CPU"
    )
    result["probe_us"] = probe
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bound_tokens.json").write_text(
        json.dumps(
            {
                "rounds": rounds,
                "calls": calls,
                "concurrency": args.concurrency,
                "samples_us": samples,
                "summary": result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
