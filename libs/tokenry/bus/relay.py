"""The outbox relay: the one publisher of events (docs/design.md §4).

Every replica runs a relay; a lease in PostgreSQL elects one leader. The leader LISTENs on the
outbox channel, wakes at once, and publishes unpublished rows strictly in seq order with
``Nats-Msg-Id`` = event id, so a republish after a crash is dropped as a duplicate. Rows are
marked published only under a current lease (fencing). It also sends heartbeats carrying the
last seq committed in PostgreSQL.

Pipelining. Up to ``max_in_flight`` publishes await their PubAck at once (one ack per round
trip made a 10k backlog take 8 s). Rows are still sent in seq order, and marked published as
the contiguous prefix of the window gets acknowledged. A failed publish inside the window must
not let its successors overtake it, so every publish after the first of a window carries
``Nats-Expected-Last-Msg-Id`` = its predecessor's event id: JetStream stores k+1 only right
after k, and refuses it (err_code 10070) when k is missing. The first publish of a window has
no expectation, and needs none: it starts only when every row before it has been acknowledged
(it is marked published, by us or by an earlier leader). After any failure the window is
dropped and a new one starts at the first unacknowledged row, so an expectation that can never
match (the stream purged, wiped or recreated, a dedupe entry expired) costs one retry and
never wedges the relay. JetStream checks ``Nats-Msg-Id`` before the expectation, so a
republished row is acknowledged as a duplicate even when it is no longer the stream's last.

Three tasks run side by side so that no NATS wait can starve the lease: the lease keeper
(renews every ``lease_ttl / 3`` whatever NATS does, and drops leadership only when PostgreSQL
says so or the lease ran out unrenewed), the publisher, and the heartbeat sender. JetStream
API calls are bounded by ``api_timeout``, well below the lease ttl.

Heartbeats are never buffered: nats-py queues publishes while it reconnects and sends them
late, and a late heartbeat carries a stale head (docs/spec.md §4.4). A heartbeat is sent only on a
connection that just answered a request, and one is sent as soon as a backlog drains (after an
outage, a failover or a burst) so verifiers can prove they are current without waiting for
the next interval.

Whatever NATS or PostgreSQL do, the relay never gives up: it logs, backs off and retries, so an
acknowledged revocation is delivered once both are reachable again (docs/spec.md §4.1).

Size: one publisher whose ordering, fencing and heartbeat rules (above) hold only together; the
lease loop is :class:`tokenry.store.leases.LeaderLease` and the pipelined publisher lives in
:mod:`tokenry.bus.nats_conn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.js.api import PubAck

from tokenry.bus import codec, tracing
from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import PipelinedPublisher, StreamSettings, ensure_stream
from tokenry.core.backoff import Backoff, BackoffPolicy
from tokenry.core.clock import Clock
from tokenry.store.leases import LeaderLease, Lease, LeaseStore
from tokenry.store.outbox import OutboxRow, OutboxStore

log = logging.getLogger(__name__)

LEASE_NAME = "event-publisher"
NOTIFY_CHANNEL = "tokenry_outbox"
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
WRONG_LAST_MSG_ID = 10070  # JetStream's err_code for a failed Nats-Expected-Last-Msg-Id


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Timing of the relay. Every wait on NATS is bounded well below ``lease_ttl``."""

    #: Seconds to wait for one PubAck (counted from its send).
    ack_timeout: float = 2.0
    #: Seconds for a JetStream API request (stream info, add, update) and the heartbeat's
    #: link probe; nats-py's default of 5 s equalled the lease ttl and made the lease flap.
    api_timeout: float = 1.0
    heartbeat_interval: float = 2.0
    #: Failover within lease_ttl, well inside the verifiers' 30 s staleness budget.
    lease_ttl: float = 5.0
    poll_interval: float = 1.0
    #: Rows read per query, and acknowledged rows marked published per transaction.
    batch: int = 256
    #: Publishes awaiting their PubAck at once (1 = the old one-at-a-time behaviour).
    max_in_flight: int = 256
    #: Longest pause between retries after a failure (doubling from 0.1 s); a retry after a
    #: blackhole heals waits at most this long.
    max_backoff: float = 1.0
    #: How often a leader whose NATS connection is down looks whether it is back.
    reconnect_poll: float = 0.02


