"""The sync (thread-pool) server interceptor in-process, sharing one verifier with an aio one."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokenry.core.clock import FakeClock
from tokenry.verifier._verifier import Verifier
from tokenry.verifier.interceptor import AuthInterceptor
from tokenry.verifier.sync_interceptor import SyncAuthInterceptor, VerifierLoop

from .echo import POLICIES, aio_handlers, error_reason, sync_handlers
from .minting import FakeJwksSource, FakeState, MemoryIntrospector, Minter, make_verifier


@dataclass
class SyncBackend:
    channel: grpc.Channel
    verifier: Verifier
    state: FakeState
    source: FakeJwksSource
    minter: Minter
    introspector: MemoryIntrospector
    loop: VerifierLoop
    clock: FakeClock

    def call(self, method: str, token: str | None) -> bytes:
        metadata = [] if token is None else [("authorization", f"Bearer {token}")]
        result: bytes = self.channel.unary_unary(method)(b"", metadata=metadata, timeout=10)
        return result


@pytest.fixture
def backend() -> Iterator[SyncBackend]:
    minter = Minter()
    introspector = MemoryIntrospector()
    with VerifierLoop.start() as vl:
        verifier, source, state, clock = vl.run(make_verifier(minter, introspector=introspector))
        server = grpc.server(
            ThreadPoolExecutor(8), interceptors=[SyncAuthInterceptor(verifier, POLICIES)]
        )
        server.add_generic_rpc_handlers(sync_handlers())
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield SyncBackend(channel, verifier, state, source, minter, introspector, vl, clock)
        finally:
            channel.close()
            server.stop(None)


def test_a_valid_token_reaches_every_kind_of_handler_with_its_claims(
    backend: SyncBackend,
) -> None:
    token = backend.minter.token()
    md = [("authorization", f"Bearer {token}")]
    ch = backend.channel
    assert backend.call("/t.Echo/Who", token) == b"svc-a"  # first sight: in the worker thread
    assert backend.call("/t.Echo/Who", token) == b"svc-a"  # a hit: decided by the interceptor
    assert list(ch.unary_stream("/t.Echo/Stream")(b"", metadata=md)) == [b"svc-a"] * 2
    assert ch.stream_unary("/t.Echo/Collect")(iter([b"1", b"2"]), metadata=md) == b"svc-a"
    assert list(ch.stream_stream("/t.Echo/Chat")(iter([b"1", b"2"]), metadata=md)) == [b"svc-a"] * 2
    fresh = backend.minter.token()  # first sight on a streaming method
    assert (
        list(
            ch.unary_stream("/t.Echo/Stream")(b"", metadata=[("authorization", f"Bearer {fresh}")])
        )
        == [b"svc-a"] * 2
    )
    assert backend.verifier.stats.verified == 2


def test_many_threads_at_once(backend: SyncBackend) -> None:
    tokens = [backend.minter.token() for _ in range(20)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: backend.call("/t.Echo/Who", t), tokens * 5))
    assert answers == [b"svc-a"] * 100


@pytest.mark.parametrize(
    ("token_of", "code", "reason"),
    [
        (lambda m: None, grpc.StatusCode.UNAUTHENTICATED, "missing_token"),
        (lambda m: "garbage", grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        (lambda m: m.token(exp=1, iat=0), grpc.StatusCode.UNAUTHENTICATED, "expired"),
        (lambda m: Minter("elsewhere").token(), grpc.StatusCode.UNAUTHENTICATED, "unknown_kid"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(
    backend: SyncBackend, token_of, code: grpc.StatusCode, reason: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        backend.call("/t.Echo/Who", token_of(backend.minter))
    assert error_reason(err.value)[0::2] == (code, reason)


def test_scopes_public_methods_and_health(backend: SyncBackend) -> None:
    with pytest.raises(grpc.RpcError) as err:
        backend.call("/t.Admin/Do", backend.minter.token())
    assert error_reason(err.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
    cached = backend.minter.token()
    backend.call("/t.Echo/Who", cached)
    with pytest.raises(grpc.RpcError) as err:  # the cached path checks scopes too
        backend.call("/t.Admin/Do", cached)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert backend.call("/t.Echo/Open", None) == b"anonymous"
    status = health_pb2_grpc.HealthStub(backend.channel).Check(health_pb2.HealthCheckRequest())
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        backend.call("/t.Echo/Nope", backend.minter.token())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_a_new_key_is_fetched_on_the_verifier_loop(backend: SyncBackend) -> None:
    rotated = Minter("rotated")
    backend.source.serve(backend.minter, rotated)
    backend.loop.loop.call_soon_threadsafe(backend.clock.advance, 5)  # past the rate limit
    assert backend.call("/t.Echo/Who", rotated.token()) == b"svc-a"


def test_stale_state_and_the_introspection_fallback(backend: SyncBackend) -> None:
    token = backend.introspector.issue(backend.minter.token(), backend.minter.claims())
    backend.state.stale = True
    with pytest.raises(grpc.RpcError) as err:
        backend.call("/t.Echo/Who", token)
    assert error_reason(err.value)[0::2] == (grpc.StatusCode.UNAVAILABLE, "stale")
    assert backend.call("/t.Echo/Intro", token) == b"svc-a"
    assert backend.introspector.calls == 1


def test_one_verifier_serves_a_sync_and_an_aio_server(backend: SyncBackend) -> None:
    """The same verifier object backs both interceptors: a token seen by one is a hit for
    the other."""

    async def serve_aio_once(token: str) -> bytes:
        server = grpc.aio.server(interceptors=[AuthInterceptor(backend.verifier, POLICIES)])
        server.add_generic_rpc_handlers(aio_handlers())
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                answer: bytes = await ch.unary_unary("/t.Echo/Who")(
                    b"", metadata=[("authorization", f"Bearer {token}")], timeout=10
                )
                return answer
        finally:
            await server.stop(None)

    token = backend.minter.token()
    assert backend.call("/t.Echo/Who", token) == b"svc-a"
    hits = backend.verifier.stats.hits
    assert backend.loop.run(serve_aio_once(token)) == b"svc-a"
    assert backend.verifier.stats.hits == hits + 1 and backend.verifier.stats.verified == 1


def test_a_verifier_without_a_loop_is_refused() -> None:
    import asyncio

    verifier, *_ = asyncio.run(make_verifier(Minter()))
    verifier.bind_loop(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event loop"):
        SyncAuthInterceptor(verifier)
