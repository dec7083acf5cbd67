"""Durable revocations: the row and its event commit in one statement (SPEC §4.1)."""

from __future__ import annotations

import asyncpg

from tokenry.core.events import OutboxEvent
from tokenry.core.revocations import Revocation, RevocationKind

# One statement = one transaction: bump the gap-free counter, upsert the revocation (raising
# its watermark/expiry, never lowering them), and append the outbox row with the same seq.
# Measured ≈ 0.7 ms against ≈ 1.4 ms as separate statements (ARCHITECTURE §4).
_REVOKE = """
WITH s AS (
    UPDATE outbox_counter SET seq = seq + 1 WHERE id RETURNING seq
), r AS (
    INSERT INTO revocations AS v (kind, value, not_before, expires_at, reason, actor, seq)
    SELECT $1, $2, $3, $4, $5, $6, s.seq FROM s
    ON CONFLICT (kind, value) DO UPDATE
        SET not_before = GREATEST(v.not_before, EXCLUDED.not_before),
            expires_at = GREATEST(v.expires_at, EXCLUDED.expires_at),
            reason = EXCLUDED.reason, actor = EXCLUDED.actor, seq = EXCLUDED.seq
)
INSERT INTO outbox (seq, event_id, subject, payload, traceparent)
SELECT s.seq, $7, $8, $9, $10 FROM s
RETURNING seq
"""


class RevocationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def revoke(self, rev: Revocation, actor: str, event: OutboxEvent) -> int:
        """Record ``rev`` and its event atomically; returns the event's seq."""
        seq: int = await self._pool.fetchval(
            _REVOKE,
            rev.kind.value,
            rev.value,
            rev.not_before,
            rev.expires_at,
            rev.reason,
            actor,
            event.event_id,
            event.subject,
            event.payload,
            event.traceparent,
        )
        return seq

    async def live(self, now: int) -> tuple[list[Revocation], int]:
        """Every revocation that can still matter, and the seq the list is current to."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                "SELECT kind, value, not_before, expires_at, reason FROM revocations"
                " WHERE expires_at > $1",
                now,
            )
            seq: int = await conn.fetchval("SELECT seq FROM outbox_counter WHERE id")
        revs = [
            Revocation(
                RevocationKind(r["kind"]), r["value"], r["not_before"], r["expires_at"], r["reason"]
            )
            for r in rows
        ]
        return revs, seq
