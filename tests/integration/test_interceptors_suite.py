"""Server and client interceptors against the real suite (issuer, key rotator, revocation on
PostgreSQL and NATS), in-process: a protected backend, a calling service with the client
interceptor, and a revocation that the backend applies from the event stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import grpc
import jwt
import pytest

from tokenry.client import (
    ClientSecretBasic,
    IssuerTokenFetcher,
    SyncBearerInterceptor,
    SyncIssuerTokenFetcher,
    SyncTokenSource,
    TokenSource,
    bearer_interceptors,
)
from tokenry.servicekit.config import Settings
from tokenry.servicekit.status import oauth_error_of
from tokenry.verifier import (
    AuthInterceptor,
    MethodPolicy,
    SyncAuthInterceptor,
    VerifierLoop,
    VerifierRuntime,
    current_claims,
    start_verifier,
)

from suite import Suite, run_suite

pytestmark = pytest.mark.integration

POLICY = {"/demo.Greeter/*": MethodPolicy(scopes=frozenset({"demo.read"}))}


async def _hello(_request: bytes, _context: Any) -> bytes:
    return str(current_claims()["client_id"]).encode()


def _sync_hello(_request: bytes, _context: Any) -> bytes:
    return str(current_claims()["client_id"]).encode()


def _greeter(behavior: Any) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "demo.Greeter", {"Hello": grpc.unary_unary_rpc_method_handler(behavior)}
    )


def _verifier_args(settings: Settings, suite: Suite) -> dict[str, Any]:
    return {
        "issuer": settings.issuer_url,
        "audience": "demo-api",
        "keyrotator_addr": suite.addrs["keyrotator"],
        "revocation_addr": suite.addrs["revocation"],
        "nats_url": settings.nats_url,
        "subjects": settings.subjects,
        "stream": settings.stream.name,
    }


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


@pytest.fixture
async def suite(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Suite]:
    async with run_suite(settings, pool) as running:
        yield running


async def test_aio_backend_and_client_survive_a_revocation(
    settings: Settings, suite: Suite
) -> None:
    runtime = await start_verifier(**_verifier_args(settings, suite))
    server = grpc.aio.server(interceptors=[AuthInterceptor(runtime.verifier, POLICY)])
    server.add_generic_rpc_handlers([_greeter(_hello)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    source = TokenSource(
        IssuerTokenFetcher(
            suite.channel("issuer"),
            ClientSecretBasic("demo", suite.secrets["demo"]),
            scope="demo.read",
        )
    )
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", interceptors=bearer_interceptors(source)
    )
    try:
        await asyncio.wait_for(runtime.state.wait_current(), timeout=20)
        hello = channel.unary_unary("/demo.Greeter/Hello")
        assert await hello(b"", timeout=10) == b"demo"
        assert await hello(b"", timeout=10) == b"demo" and source.fetches == 1
        first = await source.token()

        started = time.perf_counter()
        seq = await suite.revoke(_jti(first), reason="test")
        await asyncio.wait_for(runtime.state.wait_for_seq(seq), timeout=10)
        print(f"\nRevoke ack → applied: {(time.perf_counter() - started) * 1000:.1f} ms")
        # The backend refuses the cached token; the client fetches a new one and retries once.
        assert await hello(b"", timeout=10) == b"demo"
        assert source.fetches == 2 and await source.token() != first
        assert runtime.verifier.stats.failures == {("rejected", "revoked"): 1}

        # A token of another audience is refused even after the retry.
        other = TokenSource(
            IssuerTokenFetcher(
                suite.channel("issuer"), ClientSecretBasic("other", suite.secrets["other"])
            )
        )
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=bearer_interceptors(other)
        ) as other_channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await other_channel.unary_unary("/demo.Greeter/Hello")(b"", timeout=10)
        detail = oauth_error_of(err.value)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert detail is not None and detail.error == "invalid_token"
        assert "bad_audience" in detail.error_description
    finally:
        await channel.close()
        await server.stop(None)
        await runtime.close()


async def test_a_bad_client_secret_surfaces_the_issuers_oauth_error(suite: Suite) -> None:
    fetcher = IssuerTokenFetcher(suite.channel("issuer"), ClientSecretBasic("demo", "wrong"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await TokenSource(fetcher).token()
    detail = oauth_error_of(err.value)
    assert detail is not None and detail.error == "invalid_client"


async def test_sync_backend_and_client_survive_a_revocation(
    settings: Settings, suite: Suite
) -> None:
    """A sync grpc server (thread pool) and a sync client, the verifier on its own loop thread.

    The suite runs on this test's event loop, so every blocking call runs in a worker thread."""
    loop = VerifierLoop.start()
    runtime: VerifierRuntime = await asyncio.to_thread(
        loop.run, start_verifier(**_verifier_args(settings, suite))
    )
    server = grpc.server(
        ThreadPoolExecutor(4), interceptors=[SyncAuthInterceptor(runtime.verifier, POLICY)]
    )
    server.add_generic_rpc_handlers([_greeter(_sync_hello)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    issuer_channel = grpc.insecure_channel(suite.addrs["issuer"])
    source = SyncTokenSource(
        SyncIssuerTokenFetcher(
            issuer_channel, ClientSecretBasic("demo", suite.secrets["demo"]), scope="demo.read"
        )
    )
    channel = grpc.intercept_channel(
        grpc.insecure_channel(f"127.0.0.1:{port}"), SyncBearerInterceptor(source)
    )
    hello = channel.unary_unary("/demo.Greeter/Hello")
    try:
        await asyncio.to_thread(loop.run, asyncio.wait_for(runtime.state.wait_current(), 20))
        assert await asyncio.to_thread(hello, b"", timeout=10) == b"demo"
        assert await asyncio.to_thread(hello, b"", timeout=10) == b"demo"
        first = await asyncio.to_thread(source.token)
        assert source.fetches == 1

        seq = await suite.revoke(_jti(first), reason="test")
        await asyncio.to_thread(loop.run, asyncio.wait_for(runtime.state.wait_for_seq(seq), 10))
        assert await asyncio.to_thread(hello, b"", timeout=10) == b"demo"
        assert source.fetches == 2
        assert runtime.verifier.stats.failures == {("rejected", "revoked"): 1}
    finally:
        channel.close()
        issuer_channel.close()
        server.stop(None)
        await asyncio.to_thread(loop.run, runtime.close())
        await asyncio.to_thread(loop.stop)
