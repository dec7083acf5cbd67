"""Follow the outbox straight from PostgreSQL: LISTEN for the producers' NOTIFY, read new rows.

Tokenry's own services must not wait for NATS to learn about their own writes (docs/spec.md §4.5):
an introspector that caches positive answers must drop a revoked token's answer as soon as the
revocation commits, not when the event has gone round through the relay and JetStream. Every
producer writes its event into ``outbox`` in the same transaction as the change, and a trigger
then does ``pg_notify('tokenry_outbox', '')`` (migration 0001). :class:`OutboxFeed` LISTENs on a
connection of its own and, on each notification, reads the rows after the last seq it has seen
(one small indexed query) and hands them to a :class:`FeedHandler` in seq order.

Seqs are gap-free and in commit order (one counter row, docs/design.md §3), so "every row with
``seq > last``" never skips a row that commits later. Notifications are only a wake-up: the feed
also reads every ``poll_interval`` (which doubles as the check that the connection is alive),
and after a reconnect it re-reads from the last seq it applied. Only when it cannot know what
it missed (the rows were swept, or the counter went backwards: a restored database) does it
tell the handler to :meth:`FeedHandler.reset`.

:class:`AppliedSeq` publishes how far the handler has got, so a caller (a test, a benchmark)
can await "applied up to seq N" instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from tokenry.core.backoff import Backoff, BackoffPolicy
from tokenry.core.renames import renamed
from tokenry.store.outbox import OutboxRow

log = logging.getLogger(__name__)

#: The channel the outbox trigger notifies (migration 0001_init.sql, ``tokenry_outbox_notify``).
NOTIFY_CHANNEL = "tokenry_outbox"

_HEAD = "SELECT seq FROM outbox_counter WHERE id"
_AFTER = (
    "SELECT seq, event_id, subject, payload, traceparent FROM outbox"
    " WHERE seq > $1 ORDER BY seq LIMIT $2"
)

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class FeedHandler(Protocol):
    """What the feed drives. Every method runs on the event loop and must not block."""

    def notified(self) -> None:
        """A notification arrived: rows are committed that :meth:`apply` has not seen yet.

        Called before they are read, so a handler that serves answers derived from the
        database can stop trusting them for the one round trip the read takes.
        """
        ...

    def caught_up(self) -> None:
        """Every row notified so far has been applied (or the connection was lost)."""
        ...

    def apply(self, rows: Sequence[OutboxRow]) -> None:
        """Rows committed since the last call, in seq order, without gaps."""
        ...

    def reset(self) -> None:
        """Rows may have been missed: forget whatever was derived from the database."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxFeedSettings:
    #: a read even without a notification: catches up and proves the connection alive
    poll_interval: float = 1.0
    #: a query (or a connection attempt) slower than this means the link is dead
    timeout: float = 2.0
    #: rows per read
    batch: int = 1024
    #: the longest wait between reconnection attempts
    max_backoff: float = 2.0


class AppliedSeq:
    """The highest outbox seq a handler has applied, and a way to await one."""

    def __init__(self) -> None:
        self.seq = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def advance(self, seq: int) -> None:
        if seq <= self.seq:
            return
        self.seq = seq
        while self._waiters and self._waiters[0][0] <= seq:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)

    async def reached(self, seq: int) -> None:
        """Return once every seq up to ``seq`` has been applied."""
        if seq <= self.seq:
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._order), waiter))
        await waiter


class OutboxFeed:
    """LISTEN on ``tokenry_outbox`` over its own connection and feed new rows to a handler.

    The connection is not a pooled one: a pool's release does not UNLISTEN (``store.db``), and
    a feed whose link stalls must not hold up the queries of the service it serves.
    """

    def __init__(
        self,
        connect: Connect,
        handler: FeedHandler,
        *,
        applied: AppliedSeq | None = None,
        settings: OutboxFeedSettings | None = None,
    ) -> None:
        self._connect = connect
        self._handler = handler
        self.applied = applied or AppliedSeq()
        self._settings = settings or OutboxFeedSettings()
        self._wake = asyncio.Event()
        self._notifications = 0
        self._last: int | None = None  # None: nothing read yet, the handler must start afresh
        self.connected = False
        self.disconnects = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the outbox until ``stop`` is set; reconnect after every failure, forever."""
        s = self._settings
        backoff = Backoff(BackoffPolicy(initial=0.05, maximum=s.max_backoff))
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncio.wait_for(self._connect(), s.timeout)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                await self._catch_up(conn)  # after LISTEN: nothing committed since is missed
                self.connected = True
                backoff.reset()
                await self._follow(conn, stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Loud once per lost connection, quiet while PostgreSQL stays unreachable.
                level = logging.WARNING if self.connected else logging.DEBUG
                log.log(level, "outbox feed: %s: %s; reconnecting", type(exc).__name__, exc)
            finally:
                if self.connected:
                    self.disconnects += 1
                self.connected = False
                self._handler.caught_up()  # nothing more will come on this connection
                if conn is not None:
                    # Never a graceful close: on a blackholed link it would wait for an answer.
                    conn.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next_delay())

    def _on_notify(self, *_: object) -> None:
        self._notifications += 1
        self._handler.notified()
        self._wake.set()

    async def _follow(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        s = self._settings
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    (waking, stopping), timeout=s.poll_interval, return_when="FIRST_COMPLETED"
                )
                waking.cancel()
                if stop.is_set():
                    return
                # Cleared before the read: a notification that lands while we read wakes the
                # next round instead of being lost.
                self._wake.clear()
                seen = self._notifications
                await self._read(conn)
                if self._notifications == seen:
                    self._handler.caught_up()
        finally:
            stopping.cancel()

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        head: int = await conn.fetchval(_HEAD, timeout=self._settings.timeout)
        if self._last is None or head < self._last:
            # First connection, or the counter went backwards (a restored database): what
            # was derived before cannot be checked against rows, so it goes.
            self._last = head
            self._handler.reset()
            self.applied.advance(head)
            return
        await self._read(conn)

    async def _read(self, conn: asyncpg.Connection) -> None:
        s = self._settings
        while True:
            assert self._last is not None
            records = await conn.fetch(_AFTER, self._last, s.batch, timeout=s.timeout)
            if not records:
                return
            rows = [
                OutboxRow(r["seq"], r["event_id"], r["subject"], r["payload"], r["traceparent"])
                for r in records
            ]
            if rows[0].seq != self._last + 1:
                # Rows between were swept while we were away: assume the worst.
                log.warning("outbox feed: seqs %d..%d missed", self._last + 1, rows[0].seq - 1)
                self._handler.reset()
            self._handler.apply(rows)
            self._last = rows[-1].seq
            self.applied.advance(self._last)
            if len(rows) < s.batch:
                return


# ``FeedSettings`` until issue 12 item 9 (``tokenry.verifier.FeedSettings`` is the verifier's).
__getattr__ = renamed(__name__, {"FeedSettings": ("OutboxFeedSettings", OutboxFeedSettings)})