@dataclass(slots=True)
class RelayStats:
    """Counters for tests, benchmarks and logs (this process only)."""

    published: int = 0
    duplicates: int = 0
    #: Publishes JetStream refused because their predecessor was not the stream's last.
    refused_out_of_order: int = 0
    failures: int = 0
    peak_in_flight: int = 0
    heartbeats: int = 0
    #: Heartbeats skipped because the connection was down or did not answer a request.
    heartbeats_skipped: int = 0
    lease_changes: int = 0


class _Round:
    """One publishing round: rows read ahead, the window of sent rows awaiting their PubAck
    (row, future, deadline), and the acknowledged prefix not yet marked published."""

    __slots__ = ("acked", "after", "exhausted", "lease", "predecessor", "rows", "window")

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.rows: deque[OutboxRow] = deque()
        self.window: deque[tuple[OutboxRow, asyncio.Future[PubAck], float]] = deque()
        self.acked: list[int] = []
        self.after = 0  # the last seq read
        self.exhausted = False
        # The event id of the last row sent. None: the next publish starts a window, every
        # row before it is acknowledged, so it needs no expectation.
        self.predecessor: str | None = None

    def refusals(self, exc: BaseException) -> int:
        """How many publishes JetStream refused as out of order (err_code 10070)."""
        return _is_wrong_last_msg_id(exc) + sum(
            _is_wrong_last_msg_id(f.exception())
            for _, f, _ in self.window
            if f.done() and not f.cancelled()
        )

    def abandon(self) -> None:
        """Drop the window: a later round republishes from the first unacknowledged row."""
        for _, future, _ in self.window:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning
            future.cancel()
        self.window.clear()


