"""The introspector drops a revoked token's cached answer from PostgreSQL, not only from NATS.

Issue 11: ``Introspect`` (active) → ``Revoke`` returns → an immediate ``Introspect`` answered
``active: true`` in 6 of 10 trials, because only the NATS event invalidated the positive cache.
Now the outbox trigger's NOTIFY wakes the introspector's outbox feed, which reads the new rows
and invalidates at once; the NATS event is the backstop; and when both are blocked, the cache's
max age bounds how long an answer can outlive its revocation.

Real PostgreSQL and NATS. The introspector's NATS link and its LISTEN connection go through
fault proxies, so a test can cut them while the services' other connections keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from tokenry.servicekit.config import Settings
from tokenry.servicekit.server import serve
from tokenry.services.introspector import app as introspector_app
from tokenry.store.outbox_feed import AppliedSeq, OutboxFeedSettings
from tokenry.v1 import (
    introspector_pb2,
    introspector_pb2_grpc,
    revocation_pb2,
    revocation_pb2_grpc,
)

from pipeline_support import TcpProxy
from suite import Suite, basic, run_suite, wait_serving

pytestmark = pytest.mark.integration
INACTIVE = introspector_pb2.IntrospectResponse(active=False)
#: detect a dead LISTEN link and reconnect quickly (the defaults are 1 s / 2 s / 2 s)
FAST_FEED = OutboxFeedSettings(poll_interval=0.2, timeout=0.5, max_backoff=0.2)


class UnixBlackhole:
    """A forwarder for PostgreSQL's Unix socket that can blackhole its links: bytes are taken
    and dropped, nothing is closed, no error reaches either side (a silent partition, as in
    asyncpg's test_adversity). Links opened before :meth:`resume` stay dead after it."""

    _ids = itertools.count()

    def __init__(self, target_dir: Path, own_dir: Path, port: int = 5432) -> None:
        self._target = str(target_dir / f".s.PGSQL.{port}")
        self._path = own_dir / f".s.PGSQL.{port}"
        self.dir = own_dir
        self._server: asyncio.Server | None = None
        self._dead_upto = -1  # links with an id <= this are blackholed
        self._blackholed = False
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, path=str(self._path))

    def dsn(self, database_url: str) -> str:
        parts = urlsplit(database_url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["host"] = str(self.dir)
        return urlunsplit(parts._replace(query=urlencode(query)))

    def blackhole(self) -> None:
        self._blackholed = True
        self._dead_upto = next(self._ids)

    def resume(self) -> None:
        self._dead_upto = next(self._ids)  # what was opened while blackholed stays dead
        self._blackholed = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = next(self._ids)
        self._writers.add(writer)
        if self._blackholed:
            await self._pipe(link, reader, None)  # the handshake goes nowhere
            return
        up_reader, up_writer = await asyncio.open_unix_connection(self._target)
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(link, reader, up_writer),
            self._pipe(link, up_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(
        self, link: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if writer is None or link <= self._dead_upto:
                    continue  # dropped on the floor
                writer.write(data)
                await writer.drain()
        finally:
            if writer is not None and link > self._dead_upto:
                writer.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Faults:
    pg: UnixBlackhole
    nats: TcpProxy
    applied: AppliedSeq
    max_age: float


@contextlib.asynccontextmanager
async def introspector(
    suite: Suite, tmp_path: Path, *, max_age: float = 5.0
) -> AsyncIterator[Faults]:
    """The introspector, built with its LISTEN connection and its NATS link behind proxies."""
    settings = suite.settings
    host = parse_qs(urlsplit(settings.database_url).query)["host"][0]
    pg = UnixBlackhole(Path(host), tmp_path)
    await pg.start()
    nats_host, nats_port = urlsplit(settings.nats_url).hostname, urlsplit(settings.nats_url).port
    assert nats_host is not None and nats_port is not None
    nats = TcpProxy(nats_host, nats_port)
    await nats.start()
    applied = AppliedSeq()
    options = introspector_app.IntrospectorOptions(
        cache_max_age=max_age, listen_url=pg.dsn(settings.database_url), feed=FAST_FEED
    )
    service = introspector_app.build(
        replace(settings, nats_url=nats.url), "127.0.0.1", 0, options=options, applied=applied
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(service, stop, grace=1, service_names=introspector_app.SERVICE_NAMES)
    )
    try:
        suite.addrs["introspector"] = f"127.0.0.1:{service.port}"
        await wait_serving(suite.addrs["introspector"])
        yield Faults(pg, nats, applied, max_age)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await nats.close()
        await pg.close()


async def introspect(
    suite: Suite, token: str, caller: str = "demo-api"
) -> introspector_pb2.IntrospectResponse:
    stub = introspector_pb2_grpc.IntrospectorStub(suite.channel("introspector"))
    return await stub.Introspect(
        introspector_pb2.IntrospectRequest(token=token),
        metadata=[("authorization", basic(caller, suite.secrets[caller]))],
        timeout=10,
    )


async def revoke(suite: Suite, client_id: str = "demo", **target: str) -> int:
    """Revoke and return the seq of the revocation's outbox event."""
    stub = revocation_pb2_grpc.RevocationStub(suite.channel("revocation"))
    resp = await stub.Revoke(
        revocation_pb2.RevokeRequest(**target),
        metadata=[("authorization", basic(client_id, suite.secrets[client_id]))],
        timeout=10,
    )
    assert resp.seq > 0
    return resp.seq


@pytest.fixture
async def suite(settings: Settings, pool: asyncpg.Pool):  # type: ignore[no-untyped-def]
    async with run_suite(settings, pool) as running:  # the introspector comes separately
        yield running


async def warm(suite: Suite, token: str, caller: str = "demo-api") -> None:
    assert (await introspect(suite, token, caller)).active
    assert (await introspect(suite, token, caller)).active  # from the positive cache


@pytest.mark.parametrize("token_format", ["jwt", "opaque"])
async def test_once_invalidated_up_to_the_revocations_seq_the_answer_is_inactive(
    suite: Suite, tmp_path: Path, token_format: str
) -> None:
    """Revoke's seq, awaited on the introspector's hook, then an immediate Introspect: no sleep,
    and NATS cut, so the NOTIFY path alone does it."""
    async with introspector(suite, tmp_path) as faults:
        faults.nats.cut()
        token = (await suite.token(token_format=token_format)).access_token
        await warm(suite, token)
        seq = await revoke(suite, token=token)
        await asyncio.wait_for(faults.applied.reached(seq), 5)
        assert await introspect(suite, token) == INACTIVE


async def test_a_subject_revocation_drops_the_tokens_issued_before_its_watermark(
    suite: Suite, tmp_path: Path
) -> None:
    async with introspector(suite, tmp_path) as faults:
        faults.nats.cut()
        tokens = [(await suite.token(token_format=f)).access_token for f in ("jwt", "opaque")]
        bystander = (await suite.token(client_id="other")).access_token
        for token in tokens:
            await warm(suite, token)
        await warm(suite, bystander, caller="admin")
        seq = await revoke(suite, client_id="admin", subject="demo")
        await asyncio.wait_for(faults.applied.reached(seq), 5)
        for token in tokens:
            assert await introspect(suite, token) == INACTIVE
        assert (await introspect(suite, bystander, caller="admin")).active


async def test_with_notify_and_nats_both_blocked_the_answer_flips_within_the_max_age(
    suite: Suite, tmp_path: Path
) -> None:
    """Both invalidation paths blackholed: the cached answer lives at most ``max_age``. Then the
    LISTEN link heals: the feed reconnects, re-reads from its last seq and catches a revocation
    it never got a notification for, well before that entry's own max age."""
    async with introspector(suite, tmp_path, max_age=3.0) as faults:
        token = (await suite.token(token_format="opaque")).access_token
        cached_by = time.monotonic()
        await warm(suite, token)
        faults.pg.blackhole()
        faults.nats.cut()
        seq = await revoke(suite, token=token)
        assert faults.applied.seq < seq, "the feed read the revocation through the blackhole"
        if time.monotonic() - cached_by < faults.max_age / 2:
            assert (await introspect(suite, token)).active, "the cache answered (paths blocked)"
        while (await introspect(suite, token)).active:
            assert time.monotonic() - cached_by < faults.max_age + 0.5, "outlived the max age"
            await asyncio.sleep(0.02)
        flipped = time.monotonic() - cached_by
        assert faults.applied.seq < seq, "nothing but the max age flipped it"
        print(f"\nboth paths blocked: the answer flipped {flipped:.2f} s after it was cached")

        # Cached and revoked while still blackholed; then the LISTEN link heals.
        late = (await suite.token(token_format="jwt")).access_token
        late_cached_by = time.monotonic()
        await warm(suite, late)
        late_seq = await revoke(suite, token=late)
        assert (await introspect(suite, late)).active or (
            time.monotonic() - late_cached_by > faults.max_age / 2
        )
        faults.pg.resume()
        await asyncio.wait_for(faults.applied.reached(late_seq), faults.max_age)
        assert await introspect(suite, late) == INACTIVE
        healed = time.monotonic() - late_cached_by
        assert healed < faults.max_age, "flipped by age, not by the reconnected feed"
        print(f"after the heal: the feed caught up {healed:.2f} s after the entry was cached")
