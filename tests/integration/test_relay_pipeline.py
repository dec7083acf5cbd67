"""The pipelined outbox relay (issue 11) against real PostgreSQL and JetStream: a window of
outstanding PubAcks, still strictly in seq order; a publish that fails inside the window is
never overtaken (``Nats-Expected-Last-Msg-Id``); a republish after a crash is a duplicate; a
purged or wiped stream never wedges it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
from bus_support import stream_outbox_seqs, wait_until
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig
from test_nats_permissions import AuthNats, Refusals, auth_nats  # noqa: F401 (a fixture)

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings, ensure_stream
from tokenry.bus.relay import OutboxRelay, RelaySettings
from tokenry.core.clock import SystemClock
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.servicekit.config import Settings
from tokenry.store.outbox import OutboxStore

pytestmark = pytest.mark.integration

FAST = RelaySettings(heartbeat_interval=0.5, lease_ttl=2.0, poll_interval=5.0)


# The relay's tests import only the bus and the store (bus_support, not pipeline_support, which
# pulls in every service and the verifier), so they keep running while those are being reshaped.


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[NatsClient]:
    client = await nats.connect(settings.nats_url)
    yield client
    await client.close()


async def fill_outbox(
    pool: asyncpg.Pool,
    settings: Settings,
    n: int,
    reason: str = "",
    subjects: Subjects | None = None,
) -> list[int]:
    """``n`` revocation events committed at once (a backlog), without revocation rows: the
    relay only reads the outbox."""
    now = int(time.time())
    events = [
        codec.revocation_event(
            subjects or settings.subjects,
            Revocation(RevocationKind.JTI, f"j{now}-{i}", 0, now + 600, reason),
            now,
            actor="test",
        )
        for i in range(n)
    ]
    async with pool.acquire() as conn, conn.transaction():
        head: int = await conn.fetchval(
            "UPDATE outbox_counter SET seq = seq + $1 WHERE id RETURNING seq", n
        )
        seqs = list(range(head - n + 1, head + 1))
        await conn.executemany(
            "INSERT INTO outbox (seq, event_id, subject, payload, traceparent)"
            " VALUES ($1, $2, $3, $4, NULL)",
            [(seq, e.event_id, e.subject, e.payload) for seq, e in zip(seqs, events, strict=True)],
        )
    return seqs


def relay_of(
    pool: asyncpg.Pool, nc: NatsClient, settings: Settings, options: RelaySettings = FAST
) -> OutboxRelay:
    return OutboxRelay(
        pool=pool,
        nc=nc,
        subjects=settings.subjects,
        stream=settings.stream,
        holder="r1",
        clock=SystemClock(),
        settings=options,
    )


class Running:
    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(relay.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=30)


async def test_a_backlog_drains_through_a_window_strictly_in_seq_order(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    """Fails on the one-ack-at-a-time relay: its window never holds more than one publish."""
    seqs = await fill_outbox(pool, settings, 5_000)
    relay = relay_of(pool, nc, settings)
    running = Running(relay)
    try:
        took = await wait_until(lambda: relay.published_seq == seqs[-1], 120, "backlog drained")
    finally:
        await running.close()
    print(
        f"\n{len(seqs)} events drained in {took:.2f}s = {len(seqs) / took:,.0f} events/s"
        f" (peak {relay.stats.peak_in_flight} in flight; a shared, noisy machine)"
    )
    assert relay.stats.peak_in_flight > 1  # pipelined
    assert relay.stats.peak_in_flight <= FAST.max_in_flight
    assert await stream_outbox_seqs(settings.nats_url, settings) == seqs  # in order, once each
    assert await OutboxStore(pool).unpublished_count() == 0
    assert relay.stats.duplicates == 0


async def test_a_publish_that_fails_inside_the_window_is_never_overtaken(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    """Row k is too big for the stream, so JetStream refuses it; k+1… were already sent in the
    same window. Without Nats-Expected-Last-Msg-Id they would be stored before k (the old
    relay awaited each ack, so it never had them in flight). Once k fits, everything goes
    through in order: the refused expectations never wedge the relay."""
    js = nc.jetstream()
    await ensure_stream(js, settings.subjects, settings.stream)
    config: StreamConfig = (await js.stream_info(settings.stream.name)).config
    config.max_msg_size = 4_000
    await js.update_stream(config)
    before = await fill_outbox(pool, settings, 50)
    poison = await fill_outbox(pool, settings, 1, reason="x" * 8_000)
    after = await fill_outbox(pool, settings, 200)
    relay = relay_of(pool, nc, settings)
    running = Running(relay)
    try:
        await wait_until(lambda: relay.published_seq == before[-1], 30, "rows before k")
        await wait_until(lambda: relay.stats.failures > 0, 30, "row k refused")
        stuck = await stream_outbox_seqs(settings.nats_url, settings)
        assert stuck == before  # nothing after the refused row got in
        # The refusals come back as errors (err_code 10070), not as PubAck timeouts (nats-py's
        # publish_async never resolves a refused publish).
        await wait_until(lambda: relay.stats.refused_out_of_order > 0, 30, "k+1… refused")
        print(
            f"\nwhile row {poison[0]} is refused: {relay.stats.failures} failed rounds,"
            f" {relay.stats.refused_out_of_order} successors refused, stream ends at {stuck[-1]}"
        )
        config.max_msg_size = -1
        await js.update_stream(config)
        await wait_until(lambda: relay.published_seq == after[-1], 30, "all published")
    finally:
        await running.close()
    assert relay.stats.peak_in_flight > 1
    assert await stream_outbox_seqs(settings.nats_url, settings) == before + poison + after
    assert await OutboxStore(pool).unpublished_count() == 0


async def test_a_republish_after_a_crash_is_acknowledged_as_duplicates_in_order(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    """A relay crashed after JetStream stored rows but before it marked them: its successor
    publishes them again; Nats-Msg-Id dedupe acknowledges them as duplicates (checked before
    the expectation), and the stream holds every row once, in order."""
    seqs = await fill_outbox(pool, settings, 600)
    js = nc.jetstream()
    await ensure_stream(js, settings.subjects, settings.stream)
    crashed = 300
    rows = await OutboxStore(pool).unpublished(crashed)
    for row in rows:  # what the crashed relay got acknowledged, unmarked
        await js.publish(
            row.subject,
            codec.stamp_seq(row.payload, row.seq),
            headers={"Nats-Msg-Id": str(row.event_id)},
        )
    relay = relay_of(pool, nc, settings)
    running = Running(relay)
    try:
        await wait_until(lambda: relay.published_seq == seqs[-1], 60, "all published")
    finally:
        await running.close()
    assert relay.stats.duplicates == crashed
    assert relay.stats.failures == 0  # duplicates in a window refuse nothing
    assert await stream_outbox_seqs(settings.nats_url, settings) == seqs


async def test_a_purged_or_wiped_stream_never_wedges_the_relay(
    settings: Settings, pool: asyncpg.Pool, nc: NatsClient
) -> None:
    js = nc.jetstream()
    relay = relay_of(pool, nc, settings)
    running = Running(relay)
    try:
        first = await fill_outbox(pool, settings, 300)
        await wait_until(lambda: relay.published_seq == first[-1], 60, "first part")
        await js.purge_stream(settings.stream.name)
        second = await fill_outbox(pool, settings, 300)
        await wait_until(lambda: relay.published_seq == second[-1], 60, "after a purge")
        assert await stream_outbox_seqs(settings.nats_url, settings) == second
        await js.delete_stream(settings.stream.name)  # a JetStream store loss
        third = await fill_outbox(pool, settings, 300)
        await wait_until(lambda: relay.published_seq == third[-1], 60, "after a wipe")
        assert await stream_outbox_seqs(settings.nats_url, settings) == third
    finally:
        await running.close()
    print(f"\nfailed rounds {relay.stats.failures}, refused {relay.stats.refused_out_of_order}")


async def test_the_relay_needs_nothing_beyond_the_publisher_permissions(
    settings: Settings,
    pool: asyncpg.Pool,
    auth_nats: AuthNats,  # noqa: F811 (the fixture imported above)
) -> None:
    """deploy/local/nats.conf as written: the relay's reply inbox for pipelined PubAcks
    (_INBOX.>), its stream lookups and its heartbeat link probe (STREAM.INFO) are all allowed
    to the publisher user, and a consumer receives the heartbeats."""
    refusals = Refusals()
    nc = await nats.connect(auth_nats.url("publisher"), error_cb=refusals.on_error)
    consumer = await nats.connect(auth_nats.url("consumer"))
    beats: list[int] = []

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        beats.append(codec.decode_heartbeat(msg.data)[0])

    await consumer.subscribe(Subjects().heartbeat, cb=on_beat)
    relay = OutboxRelay(
        pool=pool,
        nc=nc,
        subjects=Subjects(),
        stream=StreamSettings(),
        holder="r1",
        clock=SystemClock(),
        settings=FAST,
    )
    running = Running(relay)
    try:
        seqs = await fill_outbox(pool, settings, 600, subjects=Subjects())
        await wait_until(lambda: relay.published_seq == seqs[-1], 60, "published")
        await wait_until(lambda: seqs[-1] in beats, 30, "a heartbeat with the head")
    finally:
        await running.close()
        await nc.close()
        await consumer.close()
    assert refusals.subjects == []
    assert relay.stats.peak_in_flight > 1
