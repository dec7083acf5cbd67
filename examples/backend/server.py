"""An example backend protected by Tokenry: every call is authenticated locally.

    python examples/backend/server.py      # with `make dev` running: no variables needed

It finds the stack the way the CLI does (flags > ``TOKENRY_*`` variables > a running
``tokenry dev``'s ``$TOKENRY_HOME/dev.json`` > default ports); examples run in dev mode unless
``TOKENRY_DEV=0``. A production backend passes its addresses explicitly.

`demo.Greeter/Hello` needs the `demo.read` scope and answers with the caller's identity; health
checks stay public. The service uses raw bytes (no proto of its own) to keep the example to the
point. `client.py` beside it calls it with a client-credentials token; `sync_server.py` is the
same service on a thread-pool grpc server.

Exit codes: 0 stopped, 3 no Tokenry stack answered within 30 s (one line on stderr).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokenry.bus.codec import Subjects
from tokenry.devstack.endpoints import Stack, locate
from tokenry.verifier import (
    AuthInterceptor,
    MethodPolicy,
    VerifierMetrics,
    current_claims,
    start_verifier,
)

STARTUP_TIMEOUT = 30.0


async def hello(_request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    claims = current_claims()
    return json.dumps({"hello": claims["sub"], "jti": claims["jti"]}).encode()


async def main(found: Stack) -> None:
    env = os.environ
    # --- the whole Tokenry setup: a verifier, its metrics and an interceptor ---
    verifier_started = start_verifier(
        issuer=found.issuer_url.value,
        audience=env.get("DEMO_AUDIENCE", "demo-api"),
        keyrotator_addr=found.addr("keyrotator"),
        revocation_addr=found.addr("revocation"),  # snapshots and proof of currency
        nats_url=found.nats_url.value,
        subjects=Subjects(found.nats_prefix),
        stream=found.nats_stream,
        **found.verifier_tls(),  # TLS: the dev CA, or TOKENRY_TLS_CA / TOKENRY_NATS_TLS_CA
    )
    runtime = await asyncio.wait_for(verifier_started, STARTUP_TIMEOUT)  # else: exit 3
    VerifierMetrics().observe(runtime.verifier)  # exported if the app installs an OTel SDK
    policy = {"/demo.Greeter/*": MethodPolicy(scopes=frozenset({"demo.read"}))}
    server = grpc.aio.server(interceptors=[AuthInterceptor(runtime.verifier, policy)])
    # --- end of Tokenry setup ---
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(hello)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("demo.Greeter", {"Hello": handler})]
    )
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)  # public
    port = server.add_insecure_port(env.get("DEMO_LISTEN", "127.0.0.1:50060"))
    # "listening" only once the revocation state is current: the first call is served.
    await asyncio.wait_for(runtime.state.wait_current(), STARTUP_TIMEOUT)
    await server.start()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"demo backend listening on {port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await runtime.close()


def run() -> int:
    found = locate(dev=os.environ.get("TOKENRY_DEV", "1") != "0")
    try:
        asyncio.run(main(found))
    except TimeoutError:
        print(f"error: {unreachable(found)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    return 0


def unreachable(found: Stack) -> str:
    """One line: what did not answer, where the addresses came from, what to do."""
    parts = [f"{s} {found.addr(s)} ({found.addrs[s].source})" for s in ("keyrotator", "revocation")]
    nats = f"NATS {found.nats_url.value} ({found.nats_url.source})"
    return (
        f"no Tokenry stack answered within {STARTUP_TIMEOUT:g}s at {', '.join(parts)}, {nats};"
        f" {found.hint()}"
    )


if __name__ == "__main__":
    sys.exit(run())
