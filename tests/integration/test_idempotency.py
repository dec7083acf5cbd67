"""Idempotent admin writes (issue 11, finding 5): a request_id makes a retry safe.

Every admin write (Revoke, Rotate, RevokeKey, CreateClient, DeleteClient) takes an optional
request_id (a UUID). Same id + same body: the stored answer, nothing written again; same id +
another body: INVALID_ARGUMENT; a malformed id: INVALID_ARGUMENT. The record commits with the
write, so a write that committed but whose answer was lost (the connection to PostgreSQL cut
right after COMMIT, then PostgreSQL restarted) is answered once and makes one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from tokenry.core.clock import SystemClock
from tokenry.devstack import EmbeddedNats
from tokenry.servicekit.config import Settings
from tokenry.services.revocation.settings import RevocationSettings
from tokenry.services.revocation.sweeper import Sweeper
from tokenry.store.idempotency import IdempotencyKey, IdempotencyStore, body_hash, lookup
from tokenry.store.outbox import OutboxStore
from tokenry.store.revocations import RevocationStore
from tokenry.v1 import (
    clients_pb2,
    clients_pb2_grpc,
    keyrotator_pb2,
    keyrotator_pb2_grpc,
    revocation_pb2,
)

from issuer_support import IssuerSuite, issuer_suite, oauth_error
from pipeline_support import (
    ShiftedClock,
    Stack,
    make_settings,
    own_postgres,
    revocation_only,
    start_service,
)
from suite import basic, register_clients

pytestmark = pytest.mark.integration


async def events(pool: asyncpg.Pool, like: str) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE $1", like)
    return count


def rid() -> str:
    return str(uuid.uuid4())


# --- Revoke ---------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def svc(settings: Settings, pool: asyncpg.Pool, clock: ShiftedClock) -> AsyncIterator[Stack]:
    async with revocation_only(settings, pool, clock=clock) as s:
        yield s


async def test_a_retried_revoke_gets_the_stored_answer_and_writes_nothing(
    svc: Stack, pool: asyncpg.Pool, clock: ShiftedClock
) -> None:
    request_id = rid()
    first = await svc.revoke(subject="alice", request_id=request_id)
    clock.offset += 5  # without the id, the risen watermark would make a second event
    again = await svc.revoke(subject="alice", request_id=request_id)
    assert again.SerializeToString() == first.SerializeToString()
    assert await events(pool, "%revocation%") == 1
    row = await pool.fetchrow("SELECT caller, body_hash, response FROM idempotency_records")
    assert row["caller"] == "admin" and len(row["body_hash"]) == 32
    assert row["response"] == first.SerializeToString()
    # Without an id the same request is a new revocation (the watermark rose).
    assert (await svc.revoke(subject="alice")).seq > first.seq


async def test_the_same_request_id_with_another_body_is_invalid_argument(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    request_id = rid()
    await svc.revoke(jti="j-1", request_id=request_id)
    for other in ({"jti": "j-2"}, {"jti": "j-1", "reason": "another"}, {"subject": "j-1"}):
        code = await oauth_error(svc.revoke(request_id=request_id, **other))
        assert code[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"), other
    assert await events(pool, "%revocation%") == 1


@pytest.mark.parametrize(
    "bad", ["nope", "1234", str(uuid.uuid4()).replace("-", ""), "{" + str(uuid.uuid4()) + "}"]
)
async def test_a_malformed_request_id_is_invalid_argument(
    svc: Stack, pool: asyncpg.Pool, bad: str
) -> None:
    code = await oauth_error(svc.revoke(jti="j-1", request_id=bad))
    assert code[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_request")
    assert await events(pool, "%revocation%") == 0


async def test_concurrent_retries_with_one_request_id_write_once(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    request_id = rid()
    answers = await asyncio.gather(
        *(svc.revoke(subject="bob", request_id=request_id) for _ in range(8))
    )
    assert len({a.SerializeToString() for a in answers}) == 1
    assert await events(pool, "%revocation%") == 1


async def test_request_ids_are_per_caller_and_swept_after_24_hours(pool: asyncpg.Pool) -> None:
    store = IdempotencyStore(pool)
    request_id = uuid.uuid4()
    mine = IdempotencyKey("admin", request_id, body_hash("Revoke", b"x"))
    async with pool.acquire() as conn, conn.transaction():
        from tokenry.store import idempotency

        await idempotency.record(conn, mine, b"answer")
    assert await store.lookup(mine) == b"answer"
    theirs = IdempotencyKey("other", request_id, body_hash("Revoke", b"y"))
    assert await store.lookup(theirs) is None  # another caller's id space
    await pool.execute("UPDATE idempotency_records SET expires_at = now() - interval '1 s'")
    assert await lookup(pool, mine) is None  # past its 24 h it no longer answers
    sweeper = Sweeper(
        revocations=RevocationStore(pool),
        outbox=OutboxStore(pool),
        clock=SystemClock(),
        outbox_max_age=3600,
        idempotency=store,
    )
    assert (await sweeper.sweep_once()).idempotency == 1
    assert await pool.fetchval("SELECT count(*) FROM idempotency_records") == 0


# --- keys and clients -----------------------------------------------------------------------------


@pytest.fixture
async def suite(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[IssuerSuite]:
    async with issuer_suite(settings, pool) as s:
        yield s


async def test_a_retried_rotate_rotates_once(suite: IssuerSuite, pool: asyncpg.Pool) -> None:
    kr = keyrotator_pb2_grpc.KeyRotatorStub(suite.suite.channel("keyrotator"))
    md = suite.auth("admin")
    request = keyrotator_pb2.RotateRequest(force=True, request_id=rid())
    keys_before = await pool.fetchval("SELECT count(*) FROM signing_keys")
    first = await kr.Rotate(request, metadata=md, timeout=30)
    events_after_first = await events(pool, "%keys%")
    # Without the id this retry would fail (the new successor is too young) or rotate again.
    again = await kr.Rotate(request, metadata=md, timeout=30)
    assert again.SerializeToString() == first.SerializeToString()
    assert await events(pool, "%keys%") == events_after_first
    assert await pool.fetchval("SELECT count(*) FROM signing_keys") == keys_before + 1
    other = keyrotator_pb2.RotateRequest(request_id=request.request_id)  # force=False
    code = await oauth_error(kr.Rotate(other, metadata=md, timeout=30))
    assert code[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_request")

    revoke = keyrotator_pb2.RevokeKeyRequest(kid=first.retiring_kid, request_id=rid())
    r1 = await kr.RevokeKey(revoke, metadata=md, timeout=30)
    n = await events(pool, "%keys%")
    r2 = await kr.RevokeKey(revoke, metadata=md, timeout=30)
    assert r1.seq > 0 and r2.SerializeToString() == r1.SerializeToString()
    assert await events(pool, "%keys%") == n


async def test_a_retried_create_client_returns_the_same_secret_never_stored_in_clear(
    suite: IssuerSuite, pool: asyncpg.Pool
) -> None:
    clients = clients_pb2_grpc.ClientsStub(suite.suite.channel("issuer"))
    md = suite.auth("admin")
    info = clients_pb2.ClientInfo(
        client_id="svc-idem",
        grant_types=["client_credentials"],
        scopes=["demo.read"],
        audiences=["demo-api"],
    )
    request = clients_pb2.CreateClientRequest(client=info, request_id=rid())
    first = await clients.CreateClient(request, metadata=md, timeout=10)
    again = await clients.CreateClient(request, metadata=md, timeout=10)
    assert first.client_secret and again.client_secret == first.client_secret
    assert again.SerializeToString() == first.SerializeToString()
    assert await events(pool, "%clients.created%") == 1
    stored = await pool.fetchval("SELECT response FROM idempotency_records")
    assert first.client_secret.encode() not in stored  # sealed: only a keyed hash is at rest
    # Another body under that id is refused, and a new id is a new (refused) registration.
    other = clients_pb2.CreateClientRequest(client=info, request_id=request.request_id)
    other.client.description = "changed"
    code = await oauth_error(clients.CreateClient(other, metadata=md, timeout=10))
    assert code[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_request")

    delete = clients_pb2.DeleteClientRequest(client_id="svc-idem", request_id=rid())
    d1 = await clients.DeleteClient(delete, metadata=md, timeout=10)
    d2 = await clients.DeleteClient(delete, metadata=md, timeout=10)  # the client is gone
    assert d1.revocation_seq > 0 and d2.SerializeToString() == d1.SerializeToString()
    assert await events(pool, "%clients.deleted%") == 1


# --- the answer lost after COMMIT, PostgreSQL restarted ---------------------------------------


class CommitCutProxy:
    """TCP → PostgreSQL's Unix socket. Once armed, the first connection that sends ``marker``
    and then COMMIT has PostgreSQL's answer to the COMMIT dropped and both sides cut: the
    transaction committed, and the service never learns it (the answer lost after commit).
    The marker (text of the idempotency record's SQL) singles out the admin write's
    transaction from the service's other ones (the leader loop, the relay)."""

    def __init__(self, socket_path: str, marker: bytes = b"idempotency_records") -> None:
        self._target = socket_path
        self._marker = marker
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.armed = False
        self.cut = asyncio.Event()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        committing = asyncio.Event()
        marked = False

        async def upstream() -> None:
            nonlocal marked
            while data := await reader.read(65536):
                marked = marked or (self.armed and self._marker in data)
                if self.armed and marked and b"COMMIT" in data:
                    self.armed = False
                    committing.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if committing.is_set():  # PostgreSQL's answer to COMMIT: never delivered
                    writer.transport.abort()
                    up_writer.transport.abort()
                    self.cut.set()
                    return
                writer.write(data)
                await writer.drain()

        # Either side closing closes the other (as a TCP peer would see it).
        pipes = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        with contextlib.suppress(Exception):
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)

    async def close(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_rotate_whose_answer_was_lost_after_commit_rotates_once(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    """The issue's case: Rotate commits, answers UNAVAILABLE, and the retry must not rotate a
    second time."""
    pg = await own_postgres(tmp_path)
    proxy = CommitCutProxy(str(pg.socket_dir / ".s.PGSQL.5432"))
    await proxy.start()
    settings = make_settings(proxy.dsn(), nats_server.url)
    direct = await asyncpg.create_pool(pg.dsn(), min_size=1, max_size=2)
    secrets = await register_clients(direct, settings)
    rotator = await start_service("keyrotator", settings)
    channel = grpc.aio.insecure_channel(rotator.addr)
    try:
        kr = keyrotator_pb2_grpc.KeyRotatorStub(channel)
        md = [("authorization", basic("admin", secrets["admin"]))]
        keys_before = await direct.fetchval("SELECT count(*) FROM signing_keys")
        request = keyrotator_pb2.RotateRequest(force=True, request_id=rid())
        proxy.armed = True
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await kr.Rotate(request, metadata=md, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and proxy.cut.is_set()
        assert await direct.fetchval("SELECT count(*) FROM signing_keys") == keys_before + 1
        key_events = await events(direct, "%keys%")
        answer = await kr.Rotate(request, metadata=md, timeout=30)  # the retry
        active = await direct.fetchval(
            "SELECT kid FROM signing_keys WHERE state = 'active' AND alg = 'ES256'"
        )
        assert answer.active_kid == active and answer.seq > 0
        assert await direct.fetchval("SELECT count(*) FROM signing_keys") == keys_before + 1
        assert await events(direct, "%keys%") == key_events
    finally:
        await channel.close()
        await rotator.stop()
        await direct.close()
        await proxy.close()
        await asyncio.to_thread(pg.stop)


async def retry_until_answered(
    stack: Stack, timeout: float, **request: object
) -> revocation_pb2.RevokeResponse:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await stack.revoke(timeout=5, **request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_postgres_restart_after_and_before_commit_one_answer_one_event(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    pg = await own_postgres(tmp_path)
    proxy = CommitCutProxy(str(pg.socket_dir / ".s.PGSQL.5432"))
    await proxy.start()
    settings = make_settings(proxy.dsn(), nats_server.url)
    direct = await asyncpg.create_pool(pg.dsn(), min_size=1, max_size=2)
    options = RevocationSettings(sweep_interval=3600, relay=False)
    secrets = await register_clients(direct, settings)
    revocation = await start_service("revocation", settings, options=options)
    stack = Stack(settings, direct, secrets, None, revocation)
    try:
        # After commit: the revocation commits, its answer is lost, the service answers
        # UNAVAILABLE; PostgreSQL restarts; the client retries with the same request_id.
        request_id = rid()
        proxy.armed = True
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.revoke(subject="alice", request_id=request_id)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proxy.cut.is_set()
        committed = await direct.fetchval("SELECT seq FROM revocations WHERE value = 'alice'")
        assert committed is not None  # it did commit
        await direct.close()
        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(pg.start)
        direct = await asyncpg.create_pool(pg.dsn(), min_size=1, max_size=2)
        answer = await retry_until_answered(stack, 30, subject="alice", request_id=request_id)
        assert answer.seq == committed
        assert await events(direct, "%revocation%") == 1

        # Before commit: PostgreSQL is down when the request arrives (fails fast, nothing
        # written), then restarts; the retry writes exactly once.
        second = rid()
        await direct.close()
        await asyncio.to_thread(pg.stop)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.revoke(subject="bob", request_id=second, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.to_thread(pg.start)
        direct = await asyncpg.create_pool(pg.dsn(), min_size=1, max_size=2)
        first = await retry_until_answered(stack, 30, subject="bob", request_id=second)
        again = await retry_until_answered(stack, 30, subject="bob", request_id=second)
        assert again.SerializeToString() == first.SerializeToString()
        assert await events(direct, "%revocation%") == 2
    finally:
        await stack.close()
        await direct.close()
        await proxy.close()
        await asyncio.to_thread(pg.stop)
