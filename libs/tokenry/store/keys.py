"""Signing keys in PostgreSQL: public JWK in clear, private key sealed (docs/spec.md §5).

Reads go through :class:`KeyStore`. Every change goes through :meth:`KeyStore.writer`: one
transaction that locks the table against other writers, runs the fencing check of the caller's
lease (docs/design.md §3), re-reads the keys, and writes each state change together with its event
in the shared outbox. A paused ex-leader that wakes after losing its lease writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tokenry.core.events import OutboxEvent
from tokenry.core.keylifecycle import PUBLISHED, KeyInfo, KeySet, KeyState, Transition
from tokenry.core.keywrap import Kek, KekRing, KeyUnwrapError, is_sealed, seal
from tokenry.store.db import Executor
from tokenry.store.errors import LeaseLost as LeaseLost  # noqa: PLC0414 - re-export
from tokenry.store.leases import Lease
from tokenry.store.outbox import append, lease_is_current

PUBLISHED_STATES = tuple(sorted(PUBLISHED))


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key that can sign (pending or active), with its sealed private key."""

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


@dataclass(frozen=True, slots=True)
class KeyRow:
    """Everything about a key except its private part (what ListKeys shows)."""

    kid: str
    alg: str
    use: str
    state: KeyState
    public_jwk: dict[str, Any]
    kek_id: str
    has_private_key: bool
    created_at: float
    activated_at: float | None = None
    retiring_at: float | None = None
    retired_at: float | None = None
    revoked_at: float | None = None
    revoke_reason: str | None = None
    revoked_by: str | None = None

    @property
    def keyset(self) -> KeySet:
        return KeySet(self.use, self.alg)

    def info(self) -> KeyInfo:
        return KeyInfo(
            self.kid,
            self.keyset,
            self.state,
            self.created_at,
            self.activated_at,
            self.retiring_at,
        )


@dataclass(frozen=True, slots=True)
class RewrapReport:
    rewrapped: tuple[str, ...] = ()
    unchanged: int = 0
    failed: tuple[str, ...] = ()  # kids sealed under a KEK that was not given


