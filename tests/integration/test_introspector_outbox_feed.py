"""The outbox feed the introspector invalidates from (``tokenry.store.outbox_feed``), against a
real PostgreSQL of its own: rows arrive in seq order on NOTIFY, the feed follows PostgreSQL
through a restart and re-reads from its last seq, and it resets its handler when rows it never
read were swept."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest

from tokenry.core.events import OutboxEvent
from tokenry.devstack import EmbeddedPostgres
from tokenry.store import outbox
from tokenry.store.outbox import OutboxRow
from tokenry.store.outbox_feed import OutboxFeed, OutboxFeedSettings

from pipeline_support import own_postgres

pytestmark = pytest.mark.integration
FAST = OutboxFeedSettings(poll_interval=0.2, timeout=1.0, max_backoff=0.2)


class Recorder:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.subjects: list[str] = []
        self.resets = 0
        self.connected = asyncio.Event()  # set by the first reset: the feed is connected
        self.notifications = 0
        self.held = False

    def notified(self) -> None:
        self.notifications += 1
        self.held = True

    def caught_up(self) -> None:
        self.held = False

    def apply(self, rows: Sequence[OutboxRow]) -> None:
        self.seqs += [r.seq for r in rows]
        self.subjects += [r.subject for r in rows]

    def reset(self) -> None:
        self.resets += 1
        self.connected.set()


async def produce(dsn: str, *subjects: str) -> int:
    """Commit events the way every producer does (outbox.append in its transaction)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            seq = 0
            for subject in subjects:
                seq = await outbox.append(conn, OutboxEvent(uuid.uuid4(), subject, b"x"))
            return seq
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def following(feed: OutboxFeed) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = await own_postgres(tmp_path)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_rows_arrive_in_seq_order_and_survive_a_postgres_restart(
    pg: EmbeddedPostgres,
) -> None:
    dsn = pg.dsn()
    await produce(dsn, "before.start")  # the feed starts at the head: this one is not replayed
    recorder = Recorder()
    feed = OutboxFeed(lambda: asyncpg.connect(dsn), recorder, settings=FAST)
    async with following(feed):
        await asyncio.wait_for(feed.applied.reached(1), 10)
        assert recorder.resets == 1  # first connection: start afresh
        seq = await produce(dsn, "a", "b")
        await asyncio.wait_for(feed.applied.reached(seq), 10)
        assert recorder.seqs == [2, 3] and recorder.subjects == ["a", "b"]
        assert recorder.notifications >= 1 and not recorder.held

        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(pg.start)
        seq = await produce(dsn, "c")
        await asyncio.wait_for(feed.applied.reached(seq), 10)
        assert recorder.seqs == [2, 3, 4]
        assert feed.disconnects >= 1
        assert recorder.resets == 1, "the outbox kept every row: re-read, no reset"


async def test_rows_swept_while_away_reset_the_handler(pg: EmbeddedPostgres) -> None:
    dsn = pg.dsn()
    recorder = Recorder()
    feed = OutboxFeed(lambda: asyncpg.connect(dsn), recorder, settings=FAST)
    async with following(feed):
        # The feed starts at the head it reads on connecting: produce only once it has, or
        # under load "a" can land before that read and never be delivered as a row.
        await asyncio.wait_for(recorder.connected.wait(), 10)
        seq = await produce(dsn, "a")
        await asyncio.wait_for(feed.applied.reached(seq), 10)
    # Away: three events commit, and the first two are swept before the feed is back.
    last = await produce(dsn, "b", "c", "d")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM outbox WHERE seq < $1", last)
    finally:
        await conn.close()
    async with following(feed):
        await asyncio.wait_for(feed.applied.reached(last), 10)
    assert recorder.seqs == [1, last]
    assert recorder.resets == 2  # the first connection, then the gap
