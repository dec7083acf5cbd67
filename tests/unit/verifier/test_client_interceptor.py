"""Client side: the token sources (cache, early refresh, single flight) with an in-memory
issuer, and the aio/sync client interceptors against an in-process protected server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tokenry.client import (
    ClientSecretBasic,
    IssuedToken,
    RefreshPolicy,
    SyncBearerInterceptor,
    SyncTokenSource,
    TokenSource,
    bearer_interceptors,
)
from tokenry.core.clock import FakeClock
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.v1 import issuer_pb2
from tokenry.verifier.interceptor import AuthInterceptor
from tokenry.verifier.sync_interceptor import SyncAuthInterceptor, VerifierLoop

from .echo import POLICIES, aio_handlers, sync_handlers
from .minting import NOW, FakeState, Minter, make_verifier


class MemoryIssuer:
    """Mints a new token per fetch (async and sync); can be held at a gate or fail."""

    def __init__(self, minter: Minter, expires_in: float = 600.0) -> None:
        self.minter = minter
        self.expires_in = expires_in
        self.fetches = 0
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.issued: list[str] = []

    def _mint(self) -> IssuedToken:
        self.fetches += 1
        if self.fail:
            raise ConnectionError("issuer unreachable")
        token = self.minter.token()
        self.issued.append(token)
        return IssuedToken(token, self.expires_in)

    async def fetch(self) -> IssuedToken:
        if self.gate is not None:
            await self.gate.wait()
        return self._mint()


class SyncMemoryIssuer(MemoryIssuer):
    def __init__(self, minter: Minter, expires_in: float = 600.0) -> None:
        super().__init__(minter, expires_in)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def fetch(self) -> IssuedToken:  # type: ignore[override]
        self.entered.set()
        self.release.wait(10)
        return self._mint()


def test_client_secret_basic_is_form_urlencoded_base64() -> None:
    ((key, value),) = ClientSecretBasic("svc a", "s3cr:t+/").apply(issuer_pb2.TokenRequest())
    assert key == "authorization"
    import base64

    assert base64.b64decode(value.removeprefix("Basic ")) == b"svc+a:s3cr%3At%2B%2F"
    assert "s3cr" not in repr(ClientSecretBasic("svc", "s3cr"))


def test_the_refresh_plan_refreshes_early_and_stops_before_expiry() -> None:
    held = RefreshPolicy().plan(IssuedToken("t", 600), fetched_at=100.0)
    assert (held.refresh_at, held.usable_until) == (550.0, 670.0)
    short = RefreshPolicy().plan(IssuedToken("t", 20), fetched_at=0.0)
    assert short.usable_until == 18.0 and short.refresh_at == 15.0


async def test_a_token_is_cached_then_refreshed_early_by_one_background_fetch() -> None:
    clock = FakeClock()
    issuer = MemoryIssuer(Minter())
    source = TokenSource(issuer, clock=clock)
    first = await source.token()
    assert await source.token() == first and issuer.fetches == 1
    clock.advance(460)  # past 75 % of 600 s, still usable
    issuer.gate = asyncio.Event()
    answers = [await source.token() for _ in range(10)]
    assert answers == [first] * 10  # callers are not held up by the early refresh
    issuer.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert await source.token() != first and issuer.fetches == 2


async def test_concurrent_callers_without_a_usable_token_share_one_fetch() -> None:
    issuer = MemoryIssuer(Minter())
    issuer.gate = asyncio.Event()
    source = TokenSource(issuer, clock=FakeClock())
    waiters = [asyncio.create_task(source.token()) for _ in range(25)]
    await asyncio.sleep(0)
    issuer.gate.set()
    assert len(set(await asyncio.gather(*waiters))) == 1 and issuer.fetches == 1


async def test_invalidate_forces_one_refetch_for_a_burst_of_refusals() -> None:
    issuer = MemoryIssuer(Minter())
    source = TokenSource(issuer, clock=FakeClock())
    refused = await source.token()
    for _ in range(5):
        source.invalidate(refused)
    fresh = await source.token()
    source.invalidate(refused)  # late refusal of the old token: ignored
    assert await source.token() == fresh and issuer.fetches == 2


async def test_a_failed_early_refresh_keeps_the_token_and_backs_off() -> None:
    clock = FakeClock()
    issuer = MemoryIssuer(Minter())
    source = TokenSource(issuer, clock=clock)
    first = await source.token()
    clock.advance(460)
    issuer.fail = True
    assert await source.token() == first
    await asyncio.sleep(0)
    assert await source.token() == first and issuer.fetches == 2  # backing off
    clock.advance(1.0)
    issuer.fail = False
    await source.token()
    for _ in range(5):
        await asyncio.sleep(0)
    assert await source.token() != first and issuer.fetches == 3
    clock.advance(600)  # expired: callers wait; a failure surfaces to them
    issuer.fail = True
    with pytest.raises(ConnectionError):
        await source.token()


def test_sync_source_single_flight_and_early_refresh() -> None:
    clock = FakeClock()
    issuer = SyncMemoryIssuer(Minter())
    source = SyncTokenSource(issuer, clock=clock)
    issuer.release.clear()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(source.token) for _ in range(8)]
        assert issuer.entered.wait(10)
        issuer.release.set()
        tokens = {f.result() for f in futures}
    assert len(tokens) == 1 and issuer.fetches == 1
    first = tokens.pop()
    clock.advance(460)
    assert source.token() != first and issuer.fetches == 2  # this caller refreshed early
    source.invalidate("not-the-current-one")
    assert issuer.fetches == 2


# --- the interceptors against a protected server -------------------------------------------------


@pytest.fixture
async def protected() -> AsyncIterator[tuple[str, Minter, FakeState]]:
    minter = Minter()
    verifier, _, state, _ = await make_verifier(minter)
    server = grpc.aio.server(interceptors=[AuthInterceptor(verifier, POLICIES)])
    server.add_generic_rpc_handlers(aio_handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", minter, state
    finally:
        await server.stop(None)


def _revoke(state: FakeState, token: str) -> None:
    import jwt

    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    state.revocations.apply(Revocation(RevocationKind.JTI, jti, 0, int(NOW) + 3600))


async def test_aio_client_attaches_refreshes_and_retries_once(
    protected: tuple[str, Minter, FakeState],
) -> None:
    addr, minter, state = protected
    issuer = MemoryIssuer(minter)
    source = TokenSource(issuer)
    async with grpc.aio.insecure_channel(addr, interceptors=bearer_interceptors(source)) as ch:
        who = ch.unary_unary("/t.Echo/Who")
        assert await who(b"", timeout=10) == b"svc-a"
        assert await who(b"", timeout=10) == b"svc-a" and issuer.fetches == 1
        assert [m async for m in ch.unary_stream("/t.Echo/Stream")(b"")] == [b"svc-a"] * 2
        assert await ch.stream_unary("/t.Echo/Collect")(iter([b"x"])) == b"svc-a"
        _revoke(state, issuer.issued[-1])  # the server now refuses the cached token
        assert await who(b"", timeout=10) == b"svc-a"  # refused, refetched, retried
        assert issuer.fetches == 2
        # A caller's own authorization entry is left alone (and here refused).
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await who(b"", metadata=[("authorization", "Bearer nope")], timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # A token the server keeps refusing: one retry, then the error reaches the caller.
        state.revocations.apply(
            Revocation(RevocationKind.CLIENT, "svc-a", int(NOW) + 5, int(NOW) + 3600)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await who(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert issuer.fetches == 3


async def test_aio_client_surfaces_issuer_failures(
    protected: tuple[str, Minter, FakeState],
) -> None:
    addr, minter, _ = protected
    issuer = MemoryIssuer(minter)
    issuer.fail = True
    async with grpc.aio.insecure_channel(
        addr, interceptors=bearer_interceptors(TokenSource(issuer))
    ) as ch:
        with pytest.raises(ConnectionError):
            await ch.unary_unary("/t.Echo/Who")(b"", timeout=10)


@pytest.fixture
def sync_protected() -> Iterator[tuple[str, Minter, FakeState]]:
    minter = Minter()
    with VerifierLoop.start() as vl:
        verifier, _, state, _ = vl.run(make_verifier(minter))
        server = grpc.server(
            ThreadPoolExecutor(4), interceptors=[SyncAuthInterceptor(verifier, POLICIES)]
        )
        server.add_generic_rpc_handlers(sync_handlers())
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}", minter, state
        finally:
            server.stop(None)


def test_sync_client_attaches_refreshes_and_retries_once(
    sync_protected: tuple[str, Minter, FakeState],
) -> None:
    addr, minter, state = sync_protected
    issuer = SyncMemoryIssuer(minter)
    source = SyncTokenSource(issuer)
    channel = grpc.intercept_channel(grpc.insecure_channel(addr), SyncBearerInterceptor(source))
    try:
        who = channel.unary_unary("/t.Echo/Who")
        assert who(b"", timeout=10) == b"svc-a"
        assert list(channel.unary_unary("/t.Echo/Who").future(b"").result()) != []
        assert list(channel.unary_stream("/t.Echo/Stream")(b"")) == [b"svc-a"] * 2
        assert channel.stream_unary("/t.Echo/Collect")(iter([b"x"])) == b"svc-a"
        assert issuer.fetches == 1
        _revoke(state, issuer.issued[-1])
        assert who(b"", timeout=10) == b"svc-a"
        assert issuer.fetches == 2
    finally:
        channel.close()
