"""Grant families (``gid``) in PostgreSQL: one row per authorization, refreshed or exchanged.

A family is revoked here (``revoked_at``: the issuer refuses to refresh it) and, by the caller,
with a grant revocation and its event (verifiers reject its access tokens, docs/spec.md §4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tokenry.store import opaque_tokens
from tokenry.store.db import Executor
from tokenry.store.records import GrantRecord

__all__ = ["GrantRecord", "GrantStore"]


def _record(row: asyncpg.Record) -> GrantRecord:
    return GrantRecord(
        gid=row["gid"],
        client_id=row["client_id"],
        subject=row["subject"],
        scopes=tuple(row["scopes"]),
        audiences=tuple(row["audiences"]),
        auth_time=row["auth_time"],
        nonce=row["nonce"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked=row["revoked"],
    )


class GrantStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def create(self, conn: Executor, grant: GrantRecord) -> None:
        await conn.execute(
            "INSERT INTO grants (gid, client_id, subject, scopes, audiences, auth_time, nonce,"
            " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            grant.gid,
            grant.client_id,
            grant.subject,
            list(grant.scopes),
            list(grant.audiences),
            grant.auth_time,
            grant.nonce,
            grant.created_at,
            grant.expires_at,
        )

    async def get(self, conn: Executor | asyncpg.Pool, gid: str) -> GrantRecord | None:
        row = await conn.fetchrow(
            "SELECT gid, client_id, subject, scopes, audiences, auth_time, nonce, created_at,"
            " expires_at, revoked_at IS NOT NULL AS revoked FROM grants WHERE gid = $1",
            gid,
        )
        return None if row is None else _record(row)

    async def revoke_family(self, conn: Executor, gid: str) -> None:
        """Mark the family and every opaque token in it revoked (in the caller's transaction)."""
        await conn.execute(
            "UPDATE grants SET revoked_at = now() WHERE gid = $1 AND revoked_at IS NULL", gid
        )
        await opaque_tokens.revoke_family(conn, gid)

    async def revoke_client_families(self, client_id: str) -> int:
        """Every family of a deleted client: its refresh tokens die with it."""
        async with self._pool.acquire() as conn, conn.transaction():
            gids = await conn.fetch(
                "UPDATE grants SET revoked_at = now() WHERE client_id = $1 AND revoked_at IS NULL"
                " RETURNING gid",
                client_id,
            )
            await conn.execute(
                "UPDATE opaque_tokens SET revoked_at = now()"
                " WHERE client_id = $1 AND revoked_at IS NULL",
                client_id,
            )
        return len(gids)

    async def sweep(self, now: int) -> int:
        result: str = await self._pool.execute("DELETE FROM grants WHERE expires_at <= $1", now)
        return int(result.rsplit(maxsplit=1)[-1])
