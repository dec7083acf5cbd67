"""The example backend on a sync (thread-pool) grpc server.

    python examples/backend/sync_server.py      # with `make dev` running: no variables needed

It finds the stack like server.py does. The verifier keeps its keys and revocation state current
on an event loop of its own (``VerifierLoop``); the server's threads verify tokens against it
(see ``tokenry.verifier.sync_interceptor``). "listening" is printed, and the health service
says SERVING, only once that state is current.

Exit codes: 0 stopped, 3 no Tokenry stack answered within 30 s (one line on stderr).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokenry.bus.codec import Subjects
from tokenry.devstack.endpoints import locate
from tokenry.verifier import (
    MethodPolicy,
    SyncAuthInterceptor,
    VerifierLoop,
    current_claims,
    start_verifier,
)

STARTUP_TIMEOUT = 30.0


def hello(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    claims = current_claims()
    return json.dumps({"hello": claims["sub"], "jti": claims["jti"]}).encode()


def main() -> int:
    env = os.environ
    found = locate(dev=env.get("TOKENRY_DEV", "1") != "0")  # like the CLI (see server.py)
    # --- the whole Tokenry setup: a verifier on its own loop thread and an interceptor ---
    loop = VerifierLoop.start()
    started = start_verifier(
        issuer=found.issuer_url.value,
        audience=env.get("DEMO_AUDIENCE", "demo-api"),
        keyrotator_addr=found.addr("keyrotator"),
        revocation_addr=found.addr("revocation"),  # snapshots and proof of currency
        nats_url=found.nats_url.value,
        subjects=Subjects(found.nats_prefix),
        stream=found.nats_stream,
        **found.verifier_tls(),  # TLS: the dev CA, or TOKENRY_TLS_CA / TOKENRY_NATS_TLS_CA
    )
    try:
        runtime = loop.run(asyncio.wait_for(started, STARTUP_TIMEOUT))
        loop.run(asyncio.wait_for(runtime.state.wait_current(), STARTUP_TIMEOUT))
    except TimeoutError:
        print(f"error: no Tokenry stack answered; {found.hint()}", file=sys.stderr)
        loop.stop()
        return 3
    policy = {"/demo.Greeter/*": MethodPolicy(scopes=frozenset({"demo.read"}))}
    interceptor = SyncAuthInterceptor(runtime.verifier, policy)
    server = grpc.server(ThreadPoolExecutor(16), interceptors=[interceptor])
    # --- end of Tokenry setup ---
    handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(hello)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("demo.Greeter", {"Hello": handler})]
    )
    checks = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)  # public
    port = server.add_insecure_port(env.get("DEMO_LISTEN", "127.0.0.1:50061"))
    server.start()
    checks.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"demo sync backend listening on {port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        checks.enter_graceful_shutdown()
        server.stop(5).wait()
        loop.run(runtime.close())
        loop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
