"""Opaque access and refresh tokens in PostgreSQL, keyed by SHA-256 of the token (docs/spec.md §3).

The plaintext never reaches the database. :class:`OpaqueTokenWriter` batches the inserts of
concurrent client-credentials requests into one statement (group commit): every caller still
returns only after its own row is committed, but N concurrent issuances cost one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from tokenry.store.batching import DEFAULT_MAX_BATCH, Coalescer
from tokenry.store.db import Executor
from tokenry.store.records import ACCESS, REFRESH, OpaqueTokenRecord
from tokenry.store.revocation_checks import covers

__all__ = [
    "ACCESS",
    "REFRESH",
    "IntrospectionReader",
    "OpaqueTokenRecord",
    "OpaqueTokenWriter",
    "get",
    "get_many_for_introspection",
    "insert_many",
    "mark_spent",
    "revoke_family",
    "sweep",
]

_COLUMNS = (
    "token_hash, kind, jti, gid, client_id, subject, scopes, audiences, issued_at, expires_at, act"
)
_SELECT = (
    "SELECT token_hash, kind, jti, gid, client_id, subject, scopes, audiences, issued_at,"
    " expires_at, act::text AS act, used_at, successor_hash, minted::text AS minted,"
    " revoked_at IS NOT NULL AS revoked FROM opaque_tokens"
)


def _record(row: asyncpg.Record) -> OpaqueTokenRecord:
    return OpaqueTokenRecord(
        token_hash=bytes(row["token_hash"]),
        kind=row["kind"],
        jti=row["jti"],
        gid=row["gid"],
        client_id=row["client_id"],
        subject=row["subject"],
        scopes=tuple(row["scopes"]),
        audiences=tuple(row["audiences"]),
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        act=json.loads(row["act"]) if row["act"] else None,
        used_at=row["used_at"],
        successor_hash=bytes(row["successor_hash"]) if row["successor_hash"] else None,
        minted=json.loads(row["minted"]) if row["minted"] else None,
        revoked=row["revoked"],
    )


def _columns(records: Sequence[OpaqueTokenRecord]) -> list[list[Any]]:
    return [
        [r.token_hash for r in records],
        [r.kind for r in records],
        [r.jti for r in records],
        [r.gid for r in records],
        [r.client_id for r in records],
        [r.subject for r in records],
        # text[][] cannot be ragged: scopes and audiences travel as JSON arrays.
        [json.dumps(list(r.scopes)) for r in records],
        [json.dumps(list(r.audiences)) for r in records],
        [r.issued_at for r in records],
        [r.expires_at for r in records],
        [json.dumps(r.act) if r.act is not None else None for r in records],
    ]


# Ragged arrays per row: send JSON arrays and unpack them in SQL.
_INSERT_MANY_JSON = (
    f"INSERT INTO opaque_tokens ({_COLUMNS})"  # noqa: S608 - constant columns
    """
SELECT h, k, j, g, c, s,
       ARRAY(SELECT jsonb_array_elements_text(sc::jsonb)),
       ARRAY(SELECT jsonb_array_elements_text(au::jsonb)),
       ia, ea, ac
FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::jsonb[])
     AS t(h, k, j, g, c, s, sc, au, ia, ea, ac)
"""
)


async def insert_many(conn: Executor | asyncpg.Pool, records: Sequence[OpaqueTokenRecord]) -> None:
    """Insert token rows (inside the caller's transaction when ``conn`` is one)."""
    if records:
        await conn.execute(_INSERT_MANY_JSON, *_columns(records))


async def get(
    conn: Executor | asyncpg.Pool, token_hash: bytes, *, lock: bool = False
) -> OpaqueTokenRecord | None:
    sql = f"{_SELECT} WHERE token_hash = $1" + (" FOR UPDATE" if lock else "")
    row = await conn.fetchrow(sql, token_hash)
    return None if row is None else _record(row)


# One round trip for introspection (docs/spec.md §4.5: PostgreSQL-backed revocation state): the
# token row and whether any revocation covers it — its jti, its family, or a subject/client
# watermark later than its iat (the one rule, ``revocation_checks.covers``).
_COVERED = covers("t.jti", "t.gid", "t.subject", "t.client_id", "t.issued_at", on="r.")
_INTROSPECT = f"""
SELECT t.token_hash, t.kind, t.jti, t.gid, t.client_id, t.subject, t.scopes, t.audiences,
       t.issued_at, t.expires_at, t.act::text AS act, t.used_at, t.successor_hash,
       t.minted::text AS minted,
       t.revoked_at IS NOT NULL OR EXISTS (
           SELECT 1 FROM revocations r WHERE {_COVERED}
       ) AS revoked
FROM opaque_tokens t
WHERE t.token_hash = ANY($1::bytea[])
"""  # noqa: S608 - constant SQL


async def get_many_for_introspection(
    conn: Executor | asyncpg.Pool, token_hashes: list[bytes]
) -> dict[bytes, OpaqueTokenRecord]:
    """The rows of these hashes, by hash (absent: unknown), each with ``revoked`` true when the
    row itself or any revocation rule revokes it; one query for all of them."""
    rows = await conn.fetch(_INTROSPECT, token_hashes)
    return {bytes(row["token_hash"]): _record(row) for row in rows}


async def mark_spent(
    conn: Executor,
    token_hash: bytes,
    *,
    used_at: int,
    successor_hash: bytes,
    minted: dict[str, Any],
) -> None:
    await conn.execute(
        "UPDATE opaque_tokens SET used_at = $2, successor_hash = $3, minted = $4::jsonb"
        " WHERE token_hash = $1",
        token_hash,
        used_at,
        successor_hash,
        json.dumps(minted),
    )


async def revoke_family(conn: Executor, gid: str) -> None:
    await conn.execute(
        "UPDATE opaque_tokens SET revoked_at = now() WHERE gid = $1 AND revoked_at IS NULL", gid
    )


class OpaqueTokenWriter:
    """Group commit for opaque access tokens minted outside any other transaction.

    ``await write(record)`` returns once the row is committed. Requests arriving while a batch
    is in flight wait for the next batch, so under load one INSERT carries many rows.
    """

    def __init__(self, pool: asyncpg.Pool, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        async def run(records: list[OpaqueTokenRecord]) -> list[None]:
            await insert_many(pool, records)
            return [None] * len(records)

        self._batches: Coalescer[OpaqueTokenRecord, None] = Coalescer(run, max_batch)

    async def write(self, record: OpaqueTokenRecord) -> None:
        await self._batches(record)

    # ``tokenry.store.ports.AccessTokenWriter``: the same function, no extra frame on the hot path.
    write_access_token = write

    async def close(self) -> None:
        await self._batches.close()


class IntrospectionReader:
    """:func:`get_many_for_introspection` for one hash at a time: lookups arriving while one
    query is in flight go out together as the next (one round trip and one pool checkout per
    batch)."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        async def run(hashes: list[bytes]) -> list[OpaqueTokenRecord | None]:
            found = await get_many_for_introspection(pool, hashes)
            return [found.get(h) for h in hashes]

        self._batches: Coalescer[bytes, OpaqueTokenRecord | None] = Coalescer(run, max_batch)

    async def get(self, token_hash: bytes) -> OpaqueTokenRecord | None:
        return await self._batches(token_hash)

    async def close(self) -> None:
        await self._batches.close()


async def sweep(pool: asyncpg.Pool, now: int) -> int:
    result: str = await pool.execute("DELETE FROM opaque_tokens WHERE expires_at <= $1", now)
    return int(result.rsplit(maxsplit=1)[-1])
