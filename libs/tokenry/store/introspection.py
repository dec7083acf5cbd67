"""PostgreSQL adapters of the introspection ports (:mod:`tokenry.flows.introspection`), shared
by the introspector and the HTTP gateway."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from tokenry.core.renames import renamed
from tokenry.flows.introspection import OpaqueRecord
from tokenry.store import opaque_tokens
from tokenry.store.batching import DEFAULT_MAX_BATCH, Coalescer
from tokenry.store.opaque_tokens import _INTROSPECT  # the one introspection query
from tokenry.store.revocation_checks import RevocationChecks

__all__ = ["BatchedOpaqueRecords", "StoreOpaqueRecords", "StoreRevocationCheck"]


def _opaque_record(row: opaque_tokens.OpaqueTokenRecord, issuer: str) -> OpaqueRecord:
    return OpaqueRecord(
        kind=row.kind,
        jti=row.jti,
        gid=row.gid,
        client_id=row.client_id,
        subject=row.subject,
        scope=" ".join(row.scopes),
        # A refresh token is for the client that holds it (RFC 6749 §1.5).
        audiences=row.audiences if row.kind == "access" else (row.client_id,),
        issuer=issuer,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        # Revoked by its row or by any revocation rule (one query); a spent refresh token
        # is dead too, even inside the issuer's retry grace.
        revoked=row.revoked or row.used_at is not None,
        act=row.act,
    )


class StoreOpaqueRecords:
    """OpaqueRecords port over the issuer's ``opaque_tokens`` table (lookup by SHA-256)."""

    def __init__(self, reader: opaque_tokens.IntrospectionReader, issuer_url: str) -> None:
        self._reader = reader
        self._issuer = issuer_url

    async def find(self, digest: bytes) -> OpaqueRecord | None:
        row = await self._reader.get(digest)
        return None if row is None else _opaque_record(row, self._issuer)


def _record_of(row: asyncpg.Record, issuer: str) -> OpaqueRecord:
    """:func:`_opaque_record` straight from a row of ``get_many_for_introspection``'s query
    (no ``OpaqueTokenRecord`` in between: the columns it alone reads are not decoded)."""
    kind, client_id, act = row["kind"], row["client_id"], row["act"]
    return OpaqueRecord(
        kind=kind,
        jti=row["jti"],
        gid=row["gid"],
        client_id=client_id,
        subject=row["subject"],
        scope=" ".join(row["scopes"]),
        # A refresh token is for the client that holds it (RFC 6749 §1.5).
        audiences=tuple(row["audiences"]) if kind == "access" else (client_id,),
        issuer=issuer,
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        # Revoked by its row or by any revocation rule (one query); a spent refresh token
        # is dead too, even inside the issuer's retry grace.
        revoked=row["revoked"] or row["used_at"] is not None,
        act=json.loads(act) if act else None,
    )


class BatchedOpaqueRecords:
    """:class:`StoreOpaqueRecords` with its own batching (``store.batching.Coalescer``, as
    ``opaque_tokens.IntrospectionReader``): one query per batch of hashes, the very query of
    ``opaque_tokens.get_many_for_introspection`` (each row and every revocation rule covering
    it), its rows turned into records by the batch, so :meth:`find` is the batch's future
    itself, awaited by the flow without a coroutine of its own (the introspector's cold
    path; tests/unit/test_intro_cold_path.py checks both read the same records)."""

    def __init__(
        self, pool: asyncpg.Pool, issuer_url: str, max_batch: int = DEFAULT_MAX_BATCH
    ) -> None:
        async def run(hashes: list[bytes]) -> list[OpaqueRecord | None]:
            rows = await pool.fetch(_INTROSPECT, hashes)
            found = {bytes(row["token_hash"]): row for row in rows}
            out: list[OpaqueRecord | None] = []
            for digest in hashes:
                row = found.get(digest)
                out.append(None if row is None else _record_of(row, issuer_url))
            return out

        self._batches: Coalescer[bytes, OpaqueRecord | None] = Coalescer(run, max_batch)

    def find(self, digest: bytes) -> asyncio.Future[OpaqueRecord | None]:
        return self._batches.submit(digest)

    async def close(self) -> None:
        await self._batches.close()


class StoreRevocationCheck:
    """RevocationCheck port: PostgreSQL, never the event-fed state (docs/spec.md §4.5)."""

    def __init__(self, checks: RevocationChecks) -> None:
        self._checks = checks

    async def revoked(
        self, jti: str, gid: str | None, sub: str | None, client_id: str | None, iat: float
    ) -> bool:
        kind = await self._checks.revoked_kind(
            jti=jti, gid=gid, subject=sub, client_id=client_id, issued_at=int(iat)
        )
        return kind is not None


# ``StoreOpaqueTokens`` until issue 12 item 9 (``store.presented_tokens.StoreOpaqueTokens`` is the
# revocation side's); the old name resolves for one release.
__getattr__ = renamed(__name__, {"StoreOpaqueTokens": ("StoreOpaqueRecords", StoreOpaqueRecords)})
