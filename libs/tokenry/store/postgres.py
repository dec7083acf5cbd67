"""PostgreSQL adapters of the ports no single store module implements alone.

- :class:`PgStorage`: the transaction boundary (``Transactional``: one pooled connection, one
  transaction per :class:`PgUnitOfWork`) and the single-statement ``TokenReader``;
- :class:`PgUnitOfWork`: ``UnitOfWork`` over the existing stores, bound to the connection;
- :class:`PgRevocationLog`: ``RevocationLog`` over
  :class:`tokenry.store.revocations.RevocationStore`, with the event encoder passed in (the
  encoding is the bus codec's; the store does not import it).

Row locks (``SELECT … FOR UPDATE``) serialise concurrent redemptions of one code or one refresh
token: the winner is decided in the database, never in a process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from tokenry.core.events import OutboxEvent
from tokenry.core.revocations import Revocation
from tokenry.store import opaque_tokens
from tokenry.store.auth_codes import AuthCodeStore
from tokenry.store.db import Executor
from tokenry.store.grants import GrantStore
from tokenry.store.records import (
    AuthCodeRecord,
    AuthRequestRecord,
    GrantRecord,
    OpaqueTokenRecord,
)
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.store.revocations import RevocationStore

__all__ = ["EventEncoder", "PgRevocationLog", "PgStorage", "PgUnitOfWork"]

# (revocation, now) -> its outbox event: ``functools.partial(tokenry.bus.codec.revocation_event,
# subjects)``.
EventEncoder = Callable[[Revocation, float], OutboxEvent]


class PgUnitOfWork:
    """``tokenry.store.ports.UnitOfWork`` on one connection inside its transaction."""

    __slots__ = ("_checks", "_codes", "_conn", "_grants")

    def __init__(
        self, conn: Executor, codes: AuthCodeStore, grants: GrantStore, checks: RevocationChecks
    ) -> None:
        self._conn = conn
        self._codes = codes
        self._grants = grants
        self._checks = checks

    async def take_request(self, challenge_hash: bytes, now: int) -> AuthRequestRecord | None:
        return await self._codes.take_request(self._conn, challenge_hash, now)

    async def save_code(self, code: AuthCodeRecord) -> None:
        await self._codes.save_code(self._conn, code)

    async def lock_code(self, code_hash: bytes) -> AuthCodeRecord | None:
        return await self._codes.lock_code(self._conn, code_hash)

    async def mark_code_used(self, code_hash: bytes, now: int) -> None:
        await self._codes.mark_used(self._conn, code_hash, now)

    async def create_grant(self, grant: GrantRecord) -> None:
        await self._grants.create(self._conn, grant)

    async def get_grant(self, gid: str) -> GrantRecord | None:
        return await self._grants.get(self._conn, gid)

    async def revoke_family(self, gid: str) -> None:
        await self._grants.revoke_family(self._conn, gid)

    async def get_token(self, token_hash: bytes, *, lock: bool = False) -> OpaqueTokenRecord | None:
        return await opaque_tokens.get(self._conn, token_hash, lock=lock)

    async def insert_tokens(self, records: Sequence[OpaqueTokenRecord]) -> None:
        await opaque_tokens.insert_many(self._conn, records)

    async def mark_spent(
        self,
        token_hash: bytes,
        *,
        used_at: int,
        successor_hash: bytes,
        minted: dict[str, Any],
    ) -> None:
        await opaque_tokens.mark_spent(
            self._conn, token_hash, used_at=used_at, successor_hash=successor_hash, minted=minted
        )

    async def revoked_kind(
        self,
        *,
        jti: str | None,
        gid: str | None,
        subject: str | None,
        client_id: str | None,
        issued_at: int,
    ) -> str | None:
        return await self._checks.revoked_kind(
            jti=jti,
            gid=gid,
            subject=subject,
            client_id=client_id,
            issued_at=issued_at,
            conn=self._conn,
        )


class PgStorage:
    """``Transactional`` and ``TokenReader`` over a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._codes = AuthCodeStore(pool)
        self._grants = GrantStore(pool)
        self._checks = RevocationChecks(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgUnitOfWork]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PgUnitOfWork(conn, self._codes, self._grants, self._checks)

    async def get_token(self, token_hash: bytes) -> OpaqueTokenRecord | None:
        return await opaque_tokens.get(self._pool, token_hash)

    async def get_grant(self, gid: str) -> GrantRecord | None:
        return await self._grants.get(self._pool, gid)


class PgRevocationLog:
    """``RevocationLog``: one ``tokenry_revoke`` statement per revocation (docs/spec.md §4.1)."""

    def __init__(self, store: RevocationStore, encode: EventEncoder) -> None:
        self._store = store
        self._encode = encode

    async def revoke(self, rev: Revocation, actor: str, now: float) -> int:
        result = await self._store.revoke(rev, actor, self._encode(rev, now))
        return result.seq
