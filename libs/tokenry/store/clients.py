"""The client registry in PostgreSQL."""

from __future__ import annotations

import asyncpg

from tokenry.core.clients import Client

_COLUMNS = (
    "client_id, secret_hash, pepper_id, grant_types, scopes, audiences, token_format,"
    " access_token_ttl, description"
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
    )


class ClientStore:
    """Implements ``tokenry.core.clientauth.ClientLookup``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM clients WHERE client_id = $1",  # noqa: S608 - constant columns
            client_id,
        )
        return None if row is None else _client(row)

    async def upsert(self, client: Client) -> None:
        """Create or replace a client (used by bootstrap and `tokenry dev`)."""
        await self._pool.execute(
            f"INSERT INTO clients ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"  # noqa: S608
            " ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,"
            " pepper_id = EXCLUDED.pepper_id, grant_types = EXCLUDED.grant_types,"
            " scopes = EXCLUDED.scopes, audiences = EXCLUDED.audiences,"
            " token_format = EXCLUDED.token_format, access_token_ttl = EXCLUDED.access_token_ttl,"
            " description = EXCLUDED.description, updated_at = now()",
            client.client_id,
            client.secret_hash,
            client.pepper_id,
            sorted(client.grant_types),
            sorted(client.scopes),
            list(client.audiences),
            client.token_format,
            client.access_token_ttl,
            client.description,
        )

    async def list_clients(self) -> list[Client]:
        rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM clients ORDER BY client_id")  # noqa: S608
        return [_client(r) for r in rows]
