"""The revocation service authenticates callers from a cached client registry, yet a changed
registration can never write through the cache: every write checks, in its own transaction,
that the client row it was authenticated against is still current (migration 0006), and what
the cache may have got wrong is retried against PostgreSQL. Changes here are made behind the
service's back (no event), the worst case for a cache."""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import grpc
import pytest

from tokenry.core.client_secrets import hash_secret
from tokenry.servicekit.config import Settings
from tokenry.store.clients import ClientStore

from pipeline_support import Running, Stack, oauth_code, start_service
from suite import register_clients

pytestmark = pytest.mark.integration


@pytest.fixture
async def svc(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    secrets = await register_clients(pool, settings)
    revocation: Running = await start_service("revocation", settings)
    s = Stack(settings, pool, secrets, None, revocation)
    try:
        yield s
    finally:
        await s.close()


async def change_admin(svc: Stack, pool: asyncpg.Pool, **fields: object) -> None:
    store = ClientStore(pool)
    admin = await store.get_client("admin")
    assert admin is not None
    await store.upsert(replace(admin, **fields))  # no event: the cache is not told


async def revocations(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM revocations")
    return count


async def test_a_rotated_secret_stops_working_at_once_and_the_new_one_works(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    await svc.revoke(jti="warm")  # the admin client is cached now
    pepper = next(iter(svc.settings.peppers.values()))
    new_secret = pysecrets.token_urlsafe(32)
    await change_admin(svc, pool, secret_hash=hash_secret(pepper, new_secret))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.revoke(jti="old-secret")
    assert oauth_code(err.value) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client")
    assert await revocations(pool) == 1  # nothing written through the stale cache
    svc.secrets["admin"] = new_secret
    assert (await svc.revoke(jti="new-secret")).seq > 0


async def test_a_withdrawn_admin_scope_stops_admin_revocations_at_once(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    await svc.revoke(jti="warm")
    await change_admin(svc, pool, scopes=frozenset({"demo.read"}))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.revoke(jti="no-longer-admin")
    assert oauth_code(err.value) == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
    assert await revocations(pool) == 1


async def test_a_deleted_client_cannot_revoke_through_the_cache(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    await svc.revoke(jti="warm")
    await pool.execute("DELETE FROM clients WHERE client_id = 'admin'")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.revoke(jti="deleted")
    assert oauth_code(err.value) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client")
    assert await revocations(pool) == 1


async def test_a_newly_granted_admin_scope_works_at_once(svc: Stack, pool: asyncpg.Pool) -> None:
    # "demo" is cached as a non-admin by a refused admin revocation, then made admin.
    with pytest.raises(grpc.aio.AioRpcError):
        await svc.revoke("demo", jti="not-yet")
    store = ClientStore(pool)
    demo = await store.get_client("demo")
    assert demo is not None
    await store.upsert(replace(demo, scopes=demo.scopes | {"tokenry:admin"}))
    assert (await svc.revoke("demo", jti="now-admin")).seq > 0
