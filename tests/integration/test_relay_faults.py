"""The outbox relay under NATS faults (issue 11), with real PostgreSQL and NATS and the relay's
NATS connection behind a fault proxy (tests/faults/proxy.py):

- no heartbeat is delivered late: none sent while the link is reset or blackholed reaches a
  subscriber after the heal (nats-py would buffer them and flush them on reconnect);
- a heartbeat follows as soon as the backlog built up during an outage drains, not at the next
  interval;
- the publisher lease holds through a NATS outage: NATS waits never starve its renewal.

No timed assertions: the outage lengths are fault durations; waits are for conditions, and
the measured times are printed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import nats
import pytest
from bus_support import stream_outbox_seqs, wait_until
from faults.proxy import FaultProxy
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from test_relay_pipeline import fill_outbox

from tokenry.bus import codec
from tokenry.bus.nats_conn import connect
from tokenry.bus.relay import LEASE_NAME, OutboxRelay, RelaySettings
from tokenry.core.clock import SystemClock
from tokenry.devstack import EmbeddedNats
from tokenry.servicekit.config import Settings

pytestmark = pytest.mark.integration

OUTAGE = 3.0  # seconds of each fault
MARGIN = 0.5  # a heartbeat sent this soon after the fault began may still have got through


@dataclass
class Beat:
    last_seq: int
    sent_at: float  # the relay's clock (this host's)
    received_at: float


@dataclass
class Rig:
    proxy: FaultProxy
    relay_nc: NatsClient
    observer: NatsClient
    beats: list[Beat]
    new_beat: asyncio.Event


@pytest.fixture
async def rig(settings: Settings, nats_server: EmbeddedNats) -> AsyncIterator[Rig]:
    """The relay's NATS connection goes through a fault proxy; an observer, connected
    directly, records every heartbeat."""
    proxy = await FaultProxy((nats_server.host, nats_server.port)).start()
    relay_nc = await connect(proxy.nats_url, name="relay-under-test", attempts=3)
    observer = await nats.connect(settings.nats_url)
    beats: list[Beat] = []
    new_beat = asyncio.Event()

    async def on_beat(msg: Msg) -> None:
        last_seq, sent_at = codec.decode_heartbeat(msg.data)
        beats.append(Beat(last_seq, sent_at, time.time()))
        new_beat.set()

    await observer.subscribe(settings.subjects.heartbeat, cb=on_beat)
    try:
        yield Rig(proxy, relay_nc, observer, beats, new_beat)
    finally:
        await relay_nc.close()
        await observer.close()
        await proxy.close()


def start(
    pool: asyncpg.Pool, nc: NatsClient, settings: Settings, options: RelaySettings
) -> tuple[OutboxRelay, asyncio.Event, asyncio.Task[None]]:
    relay = OutboxRelay(
        pool=pool,
        nc=nc,
        subjects=settings.subjects,
        stream=settings.stream,
        holder="r1",
        clock=SystemClock(),
        settings=options,
    )
    stop = asyncio.Event()
    return relay, stop, asyncio.create_task(relay.run(stop))


async def wait_beat(rig: Rig, predicate: object, timeout: float, what: str) -> Beat:
    """The first heartbeat (already received or coming) that satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        for beat in rig.beats[seen:]:
            if predicate(beat):  # type: ignore[operator]
                return beat
        seen = len(rig.beats)
        rig.new_beat.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what}: no such heartbeat within {timeout}s")
        try:
            await asyncio.wait_for(rig.new_beat.wait(), timeout=remaining)
        except TimeoutError:
            continue


