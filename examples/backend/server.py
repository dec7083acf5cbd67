"""An example backend protected by Tokenry: every call is authenticated locally.

    TOKENRY_NATS_URL=... TOKENRY_KEYROTATOR_ADDR=... python examples/backend/server.py

`demo.Greeter/Hello` needs the `demo.read` scope and answers with the caller's identity; health
checks stay public. The service uses raw bytes (no proto of its own) to keep the example to the
point. `client.py` beside it calls it with a client-credentials token; `sync_server.py` is the
same service on a thread-pool grpc server.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from tokenry.bus.codec import Subjects
from tokenry.verifier import (
    AuthInterceptor,
    MethodPolicy,
    VerifierMetrics,
    current_claims,
    start_verifier,
)


async def hello(_request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    claims = current_claims()
    return json.dumps({"hello": claims["sub"], "jti": claims["jti"]}).encode()


async def main() -> None:
    env = os.environ
    # --- the whole Tokenry setup: a verifier, its metrics and an interceptor ---
    runtime = await start_verifier(
        issuer=env.get("TOKENRY_ISSUER_URL", "http://127.0.0.1:8080"),
        audience=env.get("DEMO_AUDIENCE", "demo-api"),
        keyrotator_addr=env.get("TOKENRY_KEYROTATOR_ADDR", "127.0.0.1:50054"),
        revocation_addr=env.get("TOKENRY_REVOCATION_ADDR", "127.0.0.1:50053"),  # snapshots
        nats_url=env.get("TOKENRY_NATS_URL", "nats://127.0.0.1:4222"),
        subjects=Subjects(env.get("TOKENRY_NATS_PREFIX", "tokenry")),
        stream=env.get("TOKENRY_NATS_STREAM", "TOKENRY_EVENTS"),
    )
    VerifierMetrics().observe(runtime.verifier)  # exported if the app installs an OTel SDK
    policy = {"/demo.Greeter/*": MethodPolicy(scopes=frozenset({"demo.read"}))}
    server = grpc.aio.server(interceptors=[AuthInterceptor(runtime.verifier, policy)])
    # --- end of Tokenry setup ---
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(hello)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("demo.Greeter", {"Hello": handler})]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # public
    port = server.add_insecure_port(env.get("DEMO_LISTEN", "127.0.0.1:50060"))
    await server.start()
    print(f"demo backend listening on {port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
