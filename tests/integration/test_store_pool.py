"""The services' connection pool (store.db.create_pool) against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tokenry.store.db import create_pool

pytestmark = pytest.mark.integration


async def test_release_costs_no_reset_round_trip_and_leaves_no_transaction(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1, attempts=3)
    try:
        seen: list[str] = []

        def log(record: Any) -> None:
            seen.append(record.query)

        async with pool.acquire() as conn:
            conn.add_query_logger(log)
            await conn.fetchval("SELECT 1")
            tx = conn.transaction()
            await tx.start()  # left open on purpose: release must roll it back
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS t_probe (x int)")
        async with pool.acquire() as conn:  # the same connection (pool of one)
            assert not conn.is_in_transaction()
            await conn.fetchval("SELECT 2")
        # asyncpg's default reset would have logged its RESET ALL / UNLISTEN * query.
        assert not any("RESET ALL" in q or "UNLISTEN" in q for q in seen), seen
    finally:
        await pool.close()


async def test_a_listen_is_gone_before_the_connection_is_reused(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1, attempts=3)
    try:
        async with pool.acquire() as conn:

            def noop(*_: object) -> None:
                pass

            await conn.add_listener("tokenry_probe", noop)
            await conn.remove_listener("tokenry_probe", noop)  # what the relay does
        async with pool.acquire() as conn:
            channels = await conn.fetchval("SELECT count(*) FROM pg_listening_channels()")
            assert channels == 0
    finally:
        await pool.close()