@pytest.mark.parametrize("fault", ["reset", "blackhole"])
async def test_no_heartbeat_sent_during_an_outage_is_delivered_after_the_heal(
    settings: Settings, pool: asyncpg.Pool, rig: Rig, fault: str
) -> None:
    """Reset: nats-py reconnects and flushes what was published meanwhile. Blackhole: the link
    looks up, so publishes pile up behind it and arrive in a burst at the heal. Either way a
    heartbeat would carry a head read long before it arrives (docs/spec.md §4.4)."""
    options = RelaySettings(heartbeat_interval=0.1, lease_ttl=2.0)
    relay, stop, task = start(pool, rig.relay_nc, settings, options)
    try:
        await wait_beat(rig, lambda b: True, 30, "a first heartbeat")
        began = time.time()
        if fault == "reset":
            rig.proxy.reset(refuse=True)
        else:
            rig.proxy.blackhole()
        await asyncio.sleep(OUTAGE)  # the fault's duration
        healed = time.time()
        rig.proxy.heal()
        # Delivery on the relay's connection is in order: once a heartbeat sent after the
        # heal arrives, anything queued during the outage has arrived before it.
        first = await wait_beat(rig, lambda b: b.sent_at > healed, 30, "a heartbeat after heal")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    late = [b for b in rig.beats if began + MARGIN < b.sent_at < healed]
    print(
        f"\n{fault}: first heartbeat {first.received_at - healed:.2f}s after the heal;"
        f" {len(late)} sent during the outage; {relay.stats.heartbeats_skipped} skipped"
    )
    assert late == []


async def test_a_heartbeat_follows_as_soon_as_the_backlog_drains(
    settings: Settings, pool: asyncpg.Pool, rig: Rig
) -> None:
    """The interval is 60 s, so only the drain can trigger the heartbeat awaited here."""
    options = RelaySettings(heartbeat_interval=60.0, lease_ttl=2.0)
    relay, stop, task = start(pool, rig.relay_nc, settings, options)
    try:
        await wait_beat(rig, lambda b: True, 30, "a first heartbeat")
        rig.proxy.reset(refuse=True)
        seqs = await fill_outbox(pool, settings, 2_000)
        await asyncio.sleep(1.0)  # the outage goes on with the backlog queued
        healed = time.time()
        rig.proxy.heal()
        beat = await wait_beat(rig, lambda b: b.last_seq >= seqs[-1], 30, "beat after drain")
        drained_by = relay.published_seq
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    print(
        f"\nheal → heartbeat with the new head: {beat.received_at - healed:.3f}s"
        f" ({len(seqs)} events drained first)"
    )
    assert drained_by == seqs[-1]  # sent after the backlog was published, not before
    assert await stream_outbox_seqs(settings.nats_url, settings) == seqs


@pytest.mark.parametrize("fault", ["reset", "blackhole"])
async def test_the_publisher_lease_holds_through_a_nats_outage(
    settings: Settings, pool: asyncpg.Pool, rig: Rig, fault: str
) -> None:
    """The old relay renewed between NATS calls; a stream lookup waited nats-py's 5 s default
    (= the lease ttl), a publish its 2 s ack timeout, so the lease lapsed and the fence moved
    on every outage. Here the ttl is 1 s, below both waits."""
    options = RelaySettings(heartbeat_interval=0.25, lease_ttl=1.0)
    relay, stop, task = start(pool, rig.relay_nc, settings, options)
    lapses: list[str] = []
    try:
        first = await fill_outbox(pool, settings, 10)
        await wait_until(lambda: relay.published_seq == first[-1], 30, "published before")
        fence = await pool.fetchval("SELECT fence FROM leases WHERE name = $1", LEASE_NAME)
        if fault == "reset":
            rig.proxy.reset(refuse=True)
        else:
            rig.proxy.blackhole()
        during = await fill_outbox(pool, settings, 50)  # the relay keeps trying to publish
        until = time.monotonic() + OUTAGE
        while time.monotonic() < until:  # sample the lease through the outage
            row = await pool.fetchrow(
                "SELECT holder, fence, expires_at > now() AS live FROM leases WHERE name = $1",
                LEASE_NAME,
            )
            assert row is not None
            if not row["live"] or row["fence"] != fence or row["holder"] != "r1":
                lapses.append(f"{dict(row)}")
            await asyncio.sleep(0.05)
        healed = time.monotonic()
        rig.proxy.heal()
        took = await wait_until(lambda: relay.published_seq == during[-1], 30, "after heal")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    print(
        f"\n{fault}: backlog published {took:.2f}s after the heal"
        f" ({time.monotonic() - healed:.2f}s incl. stop); lease changes {relay.stats.lease_changes}"
    )
    assert lapses == []
    assert relay.stats.lease_changes == 1  # taken once, never lost
    assert await stream_outbox_seqs(settings.nats_url, settings) == first + during
