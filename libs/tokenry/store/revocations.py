"""Durable revocations: the row and its event commit in one statement (SPEC §4.1).

PostgreSQL is the source of truth. Tokenry's own services check revocations here (SPEC §4.5:
never the event-fed state), verifiers bootstrap from :meth:`RevocationStore.snapshot`, and the
sweeper drops rows once they cannot matter (SPEC §4.7).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import asyncpg

from tokenry.core.events import OutboxEvent
from tokenry.core.revocations import Revocation, RevocationKind, SnapshotBatch
from tokenry.store.db import Executor

# One statement = one transaction: unless the same revocation is already recorded with a
# watermark and expiry at least as high (RFC 7009 §2.2: revoking twice succeeds, and it should
# not publish a second event), bump the gap-free counter, upsert the revocation (raising its
# watermark/expiry, never lowering them) and append the outbox row with the same seq.
# Measured ≈ 0.7 ms against ≈ 1.4 ms as separate statements (ARCHITECTURE §4).
_REVOKE = """
WITH cur AS (
    SELECT seq FROM revocations
    WHERE kind = $1 AND value = $2 AND not_before >= $3 AND expires_at >= $4
), s AS (
    UPDATE outbox_counter SET seq = seq + 1
    WHERE id AND NOT EXISTS (SELECT 1 FROM cur)
    RETURNING seq
), r AS (
    INSERT INTO revocations AS v (kind, value, not_before, expires_at, reason, actor, seq)
    SELECT $1, $2, $3, $4, $5, $6, s.seq FROM s
    ON CONFLICT (kind, value) DO UPDATE
        SET not_before = GREATEST(v.not_before, EXCLUDED.not_before),
            expires_at = GREATEST(v.expires_at, EXCLUDED.expires_at),
            reason = EXCLUDED.reason, actor = EXCLUDED.actor, seq = EXCLUDED.seq
), o AS (
    INSERT INTO outbox (seq, event_id, subject, payload, traceparent)
    SELECT s.seq, $7, $8, $9, $10 FROM s
    RETURNING seq
)
SELECT (SELECT seq FROM o) AS new_seq, (SELECT seq FROM cur) AS old_seq
"""

# The same O(1) checks a verifier runs (RFC 9068 claims jti, gid, sub, client_id, iat), as one
# primary-key probe per kind.
_CHECK = """
SELECT kind FROM revocations
WHERE expires_at > $6 AND (
       (kind = 'jti' AND value = $1)
    OR (kind = 'grant' AND value = $2)
    OR (kind = 'subject' AND value = $3 AND $5 < not_before)
    OR (kind = 'client' AND value = $4 AND $5 < not_before))
