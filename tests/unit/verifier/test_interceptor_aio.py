"""The grpc.aio server interceptor in-process: a real server, a verifier over in-memory keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokenry.verifier._verifier import Verifier
from tokenry.verifier.interceptor import AuthInterceptor

from .echo import POLICIES, aio_handlers, error_reason
from .minting import FakeState, MemoryIntrospector, Minter, make_verifier


@dataclass
class Backend:
    channel: grpc.aio.Channel
    verifier: Verifier
    state: FakeState
    minter: Minter
    introspector: MemoryIntrospector

    def call(self, method: str, token: str | None, **kwargs):  # type: ignore[no-untyped-def]
        metadata = [] if token is None else [("authorization", f"Bearer {token}")]
        return self.channel.unary_unary(method)(b"", metadata=metadata, timeout=10, **kwargs)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    minter = Minter()
    introspector = MemoryIntrospector()
    verifier, _, state, _ = await make_verifier(minter, introspector=introspector)
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(verifier, POLICIES)],
        migration_thread_pool=ThreadPoolExecutor(4),
    )
    server.add_generic_rpc_handlers(aio_handlers())
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Backend(channel, verifier, state, minter, introspector)
    finally:
        await channel.close()
        await server.stop(None)


async def test_a_valid_token_reaches_every_kind_of_handler_with_its_claims(
    backend: Backend,
) -> None:
    token = backend.minter.token()
    md = [("authorization", f"Bearer {token}")]
    ch = backend.channel
    assert await backend.call("/t.Echo/Who", token) == b"svc-a"
    assert [m async for m in ch.unary_stream("/t.Echo/Stream")(b"", metadata=md)] == [b"svc-a"] * 2
    assert await ch.stream_unary("/t.Echo/Collect")(iter([b"1", b"2"]), metadata=md) == b"svc-a"
    chat = ch.stream_stream("/t.Echo/Chat")(iter([b"1", b"2"]), metadata=md)
    assert [m async for m in chat] == [b"svc-a"] * 2
    # Sync handlers run in the server's thread pool: the claims are set there too.
    assert await backend.call("/t.Echo/SyncWho", token) == b"svc-a"
    sync_stream = ch.unary_stream("/t.Echo/SyncStream")(b"", metadata=md)
    assert [m async for m in sync_stream] == [b"svc-a"] * 2
    assert backend.verifier.stats.verified == 1 and backend.verifier.stats.hits >= 5


@pytest.mark.parametrize(
    ("token_of", "reason"),
    [
        (lambda m: None, "missing_token"),
        (lambda m: "garbage", "malformed"),
        (lambda m: m.token(aud="other-api"), "bad_audience"),
        (lambda m: m.token(exp=1, iat=0), "expired"),
        (lambda m: Minter().token(), "bad_signature"),
    ],
)
async def test_bad_tokens_are_unauthenticated_with_a_reason(
    backend: Backend, token_of, reason: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await backend.call("/t.Echo/Who", token_of(backend.minter))
    assert error_reason(err.value) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_token", reason)


async def test_a_token_sent_elsewhere_than_authorization_is_ignored(backend: Backend) -> None:
    token = backend.minter.token()
    call = backend.channel.unary_unary("/t.Echo/Who")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"", metadata=[("x-access-token", token)], timeout=10)
    assert error_reason(err.value)[2] == "missing_token"


async def test_a_missing_scope_is_permission_denied(backend: Backend) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await backend.call("/t.Admin/Do", backend.minter.token(scope="demo.read"))
    assert error_reason(err.value) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "insufficient_scope",
        "insufficient_scope",
    )
    assert await backend.call("/t.Admin/Do", backend.minter.token(scope="demo.admin")) == b"svc-a"


async def test_public_methods_and_health_need_no_token(backend: Backend) -> None:
    assert await backend.call("/t.Echo/Open", None) == b"anonymous"
    resp = await health_pb2_grpc.HealthStub(backend.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_unknown_methods_do_not_tell_anonymous_callers_they_do_not_exist(
    backend: Backend,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await backend.call("/t.Echo/Nope", None)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as authenticated:
        await backend.call("/t.Echo/Nope", backend.minter.token())
    assert authenticated.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_stale_state_is_unavailable_unless_the_method_may_introspect(
    backend: Backend,
) -> None:
    token = backend.introspector.issue(backend.minter.token(), backend.minter.claims())
    assert await backend.call("/t.Echo/Who", token) == b"svc-a"
    backend.state.stale = True
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await backend.call("/t.Echo/Who", token)
    assert error_reason(err.value) == (
        grpc.StatusCode.UNAVAILABLE,
        "temporarily_unavailable",
        "stale",
    )
    assert await backend.call("/t.Echo/Intro", token) == b"svc-a"
    assert backend.introspector.calls == 1
    backend.introspector.revoked.add(backend.introspector.issued[token]["jti"])
    with pytest.raises(grpc.aio.AioRpcError) as revoked:
        await backend.call("/t.Echo/Intro", token)
    assert error_reason(revoked.value)[2] == "inactive"
