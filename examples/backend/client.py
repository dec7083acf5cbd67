"""Call the example backend as a service: a client-credentials token, attached and refreshed by
the client interceptor.

    python examples/backend/client.py      # with `make dev` and server.py running

It finds the issuer like the CLI does (``TOKENRY_ISSUER_ADDR`` > a running ``tokenry dev`` >
127.0.0.1:50051) and calls the backend at ``DEMO_BACKEND`` (default 127.0.0.1:50060, where
server.py listens; sync_server.py listens on 127.0.0.1:50061). The dev client is
``demo-service`` / ``demo-secret`` unless ``TOKENRY_CLIENT_ID`` / ``TOKENRY_CLIENT_SECRET`` say
otherwise.

Exit codes: 0 answered, 1 refused (the reason on stderr), 3 the issuer or the backend is
unreachable — one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys

import grpc

from tokenry.client import ClientSecretBasic, IssuerTokenFetcher, TokenSource, bearer_channel
from tokenry.devstack.endpoints import locate


async def main() -> int:
    env = os.environ
    found = locate(dev=env.get("TOKENRY_DEV", "1") != "0")
    issuer_addr = found.addr("issuer")
    backend = env.get("DEMO_BACKEND", "127.0.0.1:50060")
    tls = found.client_tls()  # the dev CA of `tokenry dev`, or TOKENRY_TLS_CA; None: plaintext
    issuer_channel = tls.aio_channel(issuer_addr) if tls else grpc.aio.insecure_channel(issuer_addr)
    async with issuer_channel as issuer:
        auth = ClientSecretBasic(
            env.get("TOKENRY_CLIENT_ID", "demo-service"),
            env.get("TOKENRY_CLIENT_SECRET", "demo-secret"),
        )
        source = TokenSource(IssuerTokenFetcher(issuer, auth, scope="demo.read"))
        # The demo backend listens in plaintext on loopback; a real one takes credentials here.
        async with bearer_channel(backend, source) as channel:
            hello: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/demo.Greeter/Hello"
            )
            try:
                print((await hello(b"", timeout=10)).decode())
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    print(
                        f"error: unreachable: the issuer at {issuer_addr}"
                        f" ({found.addrs['issuer'].source}) or the backend at {backend}"
                        f" (DEMO_BACKEND); start `make dev` and examples/backend/server.py;"
                        f" {found.hint()}",
                        file=sys.stderr,
                    )
                    return 3
                name = code.name if code else "error"
                details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                print(f"error: {name}: {details}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