LIMIT 1
"""

# Refresh families end where refreshing is decided — grants.revoked_at and the opaque tokens'
# revoked_at — which outlive the revocation row (swept once no access token can matter). So a
# grant, subject or client revocation also ends every family it covers, in the same
# transaction: a subject/client family begun before the watermark can never refresh again
# (SPEC §3), and its opaque tokens introspect as inactive.
_FAMILY_WHERE = {
    RevocationKind.GRANT: "gid = $1",
    RevocationKind.SUBJECT: "subject = $1 AND created_at < $2",
    RevocationKind.CLIENT: "client_id = $1 AND created_at < $2",
}
_END_FAMILIES = """
WITH g AS (
    UPDATE grants SET revoked_at = now() WHERE {where} AND revoked_at IS NULL RETURNING gid
)
UPDATE opaque_tokens SET revoked_at = now()
WHERE gid IN (SELECT gid FROM g) AND revoked_at IS NULL
"""

_SWEEP = """
DELETE FROM revocations WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM revocations WHERE expires_at <= $1 LIMIT $2))
"""


async def _end_families(conn: Executor, rev: Revocation) -> None:
    sql = _END_FAMILIES.format(where=_FAMILY_WHERE[rev.kind])
    if rev.kind is RevocationKind.GRANT:
        await conn.execute(sql, rev.value)
    else:
        await conn.execute(sql, rev.value, rev.not_before)


MIN_SNAPSHOT_BATCH = 1_000
MAX_SNAPSHOT_BATCH = 50_000


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """``seq`` of the event announcing the revocation; ``recorded`` False when an identical or
    stronger revocation already existed (its seq is returned and nothing was written)."""

    seq: int
    recorded: bool


@dataclass(frozen=True, slots=True)
class SnapshotPart:
    """One batch of a snapshot current to ``seq``; ``last`` on the final one."""

    seq: int
    batch: SnapshotBatch
    last: bool
    total: int


class RevocationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def head_seq(self) -> int:
        """The last outbox seq committed (every producer's, not only revocations')."""
        seq: int = await self._pool.fetchval("SELECT seq FROM outbox_counter WHERE id")
        return seq

    async def revoke(self, rev: Revocation, actor: str, event: OutboxEvent) -> RevokeResult:
        """Record ``rev`` and its event atomically (unless already covered); a grant, subject
        or client revocation also ends the refresh families it covers, in the same
        transaction."""
        args = (
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
        if rev.kind is RevocationKind.JTI:
            row = await self._pool.fetchrow(_REVOKE, *args)  # one statement, one round trip
        else:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(_REVOKE, *args)
                await _end_families(conn, rev)
        assert row is not None  # a SELECT without FROM always returns one row
        if row["new_seq"] is not None:
            return RevokeResult(int(row["new_seq"]), recorded=True)
        return RevokeResult(int(row["old_seq"]), recorded=False)

    async def check(
        self,
        *,
        jti: str,
        gid: str | None,
        sub: str | None,
        client_id: str | None,
        iat: float,
        now: float,
    ) -> str | None:
        """The kind of a live revocation covering these claims, or None (SPEC §4.5)."""
        kind: str | None = await self._pool.fetchval(
            _CHECK, jti, gid, sub, client_id, iat, int(now)
        )
        return kind

    async def get(self, kind: RevocationKind, value: str) -> Revocation | None:
        row = await self._pool.fetchrow(
            "SELECT not_before, expires_at, reason FROM revocations WHERE kind = $1 AND value = $2",
            kind.value,
            value,
        )
        if row is None:
            return None
        return Revocation(kind, value, row["not_before"], row["expires_at"], row["reason"])

    async def live(self, now: int) -> tuple[list[Revocation], int]:
        """Every revocation that can still matter, and the seq the list is current to."""
        revs: list[Revocation] = []
        seq = 0
        async for part in self.snapshot(now, MAX_SNAPSHOT_BATCH):
            seq = part.seq
            b = part.batch
            revs += [
                Revocation(RevocationKind.JTI, v, 0, e)
                for v, e in zip(b.jtis, b.jti_expires_at, strict=True)
            ]
            revs += [
                Revocation(RevocationKind.GRANT, v, 0, e)
                for v, e in zip(b.grant_ids, b.grant_expires_at, strict=True)
            ]
            revs += [Revocation(RevocationKind.SUBJECT, v, n, e) for v, n, e in b.subjects]
            revs += [Revocation(RevocationKind.CLIENT, v, n, e) for v, n, e in b.clients]
        return revs, seq

    async def snapshot(self, now: int, batch_size: int) -> AsyncGenerator[SnapshotPart, None]:
        """A consistent snapshot of live revocations, in batches of ``batch_size`` entries.

        One REPEATABLE READ, READ ONLY transaction reads the outbox counter and every row, so
        the snapshot holds exactly the revocations of events up to ``seq`` (the counter bump
        and the revocation row commit together). At least one part is yielded, even when
        there is nothing to list, so the caller always learns ``seq``.
        """
        batch_size = max(MIN_SNAPSHOT_BATCH, min(batch_size, MAX_SNAPSHOT_BATCH))
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            seq: int = await conn.fetchval("SELECT seq FROM outbox_counter WHERE id")
            cursor = await conn.cursor(
                "SELECT kind, value, not_before, expires_at FROM revocations WHERE expires_at > $1",
                now,
            )
            total = 0
            rows = await cursor.fetch(batch_size)
            while True:
                batch = SnapshotBatch.empty()
                add = batch.add
                for kind, value, not_before, expires_at in rows:
                    add(kind, value, not_before, expires_at)
                total += len(rows)
                following = await cursor.fetch(batch_size) if len(rows) == batch_size else []
                last = not following
                yield SnapshotPart(seq, batch, last, total)
                if last:
                    return
                rows = following

    async def sweep(self, now: int, limit: int = 10_000) -> int:
        """Delete up to ``limit`` revocations that expired by ``now``; returns how many."""
        status: str = await self._pool.execute(_SWEEP, now, limit)
        return int(status.rsplit(maxsplit=1)[-1])
