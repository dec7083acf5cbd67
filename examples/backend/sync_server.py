"""The example backend on a sync (thread-pool) grpc server.

    TOKENRY_NATS_URL=... TOKENRY_KEYROTATOR_ADDR=... python examples/backend/sync_server.py

The verifier keeps its keys and revocation state current on an event loop of its own
(``VerifierLoop``); the server's threads verify tokens against it (see
``tokenry.verifier.sync_interceptor``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from tokenry.bus.codec import Subjects
from tokenry.verifier import (
    MethodPolicy,
    SyncAuthInterceptor,
    VerifierLoop,
    current_claims,
    start_verifier,
)


def hello(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    claims = current_claims()
    return json.dumps({"hello": claims["sub"], "jti": claims["jti"]}).encode()


def main() -> None:
    env = os.environ
    # --- the whole Tokenry setup: a verifier on its own loop thread and an interceptor ---
    loop = VerifierLoop.start()
    runtime = loop.run(
        start_verifier(
            issuer=env.get("TOKENRY_ISSUER_URL", "http://127.0.0.1:8080"),
            audience=env.get("DEMO_AUDIENCE", "demo-api"),
            keyrotator_addr=env.get("TOKENRY_KEYROTATOR_ADDR", "127.0.0.1:50054"),
            nats_url=env.get("TOKENRY_NATS_URL", "nats://127.0.0.1:4222"),
            subjects=Subjects(env.get("TOKENRY_NATS_PREFIX", "tokenry")),
            stream=env.get("TOKENRY_NATS_STREAM", "TOKENRY_EVENTS"),
        )
    )
    policy = {"/demo.Greeter/*": MethodPolicy(scopes=frozenset({"demo.read"}))}
    interceptor = SyncAuthInterceptor(runtime.verifier, policy)
    server = grpc.server(ThreadPoolExecutor(16), interceptors=[interceptor])
    # --- end of Tokenry setup ---
    handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(hello)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("demo.Greeter", {"Hello": handler})]
    )
    port = server.add_insecure_port(env.get("DEMO_LISTEN", "127.0.0.1:50061"))
    server.start()
    print(f"demo sync backend listening on {port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(5).wait()
        loop.run(runtime.close())
        loop.stop()


if __name__ == "__main__":
    main()
