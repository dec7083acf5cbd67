"""The outbox relay: the one publisher of events (ARCHITECTURE §4).

Every replica runs a relay; a lease in PostgreSQL elects one leader. The leader LISTENs on the
outbox channel, wakes at once, and publishes unpublished rows strictly in seq order, awaiting
each JetStream ack (bounded) before moving on, with ``Nats-Msg-Id`` = event id so a republish
after a crash is dropped as a duplicate. Rows are marked published only under a current lease
(fencing). It also sends heartbeats carrying the last seq committed in PostgreSQL.

Whatever NATS or PostgreSQL do, the relay never gives up: it logs, backs off and retries, so an
acknowledged revocation is delivered once both are reachable again (SPEC §4.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from nats.aio.client import Client as NatsClient

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings, ensure_stream
from tokenry.core.clock import Clock
from tokenry.store.leases import Lease, LeaseStore
from tokenry.store.outbox import OutboxRow, OutboxStore

log = logging.getLogger(__name__)

LEASE_NAME = "event-publisher"
NOTIFY_CHANNEL = "tokenry_outbox"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    ack_timeout: float = 2.0
    heartbeat_interval: float = 2.0
    # Failover within lease_ttl, well inside the verifiers' 30 s staleness budget.
    lease_ttl: float = 5.0
    poll_interval: float = 1.0
    batch: int = 256


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        nc: NatsClient,
        subjects: Subjects,
        stream: StreamSettings,
        holder: str,
        clock: Clock,
        settings: RelaySettings | None = None,
    ) -> None:
        self._pool = pool
        self._nc = nc
        self._js = nc.jetstream()
        self._subjects = subjects
        self._stream = stream
        self._holder = holder
        self._clock = clock
        self._settings = settings or RelaySettings()
        self._outbox = OutboxStore(pool)
        self._leases = LeaseStore(pool)
        self._wake = asyncio.Event()
        self._lease: Lease | None = None
        self._next_renew = 0.0
        self._stream_ready = False
        self.published_seq = 0

    @property
    def is_leader(self) -> bool:
        return self._lease is not None

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop), name="outbox-listen")
        try:
            await self._loop(stop)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if self._lease is not None:
                with contextlib.suppress(Exception):
                    await self._leases.release(self._lease)
                self._lease = None

    async def _loop(self, stop: asyncio.Event) -> None:
        s = self._settings
        next_beat = 0.0
        while not stop.is_set():
            # Cleared before the work, not after: a NOTIFY that lands while we publish must
            # wake the next round at once instead of waiting for the poll interval.
            self._wake.clear()
            now = self._clock.monotonic()
            try:
                if now >= self._next_renew:
                    await self._renew()
                if self._lease is not None:
                    await self._publish_pending(self._lease)
                    if now >= next_beat:
                        await self._heartbeat()
                        next_beat = now + s.heartbeat_interval
            except Exception as exc:
                log.warning("outbox relay: %s: %s; retrying", type(exc).__name__, exc)
                self._stream_ready = False
                await _sleep_or_stop(stop, 0.25)
                continue
            timeout = min(s.poll_interval, max(0.0, next_beat - self._clock.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout or s.poll_interval)

    async def _renew(self) -> None:
        self._next_renew = self._clock.monotonic() + self._settings.lease_ttl / 3
        lease = await self._leases.acquire(LEASE_NAME, self._holder, self._settings.lease_ttl)
        if (lease is None) != (self._lease is None):
            log.info("event publisher %s: %s", self._holder, "leader" if lease else "follower")
        if lease is not None and (self._lease is None or lease.fence != self._lease.fence):
            self._stream_ready = False
        self._lease = lease

    async def _publish_pending(self, lease: Lease) -> None:
        if not self._stream_ready:
            await ensure_stream(self._js, self._subjects, self._stream)
            self._stream_ready = True
        while True:
            if self._clock.monotonic() >= self._next_renew:
                # A long backlog must not outlive the lease: renew between batches.
                await self._renew()
                if self._lease is None or self._lease.fence != lease.fence:
                    return
            rows = await self._outbox.unpublished(self._settings.batch)
            if not rows:
                return
            done: list[int] = []
            failure: Exception | None = None
            for row in rows:
                try:
                    await self._publish(row)
                except Exception as exc:
                    failure = exc
                    break
                done.append(row.seq)
            # Rows JetStream acknowledged are marked even when a later one failed, so a retry
            # starts right after them (a republish would only be dropped as a duplicate).
            if done:
                if not await self._outbox.mark_published(done, lease):
                    log.warning("event publisher %s lost its lease; stopping", self._holder)
                    self._lease = None
                    return
                self.published_seq = done[-1]
            if failure is not None:
                raise failure
            if len(rows) < self._settings.batch:
                return

    async def _publish(self, row: OutboxRow) -> None:
        headers: dict[str, Any] = {"Nats-Msg-Id": str(row.event_id)}
        if row.traceparent:
            headers["traceparent"] = row.traceparent
        await self._js.publish(
            row.subject,
            codec.stamp_seq(row.payload, row.seq),
            timeout=self._settings.ack_timeout,
            headers=headers,
        )

    async def _heartbeat(self) -> None:
        head = await self._outbox.head_seq()
        await self._nc.publish(
            self._subjects.heartbeat, codec.heartbeat(head, self._clock.now(), self._holder)
        )

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN on a dedicated connection; reconnect after a database outage."""

        def on_notify(*_: object) -> None:
            self._wake.set()

        while not stop.is_set():
            try:
                async with self._pool.acquire() as conn:
                    await conn.add_listener(NOTIFY_CHANNEL, on_notify)
                    try:
                        while not stop.is_set() and not conn.is_closed():
                            await _sleep_or_stop(stop, 1.0)
                            await conn.execute("SELECT 1")  # notice a dead connection
                    finally:
                        try:
                            await conn.remove_listener(NOTIFY_CHANNEL, on_notify)  # UNLISTEN
                        except Exception:
                            # Never hand a connection that may still LISTEN back to the pool
                            # (its reset does not UNLISTEN, store.db.keep_session).
                            conn.terminate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("outbox listener: %s; reconnecting", type(exc).__name__)
                await _sleep_or_stop(stop, 0.5)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
