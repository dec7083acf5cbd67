"""Authorization requests (login challenges) and authorization codes, by hash only.

RFC 6749 §4.1.2: a code is short-lived (≤ 60 s, docs/spec.md §2) and single-use; a used code stays
recorded (``used_at``) so that a second use is recognised and revokes its family (§4.1.2,
§10.5) instead of looking like an unknown code.
"""

from __future__ import annotations

import asyncpg

from tokenry.store.db import Executor
from tokenry.store.records import (
    MAX_PENDING_REQUESTS_PER_CLIENT,
    AuthCodeRecord,
    AuthRequestRecord,
    too_many_pending,
)

__all__ = [
    "MAX_PENDING_REQUESTS_PER_CLIENT",
    "USED_CODE_RETENTION",
    "AuthCodeRecord",
    "AuthCodeStore",
    "AuthRequestRecord",
    "too_many_pending",
]


# Used codes are kept this long past their exp, so a late replay still revokes the family.
USED_CODE_RETENTION = 86400


class AuthCodeStore:
    """Login challenges outside a transaction (``tokenry.store.ports.AuthorizeRequestStorage``);
    the rest is used through :class:`tokenry.store.postgres.PgUnitOfWork`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_request(self, req: AuthRequestRecord) -> None:
        # One statement: the bound is checked where the row is written (racing inserts may
        # overshoot it by the number in flight, never without limit).
        status: str = await self._pool.execute(
            "INSERT INTO auth_requests (challenge_hash, client_id, redirect_uri, scopes,"
            " audiences, state, code_challenge, nonce, expires_at, max_age, login_after)"
            " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12"
            " WHERE (SELECT count(*) FROM (SELECT 1 FROM auth_requests WHERE client_id = $2"
            "   AND expires_at > extract(epoch FROM clock_timestamp()) LIMIT $10) AS live) < $10",
            req.challenge_hash,
            req.client_id,
            req.redirect_uri,
            list(req.scopes),
            list(req.audiences),
            req.state,
            req.code_challenge,
            req.nonce,
            req.expires_at,
            MAX_PENDING_REQUESTS_PER_CLIENT,
            req.max_age,
            req.login_after,
        )
        if status.endswith(" 0"):
            raise too_many_pending()

    async def take_request(
        self, conn: Executor, challenge_hash: bytes, now: int
    ) -> AuthRequestRecord | None:
        """Consume a pending request (single use); None when unknown, used or expired."""
        row = await conn.fetchrow(
            "DELETE FROM auth_requests WHERE challenge_hash = $1 RETURNING *", challenge_hash
        )
        if row is None or row["expires_at"] <= now:
            return None
        return AuthRequestRecord(
            challenge_hash=bytes(row["challenge_hash"]),
            client_id=row["client_id"],
            redirect_uri=row["redirect_uri"],
            scopes=tuple(row["scopes"]),
            audiences=tuple(row["audiences"]),
            state=row["state"],
            code_challenge=row["code_challenge"],
            nonce=row["nonce"],
            expires_at=row["expires_at"],
            max_age=row["max_age"],
            login_after=row["login_after"],
        )

    async def save_code(self, conn: Executor, code: AuthCodeRecord) -> None:
        await conn.execute(
            "INSERT INTO auth_codes (code_hash, gid, client_id, redirect_uri, code_challenge,"
            " subject, scopes, audiences, nonce, auth_time, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            code.code_hash,
            code.gid,
            code.client_id,
            code.redirect_uri,
            code.code_challenge,
            code.subject,
            list(code.scopes),
            list(code.audiences),
            code.nonce,
            code.auth_time,
            code.expires_at,
        )

    async def lock_code(self, conn: Executor, code_hash: bytes) -> AuthCodeRecord | None:
        """The code row, locked for this transaction: concurrent redemptions serialise here."""
        row = await conn.fetchrow(
            "SELECT * FROM auth_codes WHERE code_hash = $1 FOR UPDATE", code_hash
        )
        if row is None:
            return None
        return AuthCodeRecord(
            code_hash=bytes(row["code_hash"]),
            gid=row["gid"],
            client_id=row["client_id"],
            redirect_uri=row["redirect_uri"],
            code_challenge=row["code_challenge"],
            subject=row["subject"],
            scopes=tuple(row["scopes"]),
            audiences=tuple(row["audiences"]),
            nonce=row["nonce"],
            auth_time=row["auth_time"],
            expires_at=row["expires_at"],
            used_at=row["used_at"],
        )

    async def mark_used(self, conn: Executor, code_hash: bytes, now: int) -> None:
        await conn.execute(
            "UPDATE auth_codes SET used_at = $2 WHERE code_hash = $1", code_hash, now
        )

    async def sweep(self, now: int) -> int:
        a: str = await self._pool.execute("DELETE FROM auth_requests WHERE expires_at <= $1", now)
        b: str = await self._pool.execute(
            "DELETE FROM auth_codes WHERE expires_at <= $1", now - USED_CODE_RETENTION
        )
        return int(a.rsplit(maxsplit=1)[-1]) + int(b.rsplit(maxsplit=1)[-1])
