"""The outbox relay (docs/design.md §4) against real PostgreSQL and JetStream: stream set up
idempotently, rows published strictly in seq order with Nats-Msg-Id = event id and marked
published, NOTIFY wakes it at once, heartbeats carry the head seq, fencing stops an ex-leader."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient

from tokenry.bus import codec
from tokenry.bus.nats_conn import StreamSettings, ensure_stream
from tokenry.bus.relay import LEASE_NAME, OutboxRelay, RelaySettings
from tokenry.core.clock import SystemClock
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.servicekit.config import Settings
from tokenry.store.leases import LeaseStore
from tokenry.store.outbox import OutboxStore
from tokenry.store.revocations import RevocationStore

from pipeline_support import wait_until

pytestmark = pytest.mark.integration

FAST = RelaySettings(heartbeat_interval=0.1, lease_ttl=1.0, poll_interval=5.0)


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[NatsClient]:
    client = await nats.connect(settings.nats_url)
    yield client
    await client.close()


async def _revoke(pool: asyncpg.Pool, settings: Settings, value: str) -> int:
    now = int(time.time())
    rev = Revocation(RevocationKind.JTI, value, 0, now + 600)
    event = codec.revocation_event(settings.subjects, rev, now, actor="admin")
    return (await RevocationStore(pool).revoke(rev, "admin", event)).seq


def _relay(pool: asyncpg.Pool, nc: NatsClient, settings: Settings, holder: str) -> OutboxRelay:
    return OutboxRelay(
        pool=pool,
        nc=nc,
        subjects=settings.subjects,
        stream=settings.stream,
        holder=holder,
        clock=SystemClock(),
        settings=FAST,
    )


async def test_relay_publishes_in_seq_order_with_msg_ids_and_marks_rows(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    seqs = [await _revoke(pool, settings, f"j{i}") for i in range(300)]  # > one batch
    relay = _relay(pool, nc, settings, "r1")
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await wait_until(lambda: relay.published_seq == seqs[-1], 30, "all published")
        # NOTIFY wakes the relay at once, although its poll interval is 5 s.
        started = time.perf_counter()
        seq = await _revoke(pool, settings, "late")
        took = await wait_until(lambda: relay.published_seq == seq, 4, "published on NOTIFY")
        print(f"\ncommit → published: {took * 1000:.1f} ms (poll interval 5 s)")
        assert time.perf_counter() - started < FAST.poll_interval
    finally:
        stop.set()
        await task
    js = nc.jetstream()
    info = await js.stream_info(settings.stream.name)
    assert info.state.messages == 301
    events = await pool.fetch("SELECT seq, event_id FROM outbox ORDER BY seq")
    for stream_seq, row in enumerate(events, start=info.state.first_seq):
        msg = await js.get_msg(settings.stream.name, stream_seq)
        assert msg.data is not None and msg.headers is not None
        assert codec.decode(msg.data).seq == row["seq"]  # strictly in seq order
        assert msg.headers["Nats-Msg-Id"] == str(row["event_id"])
    assert await OutboxStore(pool).unpublished_count() == 0
    # The lease was released on a clean stop: a successor need not wait for it to expire.
    assert await pool.fetchval("SELECT expires_at <= now() FROM leases WHERE name = $1", LEASE_NAME)


async def test_heartbeats_carry_the_last_seq_committed(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    beats: asyncio.Queue[int] = asyncio.Queue()

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        await beats.put(codec.decode_heartbeat(msg.data)[0])

    await nc.subscribe(settings.subjects.heartbeat, cb=on_beat)
    head = await _revoke(pool, settings, "a")
    stop = asyncio.Event()
    task = asyncio.create_task(_relay(pool, nc, settings, "r1").run(stop))
    try:
        while await asyncio.wait_for(beats.get(), timeout=10) != head:
            pass
        head = await _revoke(pool, settings, "b")
        while await asyncio.wait_for(beats.get(), timeout=10) != head:
            pass
    finally:
        stop.set()
        await task


async def test_only_one_relay_publishes_and_a_fenced_ex_leader_marks_nothing(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    leases = LeaseStore(pool)
    first = await leases.acquire(LEASE_NAME, "a", 0.5)
    assert first is not None
    assert await leases.acquire(LEASE_NAME, "b", 0.5) is None  # a is still the leader
    seq = await _revoke(pool, settings, "x")
    # a's lease runs out while it is "paused" (a GC pause, a network partition)
    await pool.execute("UPDATE leases SET expires_at = now() WHERE name = $1", LEASE_NAME)
    second = await leases.acquire(LEASE_NAME, "b", 5)
    assert second is not None and second.fence > first.fence
    outbox = OutboxStore(pool)
    assert not await outbox.mark_published([seq], first)  # the ex-leader is fenced off
    assert await outbox.unpublished_count() == 1
    assert await outbox.mark_published([seq], second)
    assert await outbox.unpublished_count() == 0


async def test_stream_setup_is_idempotent_and_follows_config_changes(
    settings: Settings, nc: NatsClient
) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.subjects, settings.stream)
    await ensure_stream(js, settings.subjects, settings.stream)  # same config: no error
    longer = StreamSettings(name=settings.stream.name, max_age=settings.stream.max_age * 2)
    await ensure_stream(js, settings.subjects, longer)
    info = await js.stream_info(settings.stream.name)
    assert info.config.max_age == longer.max_age
    await js.delete_stream(settings.stream.name)
    await ensure_stream(js, settings.subjects, settings.stream)  # made again after a reset
    assert (await js.stream_info(settings.stream.name)).config.name == settings.stream.name


async def test_relay_survives_publish_failures_and_delivers_later(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    """JetStream refusing (here: the stream deleted under it) is retried until it works."""
    relay = _relay(pool, nc, settings, f"r-{uuid.uuid4().hex[:6]}")
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        first = await _revoke(pool, settings, "one")
        await wait_until(lambda: relay.published_seq == first, 10, "first published")
        await nc.jetstream().delete_stream(settings.stream.name)
        second = await _revoke(pool, settings, "two")
        await wait_until(lambda: relay.published_seq == second, 30, "published after a reset")
        info = await nc.jetstream().stream_info(settings.stream.name)
        assert info.state.messages == 1  # the new stream holds what came after the reset
    finally:
        stop.set()
        await task


async def test_published_events_carry_the_rows_write_time_not_the_producers_clock(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    """occurred_at is PostgreSQL's clock_timestamp() at the write (migration 0008), stamped by
    the relay: the producer built the payload with its own clock (here: an hour slow) before
    its transaction even began, and the propagation lag must start at the write."""
    now = int(time.time())
    rev = Revocation(RevocationKind.JTI, "stamped", 0, now + 600)
    event = codec.revocation_event(settings.subjects, rev, now - 3600, actor="admin")
    before = time.time()
    seq = (await RevocationStore(pool).revoke(rev, "admin", event)).seq
    after = time.time()
    relay = _relay(pool, nc, settings, "r-stamp")
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await wait_until(lambda: relay.published_seq >= seq, 30, "published")
    finally:
        stop.set()
        await task
    msg = await nc.jetstream().get_msg(settings.stream.name, subject=event.subject)
    decoded = codec.decode(msg.data)
    assert decoded.seq == seq
    # The write happened between before and after (same machine, same clock as PostgreSQL).
    assert before - 1 <= decoded.occurred_at <= after + 1