def _ts(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _unix(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


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


def _row(row: asyncpg.Record) -> KeyRow:
    return KeyRow(
        kid=row["kid"],
        alg=row["alg"],
        use=row["use"],
        state=KeyState(row["state"]),
        public_jwk=json.loads(row["public_jwk"]),
        kek_id=row["kek_id"],
        has_private_key=row["has_private_key"],
        created_at=row["created_at"].timestamp(),
        activated_at=_unix(row["activated_at"]),
        retiring_at=_unix(row["retiring_at"]),
        retired_at=_unix(row["retired_at"]),
        revoked_at=_unix(row["revoked_at"]),
        revoke_reason=row["revoke_reason"],
        revoked_by=row["revoked_by"],
    )


_COLUMNS = "kid, alg, use, state, public_jwk::text AS public_jwk, private_key_sealed, kek_id"
_ROW_COLUMNS = (
    "kid, alg, use, state, public_jwk::text AS public_jwk, kek_id,"
    " private_key_sealed IS NOT NULL AS has_private_key, created_at, activated_at, retiring_at,"
    " retired_at, revoked_at, revoke_reason, revoked_by"
)
# The column that records when a key entered each state.
_STAMP = {
    KeyState.ACTIVE: "activated_at",
    KeyState.RETIRING: "retiring_at",
    KeyState.RETIRED: "retired_at",
    KeyState.REVOKED: "revoked_at",
}


async def _load(conn: Executor, extra_kid: str | None = None) -> list[KeyRow]:
    rows = await conn.fetch(
        f"SELECT {_ROW_COLUMNS} FROM signing_keys"  # noqa: S608 - constant columns
        " WHERE state = ANY($1::text[]) OR kid = $2 ORDER BY created_at, kid",
        list(PUBLISHED_STATES),
        extra_kid,
    )
    return [_row(r) for r in rows]


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

    async def signing_candidates(self, keysets: Iterable[KeySet]) -> list[KeyRecord]:
        """The active and pending keys of ``keysets`` (what an issuer may sign with next)."""
        sets = list(keysets)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM signing_keys"  # noqa: S608 - constant columns
            " WHERE state IN ('active', 'pending')"
            " AND (use, alg) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [k.use for k in sets],
            [k.alg for k in sets],
        )
        return [_record(r) for r in rows]

    async def published(self) -> tuple[list[dict[str, Any]], int]:
        """Every published public JWK and the event seq the set is current to (one snapshot)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                "SELECT public_jwk::text AS public_jwk FROM signing_keys"
                " WHERE state = ANY($1::text[]) ORDER BY created_at, kid",
                list(PUBLISHED_STATES),
            )
            seq: int = await conn.fetchval("SELECT seq FROM outbox_counter WHERE id")
        return [json.loads(r["public_jwk"]) for r in rows], seq

    async def list_keys(self, *, include_ended: bool = False) -> tuple[list[KeyRow], int]:
        """Keys (published ones, or all) and the event seq the listing is current to."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                f"SELECT {_ROW_COLUMNS} FROM signing_keys"  # noqa: S608 - constant columns
                " WHERE $1 OR state = ANY($2::text[]) ORDER BY created_at, kid",
                include_ended,
                list(PUBLISHED_STATES),
            )
            seq: int = await conn.fetchval("SELECT seq FROM outbox_counter WHERE id")
        return [_row(r) for r in rows], seq

    async def live(self, extra_kid: str | None = None) -> list[KeyRow]:
        """The published keys (plus ``extra_kid`` in whatever state), outside any transaction."""
        async with self._pool.acquire() as conn:
            return await _load(conn, extra_kid)

    @asynccontextmanager
    async def writer(self, lease: Lease | None) -> AsyncIterator[KeyWriter]:
        """A write transaction on the keys, serialised against every other key writer.

        ``lease``: the rotator leader's lease, checked inside the transaction (fencing); None
        for an operator's explicit request (RPC), which needs no leadership, only the lock.

        Raises:
            LeaseLost: ``lease`` is no longer current; nothing is written.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            # EXCLUSIVE blocks other writers (and this lock) but not plain reads: the JWKS
            # stays readable while a rotation commits.
            await conn.execute("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            # FOR SHARE on the lease row holds off a takeover until this transaction ends.
            if lease is not None and not await lease_is_current(conn, lease):
                raise LeaseLost(f"lease {lease.name} (fence {lease.fence}) is no longer held")
            yield KeyWriter(conn)

    async def rewrap(self, ring: KekRing, target: Kek) -> RewrapReport:
        """Re-seal every stored private key under ``target`` (one transaction).

        Rows already sealed under ``target`` in the current format are left as they are; a row
        whose KEK is not in ``ring`` is reported, not touched.
        """
        rewrapped: list[str] = []
        failed: list[str] = []
        unchanged = 0
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            rows = await conn.fetch(
                "SELECT kid, kek_id, private_key_sealed FROM signing_keys"
                " WHERE private_key_sealed IS NOT NULL ORDER BY created_at, kid"
            )
            for row in rows:
                kid, sealed = row["kid"], bytes(row["private_key_sealed"])
                if row["kek_id"] == target.id and is_sealed(sealed):
                    unchanged += 1
                    continue
                try:
                    plaintext = ring.open(kid, row["kek_id"], sealed)
                except KeyUnwrapError:
                    failed.append(kid)
                    continue
                await conn.execute(
                    "UPDATE signing_keys SET private_key_sealed = $2, kek_id = $3 WHERE kid = $1",
                    kid,
                    seal(target, kid, plaintext),
                    target.id,
                )
                rewrapped.append(kid)
        return RewrapReport(tuple(rewrapped), unchanged, tuple(failed))


class KeyWriter:
    """Writes inside :meth:`KeyStore.writer`'s transaction."""

    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    @property
    def conn(self) -> Executor:
        """The transaction's connection, for writes that must commit with the keys' (e.g. the
        idempotency record of an admin request)."""
        return self._conn

    async def load(self, extra_kid: str | None = None) -> list[KeyRow]:
        """The published keys (plus ``extra_kid``), read under the writers' lock."""
        return await _load(self._conn, extra_kid)

    async def insert(self, record: KeyRecord, at: float) -> None:
        if record.state not in (KeyState.PENDING, KeyState.ACTIVE):
            raise ValueError("a new key is pending or active")
        await self._conn.execute(
            "INSERT INTO signing_keys (kid, alg, use, state, public_jwk, private_key_sealed,"
            " kek_id, created_at, activated_at)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)",
            record.kid,
            record.alg,
            record.use,
            record.state,
            json.dumps(record.public_jwk),
            record.private_key_sealed,
            record.kek_id,
            _ts(at),
            _ts(at) if record.state == KeyState.ACTIVE else None,
        )

    async def transition(
        self, change: Transition, at: float, *, reason: str | None = None, actor: str | None = None
    ) -> None:
        """Move one key; the private key is destroyed when the key can never sign again."""
        column = _STAMP[change.dst]
        ended = change.dst in (KeyState.RETIRED, KeyState.REVOKED)
        status = await self._conn.execute(
            f"UPDATE signing_keys SET state = $3, {column} = $4,"  # noqa: S608 - column from _STAMP
            " private_key_sealed = CASE WHEN $5 THEN NULL ELSE private_key_sealed END,"
            " revoke_reason = CASE WHEN $3 = 'revoked' THEN $6 ELSE revoke_reason END,"
            " revoked_by = CASE WHEN $3 = 'revoked' THEN $7 ELSE revoked_by END"
            " WHERE kid = $1 AND state = $2",
            change.kid,
            change.src.value,
            change.dst.value,
            _ts(at),
            ended,
            reason,
            actor,
        )
        if status != "UPDATE 1":
            raise RuntimeError(f"key {change.kid} was not {change.src} any more")

    async def emit(self, events: Sequence[OutboxEvent]) -> int:
        """Append the events (in this order) to the outbox; returns the last seq."""
        seq = 0
        for event in events:
            seq = await append(self._conn, event)
        return seq
