"""Call the example backend as a service: a client-credentials token, attached and refreshed by
the client interceptor.

    TOKENRY_ISSUER_ADDR=127.0.0.1:50051 TOKENRY_CLIENT_ID=demo-service \\
    TOKENRY_CLIENT_SECRET=demo-secret python examples/backend/client.py
"""

from __future__ import annotations

import asyncio
import os

import grpc

from tokenry.verifier import ClientSecretBasic, IssuerTokenFetcher, TokenSource, bearer_interceptors


async def main() -> None:
    env = os.environ
    async with grpc.aio.insecure_channel(
        env.get("TOKENRY_ISSUER_ADDR", "127.0.0.1:50051")
    ) as issuer:
        auth = ClientSecretBasic(
            env.get("TOKENRY_CLIENT_ID", "demo-service"),
            env.get("TOKENRY_CLIENT_SECRET", "demo-secret"),
        )
        source = TokenSource(IssuerTokenFetcher(issuer, auth, scope="demo.read"))
        backend = env.get("DEMO_BACKEND", "127.0.0.1:50060")
        async with grpc.aio.insecure_channel(
            backend, interceptors=bearer_interceptors(source)
        ) as channel:
            hello: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/demo.Greeter/Hello"
            )
            print((await hello(b"", timeout=10)).decode())


if __name__ == "__main__":
    asyncio.run(main())
