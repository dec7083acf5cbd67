"""Idempotent admin writes: a caller-chosen ``request_id`` makes a retry safe.

An admin write (key rotate, key revoke, Revoke, client create/delete) may commit and still
answer UNAVAILABLE (the connection died after COMMIT). With a ``request_id`` (a UUID) the write
stores (caller client id, SHA-256 of the method and request body, the serialized response) in
the same transaction, for 24 hours. A retry with the same id and the same body gets the stored
response and writes nothing; the same id with another body is refused (INVALID_ARGUMENT).

Ids are scoped to the authenticated caller, so one client can neither read nor block another's
answers. Same-key writers are serialised by a transaction-level advisory lock (revocations by
the outbox counter lock, see migration 0005), so two concurrent retries cannot both write.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Final

import asyncpg

from tokenry.core.errors import InvalidRequest
from tokenry.store.db import Executor

#: How long an answer is kept (24 h); the sweeper deletes older records.
RETENTION_SECONDS: Final = 24 * 3600


class IdempotencyMismatch(InvalidRequest):
    """The request_id was used before with a different request (method or body)."""

    def __init__(self) -> None:
        super().__init__("request_id was already used with a different request")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    caller: str
    request_id: uuid.UUID
    body_hash: bytes

    def __repr__(self) -> str:
        return f"IdempotencyKey(caller={self.caller!r}, request_id={self.request_id})"


@dataclass(frozen=True, slots=True)
class Replay:
    """A use case's answer to a retry: the stored response of the first request, as is."""

    response: bytes

    def __repr__(self) -> str:  # a stored CreateClient answer is sealed, still: never print it
        return f"Replay({len(self.response)} bytes)"


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    """What an adapter hands a use case: the caller's request_id and the body hash; the key
    needs the authenticated caller, known only once the use case has authenticated it."""

    request_id: uuid.UUID
    body_hash: bytes

    def key(self, caller: str) -> IdempotencyKey:
        return IdempotencyKey(caller, self.request_id, self.body_hash)


def parse_request(request_id: str, method: str, body: bytes) -> IdempotencyRequest | None:
    """``request_id`` ("" = none) and the body it came with (without the id itself).

    Raises:
        InvalidRequest: ``request_id`` is not a UUID in its canonical text form.
    """
    if not request_id:
        return None
    try:
        parsed = uuid.UUID(request_id)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != request_id.lower():
        raise InvalidRequest("request_id must be a UUID (8-4-4-4-12 hexadecimal digits)")
    return IdempotencyRequest(parsed, body_hash(method, body))


def body_hash(method: str, body: bytes) -> bytes:
    """SHA-256 over the method name and the request body: one id cannot serve two methods."""
    return hashlib.sha256(method.encode() + b"\x00" + body).digest()


def _check(row: asyncpg.Record | None, key: IdempotencyKey) -> bytes | None:
    if row is None:
        return None
    if bytes(row["body_hash"]) != key.body_hash:
        raise IdempotencyMismatch
    response: bytes | None = row["response"]
    return response


_SELECT = (
    "SELECT body_hash, response FROM idempotency_records"
    " WHERE caller = $1 AND request_id = $2 AND expires_at > now()"
)


async def lookup(conn: Executor | asyncpg.Pool, key: IdempotencyKey) -> bytes | None:
    """The stored answer for ``key``, or None. A fast path before any work: a retry of a write
    that committed must not fail on the state it left (the client exists, the successor is too
    young to rotate again). The answer is authoritative only under :func:`claim`.

    Raises:
        IdempotencyMismatch: the id was used with another body.
    """
    return _check(await conn.fetchrow(_SELECT, key.caller, key.request_id), key)


async def claim(conn: Executor, key: IdempotencyKey) -> bytes | None:
    """Inside the write's transaction, before writing: lock ``key`` until the transaction ends
    and return the stored answer if there is one (then write nothing).

    Raises:
        IdempotencyMismatch: the id was used with another body.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"idempotency/{key.caller}/{key.request_id}",
    )
    return _check(await conn.fetchrow(_SELECT, key.caller, key.request_id), key)


async def record(conn: Executor, key: IdempotencyKey, response: bytes) -> None:
    """Store the answer, in the write's transaction (after :func:`claim`).

    Raises:
        IdempotencyMismatch: another kind of write took this id meanwhile (the caller's
            transaction must roll back).
    """
    status = await conn.execute(
        "INSERT INTO idempotency_records AS r (caller, request_id, body_hash, response,"
        " expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))"
        " ON CONFLICT (caller, request_id) DO UPDATE SET body_hash = EXCLUDED.body_hash,"
        " response = EXCLUDED.response, created_at = now(), expires_at = EXCLUDED.expires_at"
        " WHERE r.expires_at <= now()",
        key.caller,
        key.request_id,
        key.body_hash,
        response,
        float(RETENTION_SECONDS),
    )
    if status.rsplit(maxsplit=1)[-1] != "1":
        raise IdempotencyMismatch


async def fill(conn: Executor, keys: list[IdempotencyKey], responses: list[bytes]) -> None:
    """Fill the answers of placeholders written by ``tokenry_revoke`` (same transaction)."""
    await conn.execute(
        "UPDATE idempotency_records r SET response = u.response"
        " FROM unnest($1::text[], $2::uuid[], $3::bytea[]) AS u(caller, request_id, response)"
        " WHERE r.caller = u.caller AND r.request_id = u.request_id",
        [k.caller for k in keys],
        [k.request_id for k in keys],
        responses,
    )


class IdempotencyStore:
    """Pool-level reads and the sweep; writes happen in the write's own transaction
    (:func:`claim`, :func:`record`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def lookup(self, key: IdempotencyKey) -> bytes | None:
        """See :func:`lookup`."""
        return await lookup(self._pool, key)

    async def sweep(self, limit: int = 10_000) -> int:
        """Delete up to ``limit`` records past their 24 hours; returns how many."""
        status: str = await self._pool.execute(
            "DELETE FROM idempotency_records WHERE ctid = ANY(ARRAY("
            " SELECT ctid FROM idempotency_records WHERE expires_at <= now() LIMIT $1))",
            limit,
        )
        return int(status.rsplit(maxsplit=1)[-1])
