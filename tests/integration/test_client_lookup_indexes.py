"""The unauthenticated origin lookup (CORS preflight, userinfo 401) and `tokenry user delete`'s
session lookup use an index (migration 0010), not a scan of the whole table — real PostgreSQL.

The tables are tiny here, so sequential scans are disabled for the EXPLAIN: the planner then
takes the index exactly when the query can use it.
"""

from __future__ import annotations

import asyncpg
import pytest

from tokenry.core.clients import Client
from tokenry.store.clients import HAS_WEB_ORIGIN, ClientStore

pytestmark = pytest.mark.integration


def spa(client_id: str, origins: tuple[str, ...]) -> Client:
    return Client(
        client_id=client_id,
        secret_hash=None,
        pepper_id=None,
        grant_types=frozenset({"authorization_code"}),
        scopes=frozenset({"openid"}),
        audiences=("api",),
        client_type="public",
        auth_method="none",
        redirect_uris=("https://spa.test/cb",),
        web_origins=origins,
    )


async def _plan(pool: asyncpg.Pool, query: str, *args: object) -> str:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(f"EXPLAIN {query}", *args)
    return "\n".join(r[0] for r in rows)


async def test_has_web_origin_answers_from_the_gin_index(pool: asyncpg.Pool) -> None:
    store = ClientStore(pool)
    await store.upsert(spa("spa-a", ("https://a.test", "https://b.test")))
    await store.upsert(spa("spa-c", ("https://c.test",)))
    for origin, expected in (
        ("https://a.test", True),
        ("https://c.test", True),
        ("https://d.test", False),
        ("https://a.test:443", False),  # exact strings only (docs/gateway.md)
        ("", False),
    ):
        assert await store.has_web_origin(origin) is expected, origin
    plan = await _plan(pool, HAS_WEB_ORIGIN, "https://a.test")  # the query has_web_origin sends
    print(plan)
    assert "clients_web_origins" in plan and "Seq Scan" not in plan, plan


async def test_sessions_of_a_subject_are_found_by_index(pool: asyncpg.Pool) -> None:
    plan = await _plan(pool, "DELETE FROM login_sessions WHERE subject = $1", "alice")
    print(plan)
    assert "login_sessions_subject" in plan and "Seq Scan" not in plan, plan
