"""Signing keys in PostgreSQL: public JWK in clear, private key sealed (SPEC §5)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from tokenry.core.events import OutboxEvent
from tokenry.store.outbox import append

PUBLISHED_STATES = ("pending", "active", "retiring")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    kid: str
    alg: str
    use: str
    state: str
    public_jwk: dict[str, Any]
    private_key_sealed: bytes
    kek_id: str

    def __repr__(self) -> str:  # the sealed key is not secret, but it is noise in logs
        return (
            f"KeyRecord(kid={self.kid!r}, alg={self.alg!r}, use={self.use!r}, state={self.state!r})"
        )


def _record(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        kid=row["kid"],
        alg=row["alg"],
        use=row["use"],
        state=row["state"],
        public_jwk=json.loads(row["public_jwk"]),
        private_key_sealed=bytes(row["private_key_sealed"]),
        kek_id=row["kek_id"],
    )


_COLUMNS = "kid, alg, use, state, public_jwk::text AS public_jwk, private_key_sealed, kek_id"


class KeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def active(self, use: str, alg: str | None = None) -> KeyRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM signing_keys WHERE state = 'active' AND use = $1"  # noqa: S608
            " AND ($2::text IS NULL OR alg = $2) ORDER BY activated_at DESC LIMIT 1",
            use,
            alg,
        )
        return None if row is None else _record(row)

    async def insert_active(self, key: KeyRecord, event: OutboxEvent) -> bool:
        """Insert ``key`` as the active key for its (alg, use) unless one exists; with its event.

        Returns False (and writes nothing) when another key is already active, e.g. a second
        rotator replica won the race at first start.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO signing_keys (kid, alg, use, state, public_jwk,"
                    " private_key_sealed, kek_id, activated_at)"
                    " VALUES ($1, $2, $3, 'active', $4::jsonb, $5, $6, now())",
                    key.kid,
                    key.alg,
                    key.use,
                    json.dumps(key.public_jwk),
                    key.private_key_sealed,
                    key.kek_id,
                )
            except asyncpg.exceptions.UniqueViolationError:
                return False
            await append(conn, event)
            return True

    async def published(self) -> tuple[list[dict[str, Any]], int]:
        """Every published public JWK and the event seq the set is current to (one snapshot)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                "SELECT public_jwk::text AS public_jwk FROM signing_keys"
                " WHERE state = ANY($1::text[]) ORDER BY created_at",
                list(PUBLISHED_STATES),
            )
            seq: int = await conn.fetchval("SELECT seq FROM outbox_counter WHERE id")
        return [json.loads(r["public_jwk"]) for r in rows], seq