class _Fenced(Exception):
    """The lease changed under a round: stop publishing, the new leader takes over."""


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
        self._settings = settings or RelaySettings()
        # Bounded API waits (ensure_stream): nats-py's default is 5 s (issue 11).
        self._js = nc.jetstream(timeout=self._settings.api_timeout)
        self._publisher = PipelinedPublisher(nc)
        self._subjects = subjects
        self._stream = stream
        self._holder = holder
        self._clock = clock
        self._outbox = OutboxStore(pool)
        self._keeper = LeaderLease(
            LeaseStore(pool),
            LEASE_NAME,
            holder,
            self._settings.lease_ttl,
            clock,
            role="event publisher",
            on_change=self._lease_changed,
        )
        self._wake = asyncio.Event()
        self._beat_now = asyncio.Event()
        self._stream_ready = False
        # Set when the relay fell behind (an outage, a failure, a new lease, a burst): the
        # next drain sends a heartbeat at once.
        self._beat_after_drain = True
        self.published_seq = 0
        self.stats = RelayStats()

    @property
    def is_leader(self) -> bool:
        return self._keeper.lease is not None

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self._listen(stop), name="outbox-listen"),
            asyncio.create_task(self._keeper.run(stop), name="outbox-lease"),
            asyncio.create_task(self._heartbeats(stop), name="outbox-heartbeat"),
        ]
        try:
            await self._publish_loop(stop)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._publisher.close()
            await self._keeper.release()

    # --- the lease ---------------------------------------------------------------------------

    # Renewed every ttl/3 by its own task (LeaderLease.run), independent of NATS: a leader must
    # not lose its lease because a publish or a stream lookup is waiting on a NATS that is down.

    def _lease_live(self) -> bool:
        return self._keeper.live()

    def _lease_changed(self, lease: Lease | None) -> None:
        if lease is not None:  # a new reign (taken, or a new fence)
            self.stats.lease_changes += 1
            self._stream_ready = False
            self._beat_after_drain = True
            self._wake.set()

    # --- publishing --------------------------------------------------------------------------

    async def _publish_loop(self, stop: asyncio.Event) -> None:
        s = self._settings
        backoff = Backoff(BackoffPolicy(initial=min(0.1, s.max_backoff), maximum=s.max_backoff))
        while not stop.is_set():
            # Cleared before the work, not after: a NOTIFY that lands while we publish must
            # wake the next round at once instead of waiting for the poll interval.
            self._wake.clear()
            lease = self._keeper.lease
            if lease is None:
                await self._wait_wake(stop, s.poll_interval)
                continue
            if not self._lease_live():
                # Our own estimate says the lease ran out (a pause, a slow database): publish
                # nothing until the keeper renews it or learns it is lost.
                await _sleep_or_stop(stop, s.reconnect_poll)
                continue
            if not self._nc.is_connected:
                # Publishing now would only fill nats-py's reconnect buffer; look again soon
                # so the backlog starts flowing as soon as the connection is back.
                self._beat_after_drain = True
                await _sleep_or_stop(stop, s.reconnect_poll)
                continue
            try:
                await self._publish_pending(lease)
            except _Fenced:
                continue
            except Exception as exc:
                self.stats.failures += 1
                self._stream_ready = False
                self._beat_after_drain = True
                delay = backoff.next_delay()
                log.warning(
                    "outbox relay: %s: %s; retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await self._wait_connected_or(stop, delay)
                continue
            backoff.reset()
            if self._beat_after_drain:
                self._beat_after_drain = False
                self._beat_now.set()
            await self._wait_wake(stop, s.poll_interval)

    async def _publish_pending(self, lease: Lease) -> None:
        """Publish every unpublished row with a window of outstanding acks; return once none
        is left. Raises on any failure, after marking the acknowledged prefix."""
        if not self._stream_ready:
            await ensure_stream(self._js, self._subjects, self._stream)
            self._stream_ready = True
        r = _Round(lease)
        try:
            while True:
                # Renewals keep the fence; a new fence is a new reign. A leader that was paused
                # past its lease stops sending before its keeper has even run again.
                if self._keeper.lease != lease or not self._lease_live():
                    raise _Fenced
                await self._fill(r)
                if not r.window:
                    if r.rows:  # disconnected before anything was sent
                        raise ConnectionError("NATS disconnected")
                    if r.exhausted:
                        break
                    continue
                await self._settle_head(r)
            if r.acked:
                await self._mark(r.acked, lease)
                r.acked = []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.refused_out_of_order += r.refusals(exc)
            # Rows JetStream acknowledged are marked even when a later one failed, so a retry
            # starts right after them (a republish would only be dropped as a duplicate).
            if r.acked and not isinstance(exc, _Fenced):
                await self._mark(r.acked, lease)
            raise
        finally:
            r.abandon()

    async def _fill(self, r: _Round) -> None:
        """Read the next rows when needed and send until the window is full."""
        s = self._settings
        if not r.rows and not r.exhausted and len(r.window) < s.max_in_flight:
            fetched = await self._outbox.unpublished(s.batch, after=r.after)
            if fetched:
                r.after = fetched[-1].seq
                r.rows.extend(fetched)
            r.exhausted = len(fetched) < s.batch
            if not r.exhausted:
                self._beat_after_drain = True  # a backlog: beat as soon as it is gone
        # A connection that went down stops the filling (no reconnect buffering); the window
        # then runs out, by ack or by timeout.
        while r.rows and len(r.window) < s.max_in_flight and self._nc.is_connected:
            row = r.rows.popleft()
            future = await self._send(row, r.predecessor)
            r.predecessor = str(row.event_id)
            r.window.append((row, future, self._clock.monotonic() + s.ack_timeout))
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, len(r.window))

    async def _settle_head(self, r: _Round) -> None:
        """Await the oldest outstanding ack, then take every ack already in behind it (acks
        come in bursts: the window is refilled in one write, not one syscall per row); mark
        the acknowledged prefix every batch."""
        s = self._settings
        row, future, deadline = r.window[0]
        if not future.done():
            remaining = max(0.0, deadline - self._clock.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout=remaining)
            except TimeoutError:
                raise TimeoutError(f"no PubAck for seq {row.seq} within {s.ack_timeout}s") from None
        window = r.window
        while window and window[0][1].done():
            row, future, _ = window[0]
            ack = future.result()  # raises the publish's error, in seq order
            window.popleft()
            r.acked.append(row.seq)
            if ack.duplicate:
                self.stats.duplicates += 1
        if len(r.acked) >= s.batch:
            await self._mark(r.acked, r.lease)
            r.acked = []

    async def _send(self, row: OutboxRow, predecessor: str | None) -> asyncio.Future[PubAck]:
        headers: dict[str, Any] = {MSG_ID: str(row.event_id)}
        if predecessor is not None:
            # Stored only right after the predecessor: a seq never overtakes the one before
            # it, even when that one failed inside the window (docs/design.md §4).
            headers[EXPECTED_LAST_MSG_ID] = predecessor
        # The publish span is the child of the context stored with the event; its own
        # context travels in the header (bus.tracing). Unsampled: the stored header as is.
        span, traceparent = tracing.start_publish(row.subject, str(row.event_id), row.traceparent)
        if traceparent:
            headers["traceparent"] = traceparent
        future = await self._publisher.publish(
            row.subject, codec.stamp_seq(row.payload, row.seq, row.written_at), headers
        )
        if span is not None:
            tracing.end_when_done(span, future)
        return future

    async def _mark(self, seqs: list[int], lease: Lease) -> None:
        if not await self._outbox.mark_published(seqs, lease):
            log.warning("event publisher %s lost its lease; stopping", self._holder)
            if self._keeper.lease == lease:
                self._keeper.lost()
            raise _Fenced
        self.stats.published += len(seqs)
        self.published_seq = seqs[-1]

    # --- heartbeats --------------------------------------------------------------------------

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        s = self._settings
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), timeout=s.heartbeat_interval)
            self._beat_now.clear()
            if not self._lease_live():
                continue
            try:
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.heartbeats_skipped += 1
                log.debug("heartbeat skipped: %s", type(exc).__name__)

    async def _heartbeat(self) -> None:
        """Publish the committed head, never into a buffer (docs/spec.md §4.4)."""
        if not self._nc.is_connected:
            self.stats.heartbeats_skipped += 1
            return
        head = await asyncio.wait_for(self._outbox.head_seq(), timeout=self._settings.api_timeout)
        # A dead link can still look connected until the pings fail; a heartbeat queued
        # behind it would be delivered late. An answer proves the link carries data right
        # now. (A request, not nc.flush(timeout): a flush that times out leaves a cancelled
        # future that kills nats-py's read loop when the PONG finally comes.)
        await self._js.stream_info(self._stream.name)
        if not self._nc.is_connected:
            self.stats.heartbeats_skipped += 1
            return
        await self._nc.publish(
            self._subjects.heartbeat, codec.heartbeat(head, self._clock.now(), self._holder)
        )
        self.stats.heartbeats += 1

    # --- waking ------------------------------------------------------------------------------

    async def _wait_wake(self, stop: asyncio.Event, seconds: float) -> None:
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _wait_connected_or(self, stop: asyncio.Event, seconds: float) -> None:
        """Back off; while NATS is down the loop's own reconnect poll takes over."""
        if self._nc.is_connected:
            await _sleep_or_stop(stop, seconds)

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


def _is_wrong_last_msg_id(exc: BaseException | None) -> bool:
    return getattr(exc, "err_code", None) == WRONG_LAST_MSG_ID


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
