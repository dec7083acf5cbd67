"""The transactional outbox shared by every producer (docs/design.md §3–4).

A producer writes its state change and its event in one transaction; the seq comes from the
one-row counter, so seqs are gap-free and in commit order. The publisher reads unpublished rows
in seq order and marks them only while it still holds the publisher lease (fencing).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from tokenry.core.events import OutboxEvent
from tokenry.store.db import Executor
from tokenry.store.leases import Lease

_NEXT_SEQ = "UPDATE outbox_counter SET seq = seq + 1 WHERE id RETURNING seq"

# The fencing check of lease_is_current and the marks in one statement.
_MARK_PUBLISHED = """
WITH held AS (
    SELECT 1 FROM leases WHERE name = $2 AND holder = $3 AND fence = $4
        AND expires_at > now() FOR SHARE
), marked AS (
    UPDATE outbox SET published_at = now()
    WHERE seq = ANY($1::bigint[]) AND EXISTS (SELECT 1 FROM held)
)
SELECT EXISTS (SELECT 1 FROM held)
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    event_id: uuid.UUID
    subject: str
    payload: bytes
    traceparent: str | None
    #: when the row was written (Unix seconds, PostgreSQL's clock_timestamp()); None: unknown
    written_at: float | None = None


async def append(conn: Executor, event: OutboxEvent) -> int:
    """Append inside the caller's transaction; returns the event's seq."""
    seq: int = await conn.fetchval(_NEXT_SEQ)
    await conn.execute(
        "INSERT INTO outbox (seq, event_id, subject, payload, traceparent)"
        " VALUES ($1, $2, $3, $4, $5)",
        seq,
        event.event_id,
        event.subject,
        event.payload,
        event.traceparent,
    )
    return seq


class OutboxStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def head_seq(self) -> int:
        """The last seq committed (what heartbeats carry, docs/spec.md §4.4)."""
        seq: int = await self._pool.fetchval("SELECT seq FROM outbox_counter WHERE id")
        return seq

    async def unpublished(self, limit: int = 256, after: int = 0) -> list[OutboxRow]:
        """Up to ``limit`` unpublished rows with seq > ``after``, in seq order (a pipelining
        publisher reads on past the rows it has in flight)."""
        rows = await self._pool.fetch(
            "SELECT seq, event_id, subject, payload, traceparent,"
            " extract(epoch FROM created_at)::float8 AS written FROM outbox"
            " WHERE published_at IS NULL AND seq > $2 ORDER BY seq LIMIT $1",
            limit,
            after,
        )
        return [
            OutboxRow(
                r["seq"], r["event_id"], r["subject"], r["payload"], r["traceparent"], r["written"]
            )
            for r in rows
        ]

    async def sweep_published(self, max_age: float, limit: int = 10_000) -> int:
        """Delete up to ``limit`` rows published more than ``max_age`` seconds ago.

        Once the stream has dropped an event (its max age), nobody can ask for it by seq any
        more: verifiers that far behind take a snapshot instead (docs/design.md §4).
        """
        status: str = await self._pool.execute(
            "DELETE FROM outbox WHERE seq = ANY(ARRAY("
            " SELECT seq FROM outbox WHERE published_at IS NOT NULL"
            " AND published_at < now() - make_interval(secs => $1) LIMIT $2))",
            max_age,
            limit,
        )
        return int(status.rsplit(maxsplit=1)[-1])

    async def unpublished_count(self) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        return count

    async def mark_published(self, seqs: list[int], lease: Lease) -> bool:
        """Mark rows published if ``lease`` is still held; False means leadership was lost.

        One statement (its own transaction): the lease row is locked FOR SHARE, as in
        :func:`lease_is_current`, until the marks commit, so a new leader's takeover waits
        for them; one round trip instead of four (BEGIN, check, update, COMMIT) per batch
        the relay marks."""
        held: bool = await self._pool.fetchval(
            _MARK_PUBLISHED, seqs, lease.name, lease.holder, lease.fence
        )
        return held


async def lease_is_current(conn: Executor, lease: Lease) -> bool:
    """The fencing check: run inside every write transaction of a leader (docs/design.md §3)."""
    row = await conn.fetchrow(
        "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND fence = $3"
        " AND expires_at > now() FOR SHARE",
        lease.name,
        lease.holder,
        lease.fence,
    )
    return row is not None
