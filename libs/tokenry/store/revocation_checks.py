"""Read-only revocation checks against PostgreSQL, for the issuer's own decisions (SPEC §4.5).

The issuer never relies on the event-fed state to decide whether a subject token may be
exchanged or a family may be refreshed: it asks the ``revocations`` table (owned by the
revocation service; read here with plain SQL).
"""

from __future__ import annotations

import asyncpg

from tokenry.store.db import Executor
from tokenry.store.records import Watermark

__all__ = ["RevocationChecks", "Watermark"]

_CHECK = """
SELECT kind FROM revocations
WHERE (kind = 'jti' AND value = $1)
   OR (kind = 'grant' AND value = $2)
   OR (kind = 'subject' AND value = $3 AND not_before > $5)
   OR (kind = 'client' AND value = $4 AND not_before > $5)
LIMIT 1
"""


class RevocationChecks:
    """``tokenry.store.ports.RevocationLookup`` (``conn``: inside a transaction) and
    ``WatermarkSource``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def revoked_kind(
        self,
        *,
        jti: str | None,
        gid: str | None,
        subject: str | None,
        client_id: str | None,
        issued_at: int,
        conn: Executor | None = None,
    ) -> str | None:
        """The kind of revocation that applies to a token (or a family begun at ``issued_at``).

        Subject and client revocations apply when ``issued_at < not_before`` (SPEC §4).
        """
        executor = conn if conn is not None else self._pool
        kind: str | None = await executor.fetchval(
            _CHECK, jti or "", gid or "", subject or "", client_id or "", issued_at
        )
        return kind

    async def future_watermarks(self, now: int) -> list[Watermark]:
        """Subject and client watermarks still ahead of ``now``: minting for them must wait."""
        rows = await self._pool.fetch(
            "SELECT kind, value, not_before FROM revocations"
            " WHERE kind IN ('subject', 'client') AND not_before > $1",
            now,
        )
        return [Watermark(r["kind"], r["value"], r["not_before"]) for r in rows]
