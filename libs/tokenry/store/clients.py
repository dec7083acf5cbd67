"""The client registry in PostgreSQL.

Every change commits with its ``clients.*`` event in the shared outbox (one transaction), so
issuers caching clients in memory drop them as soon as the event arrives (docs/design.md §4).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace

import asyncpg

from tokenry.core.clients import Client
from tokenry.core.events import OutboxEvent
from tokenry.store import idempotency
from tokenry.store.errors import ClientExists as ClientExists  # noqa: PLC0414 - re-export
from tokenry.store.idempotency import IdempotencyKey
from tokenry.store.outbox import append

#: what :meth:`ClientStore.update` may change: nothing an issued token depends on
UPDATABLE = frozenset(
    {"description", "redirect_uris", "web_origins", "first_party", "post_logout_redirect_uris"}
)
#: ``@>`` can use the GIN index of migration 0010 (``$1 = ANY(web_origins)`` cannot)
HAS_WEB_ORIGIN = "SELECT EXISTS (SELECT 1 FROM clients WHERE web_origins @> ARRAY[$1::text])"
_BASE_COLUMNS = (
    "client_id, secret_hash, pepper_id, grant_types, scopes, audiences, token_format,"
    " access_token_ttl, description"
)
_COLUMNS = (
    _BASE_COLUMNS + ", client_type, auth_method, jwks, redirect_uris, id_token_ttl, id_token_alg,"
    " refresh_token_idle_ttl, refresh_token_absolute_ttl, token_exchange_from,"
    " tls_client_auth_san_uri, tls_client_auth_subject_dn, tls_client_auth_san_dns,"
    " certificate_bound, web_origins, first_party, post_logout_redirect_uris"
)
_SELECT = (
    "SELECT client_id, secret_hash, pepper_id, grant_types, scopes, audiences, token_format,"
    " access_token_ttl, description, client_type, auth_method, jwks::text AS jwks,"
    " redirect_uris, id_token_ttl, id_token_alg, refresh_token_idle_ttl,"
    " refresh_token_absolute_ttl, token_exchange_from, tls_client_auth_san_uri,"
    " tls_client_auth_subject_dn, tls_client_auth_san_dns, certificate_bound,"
    " web_origins, first_party, post_logout_redirect_uris FROM clients"
)
_VALUES = (
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16, $17, $18,"
    " $19, $20, $21, $22, $23, $24, $25"
)


def _client(row: asyncpg.Record) -> Client:
    return Client(
        client_id=row["client_id"],
        secret_hash=row["secret_hash"],
        pepper_id=row["pepper_id"],
        grant_types=frozenset(row["grant_types"]),
        scopes=frozenset(row["scopes"]),
        audiences=tuple(row["audiences"]),
        token_format=row["token_format"],
        access_token_ttl=row["access_token_ttl"],
        description=row["description"],
        client_type=row["client_type"],
        auth_method=row["auth_method"],
        jwks_json=row["jwks"],
        redirect_uris=tuple(row["redirect_uris"]),
        id_token_ttl=row["id_token_ttl"],
        id_token_alg=row["id_token_alg"],
        refresh_token_idle_ttl=row["refresh_token_idle_ttl"],
        refresh_token_absolute_ttl=row["refresh_token_absolute_ttl"],
        token_exchange_from=frozenset(row["token_exchange_from"]),
        tls_client_auth_san_uri=row["tls_client_auth_san_uri"],
        tls_client_auth_subject_dn=row["tls_client_auth_subject_dn"],
        tls_client_auth_san_dns=row["tls_client_auth_san_dns"],
        certificate_bound=row["certificate_bound"],
        web_origins=tuple(row["web_origins"]),
        first_party=row["first_party"],
        post_logout_redirect_uris=tuple(row["post_logout_redirect_uris"]),
    )


def _args(client: Client) -> tuple[object, ...]:
    jwks = json.dumps(json.loads(client.jwks_json)) if client.jwks_json else None
    return (
        client.client_id,
        client.secret_hash,
        client.pepper_id,
        sorted(client.grant_types),
        sorted(client.scopes),
        list(client.audiences),
        client.token_format,
        client.access_token_ttl,
        client.description,
        client.client_type,
        client.auth_method,
        jwks,
        list(client.redirect_uris),
        client.id_token_ttl,
        client.id_token_alg,
        client.refresh_token_idle_ttl,
        client.refresh_token_absolute_ttl,
        sorted(client.token_exchange_from),
        client.tls_client_auth_san_uri,
        client.tls_client_auth_subject_dn,
        client.tls_client_auth_san_dns,
        client.certificate_bound,
        list(client.web_origins),
        client.first_party,
        list(client.post_logout_redirect_uris),
    )


class ClientStore:
    """Implements ``tokenry.core.clientauth.ClientLookup``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._pool.fetchrow(f"{_SELECT} WHERE client_id = $1", client_id)
        return None if row is None else _client(row)

    async def upsert(self, client: Client) -> None:
        """Create or replace a client (used by `tokenry dev` and tests; no event)."""
        await self._pool.execute(
            f"INSERT INTO clients ({_COLUMNS}) VALUES ({_VALUES})"  # noqa: S608 - constant columns
            " ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,"
            " pepper_id = EXCLUDED.pepper_id, grant_types = EXCLUDED.grant_types,"
            " scopes = EXCLUDED.scopes, audiences = EXCLUDED.audiences,"
            " token_format = EXCLUDED.token_format, access_token_ttl = EXCLUDED.access_token_ttl,"
            " description = EXCLUDED.description, client_type = EXCLUDED.client_type,"
            " auth_method = EXCLUDED.auth_method, jwks = EXCLUDED.jwks,"
            " redirect_uris = EXCLUDED.redirect_uris, id_token_ttl = EXCLUDED.id_token_ttl,"
            " id_token_alg = EXCLUDED.id_token_alg,"
            " refresh_token_idle_ttl = EXCLUDED.refresh_token_idle_ttl,"
            " refresh_token_absolute_ttl = EXCLUDED.refresh_token_absolute_ttl,"
            " token_exchange_from = EXCLUDED.token_exchange_from,"
            " tls_client_auth_san_uri = EXCLUDED.tls_client_auth_san_uri,"
            " tls_client_auth_subject_dn = EXCLUDED.tls_client_auth_subject_dn,"
            " tls_client_auth_san_dns = EXCLUDED.tls_client_auth_san_dns,"
            " certificate_bound = EXCLUDED.certificate_bound,"
            " web_origins = EXCLUDED.web_origins, first_party = EXCLUDED.first_party,"
            " post_logout_redirect_uris = EXCLUDED.post_logout_redirect_uris,"
            " updated_at = now()",
            *_args(client),
        )

    async def create(
        self,
        client: Client,
        event: OutboxEvent | None,
        *,
        idem: tuple[IdempotencyKey, bytes] | None = None,
    ) -> bytes | None:
        """Register a new client with its ``clients.created`` event, in one transaction.

        ``idem``: the caller's idempotency key and the answer to store with the write; when an
        answer is stored already it is returned and nothing is written.

        Raises:
            ClientExists: the id is taken (nothing is written).
            IdempotencyMismatch: the key was used for another request.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if idem is not None:
                stored = await idempotency.claim(conn, idem[0])
                if stored is not None:
                    return stored
            try:
                await conn.execute(
                    f"INSERT INTO clients ({_COLUMNS}) VALUES ({_VALUES})",  # noqa: S608
                    *_args(client),
                )
            except asyncpg.exceptions.UniqueViolationError:
                raise ClientExists(client.client_id) from None
            if event is not None:
                await append(conn, event)
            if idem is not None:
                await idempotency.record(conn, *idem)
            return None

    async def delete(
        self,
        client_id: str,
        event: OutboxEvent,
        *,
        idem: tuple[IdempotencyKey, bytes] | None = None,
    ) -> bytes | None:
        """Delete a client with its ``clients.deleted`` event (nothing when there is none).

        ``idem``: as for :meth:`create` (the answer is recorded either way).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if idem is not None:
                stored = await idempotency.claim(conn, idem[0])
                if stored is not None:
                    return stored
            deleted = await conn.fetchval(
                "DELETE FROM clients WHERE client_id = $1 RETURNING client_id", client_id
            )
            if deleted is not None:
                await append(conn, event)
            if idem is not None:
                await idempotency.record(conn, *idem)
            return None

    async def update(
        self,
        client_id: str,
        changes: Mapping[str, object],
        event: OutboxEvent,
        check: Callable[[Client], None],
    ) -> Client | None:
        """Change some of a registration's ``UPDATABLE`` fields with its ``clients.updated``
        event, in one transaction; None when there is no such client (nothing written).

        The row is read ``FOR UPDATE`` in that transaction and only the ``UPDATABLE`` columns
        are written back: a concurrent update waits and keeps the other's changes, and a
        client deleted and re-created meanwhile keeps its own secret and grants. ``check``
        validates the changed registration (raising rolls everything back).
        """
        if not set(changes) <= UPDATABLE:
            raise ValueError(f"not updatable: {sorted(set(changes) - UPDATABLE)}")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"{_SELECT} WHERE client_id = $1 FOR UPDATE", client_id)
            if row is None:
                return None
            client = replace(_client(row), **changes)  # type: ignore[arg-type]
            check(client)
            await conn.execute(
                "UPDATE clients SET description = $2, redirect_uris = $3, web_origins = $4,"
                " first_party = $5, post_logout_redirect_uris = $6, updated_at = now()"
                " WHERE client_id = $1",
                client_id,
                client.description,
                list(client.redirect_uris),
                list(client.web_origins),
                client.first_party,
                list(client.post_logout_redirect_uris),
            )
            await append(conn, event)
        return client

    async def has_web_origin(self, origin: str) -> bool:
        """Whether some client registered this browser origin (the gateway's CORS preflight).

        Asked unauthenticated on every preflight (and userinfo 401): answered from an index,
        never a scan of every client row."""
        found = await self._pool.fetchval(HAS_WEB_ORIGIN, origin)
        return bool(found)

    async def list_clients(self) -> list[Client]:
        rows = await self._pool.fetch(f"{_SELECT} ORDER BY client_id")
        return [_client(r) for r in rows]
