"""Revocation through HTTP reaches a gRPC verifier (issue 14): a JWT issued at /oauth2/token and
revoked at /oauth2/revoke (RFC 7009) is refused by a verifier embedded in a grpc.aio backend,
which learns of it from the event stream (the gateway writes the outbox; the revocation
service's relay publishes it on NATS; docs/spec.md §4)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import grpc
import pytest

from tokenry.servicekit.config import Settings
from tokenry.servicekit.status import oauth_error_of
from tokenry.verifier import AuthInterceptor, MethodPolicy, current_claims, start_verifier

from gateway_support import gateway_suite

pytestmark = pytest.mark.integration

HELLO = "/demo.Greeter/Hello"


async def _hello(_request: bytes, _context: Any) -> bytes:
    return str(current_claims()["client_id"]).encode()


async def _call(channel: grpc.aio.Channel, token: str) -> bytes:
    result: bytes = await channel.unary_unary(HELLO)(
        b"", metadata=[("authorization", f"Bearer {token}")], timeout=10
    )
    return result


async def _until_refused(channel: grpc.aio.Channel, token: str, timeout: float) -> grpc.RpcError:
    """Call the backend until it refuses ``token`` (no sleep-and-assert: a condition, awaited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await _call(channel, token)
        except grpc.aio.AioRpcError as err:
            return err
        if time.monotonic() > deadline:
            raise TimeoutError(f"the backend still accepts the revoked token after {timeout} s")
        await asyncio.sleep(0.002)


async def test_a_jwt_revoked_at_the_http_endpoint_is_refused_by_a_grpc_backend(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool, services=("keyrotator", "revocation")) as g:
        issued = await g.token("demo", scope="demo.read")
        assert issued.status_code == 200, issued.text
        access = issued.json()["access_token"]

        runtime = await start_verifier(
            issuer=settings.issuer_url,
            audience="demo-api",
            keyrotator_addr=g.suite.addrs["keyrotator"],
            revocation_addr=g.suite.addrs["revocation"],
            nats_url=settings.nats_url,
            subjects=settings.subjects,
            stream=settings.stream.name,
        )
        policy = {"/demo.Greeter/*": MethodPolicy(scopes=frozenset({"demo.read"}))}
        server = grpc.aio.server(interceptors=[AuthInterceptor(runtime.verifier, policy)])
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "demo.Greeter", {"Hello": grpc.unary_unary_rpc_method_handler(_hello)}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            await asyncio.wait_for(runtime.state.wait_current(), timeout=20)
            assert await _call(channel, access) == b"demo"

            started = time.perf_counter()
            revoked = await g.revoke(access)
            assert revoked.status_code == 200, revoked.text
            answered = time.perf_counter()
            err = await _until_refused(channel, access, timeout=20)
            done = time.perf_counter()
            print(
                f"\nHTTP revoke answered in {(answered - started) * 1000:.1f} ms; the gRPC "
                f"backend refused the token {(done - answered) * 1000:.1f} ms later"
            )
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            detail = oauth_error_of(err)
            assert detail is not None and detail.error == "invalid_token"
            assert runtime.verifier.stats.failures == {("rejected", "revoked"): 1}

            # the client's other tokens are unaffected
            other = (await g.token("demo", scope="demo.read")).json()["access_token"]
            assert await _call(channel, other) == b"demo"
        finally:
            await channel.close()
            await server.stop(None)
            await runtime.close()
