"""Benchmark (issue 13 item 4, docs/spec.md §8 "TLS on"): server CPU per RPC with a
certificate-bound token vs an unbound one, both over the same mTLS connection.

The server is a child process pinned to one core: a grpc.aio server with the real
``AuthInterceptor`` (verifier on an in-memory key set, no revocation feed), an mTLS listener
from a CA made here; the client (this process) runs on the other core with its own client
certificate. Both tokens carry the same claims and differ only in ``cnf.x5t#S256`` (of the
client's certificate). Each round measures the server's CPU time (``/proc/<pid>/stat``) over
N calls at concurrency C with one token, A/B interleaved; the table gives medians.

Run: ``.venv/bin/python scripts/bench_bound_tokens.py [--quick] [--out docs/benchmarks]``.
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

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


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

        tls = ServerTls(folder / "server.pem", folder / "server-key.pem", folder / "ca.pem", True)
        transport = Transport(tls)
        server, _ = new_server(
            (),
            tls=transport,
            interceptors=[AuthInterceptor(verifier, {"/b.B/*": MethodPolicy()})],
        )
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(hello)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("b.B", {"H": handler}),)
        )
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


async def drive(port: int, folder: Path, token: str, calls: int, concurrency: int) -> None:
    from tokenry.tls import ClientTls

    tls = ClientTls(folder / "ca.pem", folder / "client.pem", folder / "client-key.pem")
    async with tls.aio_channel(f"127.0.0.1:{port}") as channel:
        call: Any = channel.unary_unary("/b.B/H")
        md = (("authorization", f"Bearer {token}"),)
        per = calls // concurrency

        async def worker() -> None:
            for _ in range(per):
                await call(b"", metadata=md, timeout=10)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rounds, calls, concurrency = (5, 2000, 16) if args.quick else (9, 5000, 32)
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
            samples: dict[str, list[float]] = {"unbound": [], "bound": []}

            async def run() -> None:
                for name in ("unbound", "bound"):  # warm-up: caches, connections, JIT-free
                    await drive(port, folder, tokens[name], 500, concurrency)
                for _ in range(rounds):
                    for name in ("unbound", "bound"):
                        before = cpu_seconds(child.pid)
                        await drive(port, folder, tokens[name], calls, concurrency)
                        samples[name].append((cpu_seconds(child.pid) - before) / calls * 1e6)

            asyncio.run(run())
        finally:
            child.terminate()
            child.wait()
    unbound = statistics.median(samples["unbound"])
    bound = statistics.median(samples["bound"])
    print("| token over mTLS | server CPU µs/RPC (median) |")
    print("|---|---|")
    print(f"| unbound | {unbound:.1f} |")
    print(f"| bound (cnf.x5t#S256 checked) | {bound:.1f} |")
    print(f"ratio bound/unbound = {bound / unbound:.3f} (target ≤ 1.05)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bound_tokens.json").write_text(
        json.dumps(
            {"rounds": rounds, "calls": calls, "concurrency": concurrency, "samples": samples},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
