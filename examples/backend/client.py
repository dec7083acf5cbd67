"""Call the example backend as a service: a client-credentials token, attached and refreshed by
the client interceptor.

    python examples/backend/client.py                  # with `make dev` and server.py running
    python examples/backend/client.py --token "$TOKEN" # call with a token you already hold

It finds the issuer like the CLI does (``TOKENRY_ISSUER_ADDR`` > a running ``tokenry dev`` >
127.0.0.1:50051) and calls the backend at ``DEMO_BACKEND`` (default 127.0.0.1:50060, where
server.py listens; sync_server.py listens on 127.0.0.1:50061). The dev client is
``demo-service`` / ``demo-secret`` unless ``TOKENRY_CLIENT_ID`` / ``TOKENRY_CLIENT_SECRET`` say
otherwise. ``--token`` sends the given access token as it is (no issuer is called), so a revoked
token can be shown being refused: ``error: UNAUTHENTICATED: …`` and exit code 1.

Exit codes: 0 answered, 1 refused (the reason on stderr), 2 usage, 3 the issuer or the backend is
unreachable — one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import grpc

from tokenry.client import ClientSecretBasic, IssuerTokenFetcher, TokenSource, bearer_channel
from tokenry.devstack.endpoints import Stack, locate

HELLO = "/demo.Greeter/Hello"


async def with_token_source(found: Stack, backend: str) -> bytes:
    """The usual way: the interceptor obtains, caches and refreshes the token."""
    env = os.environ
    issuer_addr = found.addr("issuer")
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
            hello: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HELLO)
            return await hello(b"", timeout=10)


async def with_given_token(token: str, backend: str) -> bytes:
    """``--token``: exactly this token, in the ``authorization`` metadata (RFC 6750 §2.1)."""
    async with grpc.aio.insecure_channel(backend) as channel:
        hello: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HELLO)
        return await hello(b"", metadata=(("authorization", f"Bearer {token}"),), timeout=10)


async def main(call: Callable[[], Awaitable[bytes]], unreachable: str) -> int:
    try:
        print((await call()).decode())
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(f"error: unreachable: {unreachable}", file=sys.stderr)
            return 3
        name = code.name if code else "error"
        details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        print(f"error: {name}: {' '.join(str(details).split())}", file=sys.stderr)
        return 1
    return 0


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", help="send this access token instead of fetching one")
    args = parser.parse_args(argv)
    backend = os.environ.get("DEMO_BACKEND", "127.0.0.1:50060")
    if args.token is not None:
        where = f"the backend at {backend} (DEMO_BACKEND); start examples/backend/server.py"
        return asyncio.run(main(lambda: with_given_token(args.token, backend), where))
    found = locate(dev=os.environ.get("TOKENRY_DEV", "1") != "0")
    where = (
        f"the issuer at {found.addr('issuer')} ({found.addrs['issuer'].source}) or the backend"
        f" at {backend} (DEMO_BACKEND); start `make dev` and examples/backend/server.py;"
        f" {found.hint()}"
    )
    return asyncio.run(main(lambda: with_token_source(found, backend), where))


if __name__ == "__main__":
    sys.exit(run())
