"""Read-only revocation checks against PostgreSQL, for the issuer's own decisions
(docs/spec.md §4.5).

The issuer never relies on the event-fed state to decide whether a subject token may be
exchanged or a family may be refreshed: it asks the ``revocations`` table (owned by the
revocation service; read here with plain SQL).
"""

from __future__ import annotations

import asyncpg

from tokenry.store.db import Executor
from tokenry.store.records import Watermark

__all__ = ["RevocationChecks", "Watermark", "covers"]


def covers(
    jti: str, gid: str, subject: str, client_id: str, issued_at: str, *, on: str = ""
) -> str:
    """The one SQL rule "this revocation row covers the token": the SQL twin of
    :meth:`tokenry.core.revocations.RevocationSet.check` (a property test keeps them equal).

    jti and grant revocations match by value; subject and client revocations are watermarks,
    covering tokens with ``iat < not_before`` (docs/spec.md §4). Expiry is not tested: a row lives
    until the sweeper drops it, as an entry of the set does until its sweep, and by ``expires_at``
    every token it covers has expired (``expires_at >= exp + leeway``). Each argument is a SQL
    expression (a ``$n`` parameter or a column); ``on`` qualifies the revocations columns (a
    table alias followed by a dot).
    """
    return (
        f"(({on}kind = 'jti' AND {on}value = {jti})"
        f" OR ({on}kind = 'grant' AND {on}value = {gid})"
        f" OR ({on}kind = 'subject' AND {on}value = {subject} AND {issued_at} < {on}not_before)"
        f" OR ({on}kind = 'client' AND {on}value = {client_id} AND {issued_at} < {on}not_before))"
    )


_CHECK = f"SELECT kind FROM revocations WHERE {covers('$1', '$2', '$3', '$4', '$5')} LIMIT 1"  # noqa: S608 - constant SQL


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

        Subject and client revocations apply when ``issued_at < not_before`` (docs/spec.md §4).
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
