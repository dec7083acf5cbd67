"""Nothing acknowledged is lost (docs/spec.md §4.1): 1,000 revocations while NATS, then PostgreSQL,
is restarted midway; a verifier ends with exactly those 1,000 in its state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import grpc
import pytest

from tokenry.core.ids import new_jti
from tokenry.core.revocations import RevocationKind

from pipeline_support import Stack, make_settings, oauth_code, own_nats, own_postgres, stack

pytestmark = pytest.mark.integration

TOTAL = 1_000
WORKERS = 8


async def _revoke_all(svc: Stack, jtis: list[str], *, retry: bool = False) -> tuple[int, int]:
    """Revoke every jti (WORKERS at a time); returns (highest seq, UNAVAILABLE answers)."""
    queue = list(reversed(jtis))
    top = 0
    unavailable = 0

    async def worker() -> None:
        nonlocal top, unavailable
        while queue:
            jti = queue.pop()
            while True:
                try:
                    resp = await svc.revoke(jti=jti)
                    top = max(top, resp.seq)
                    break
                except grpc.aio.AioRpcError as err:
                    if not retry or err.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    unavailable += 1
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return top, unavailable


async def test_nats_killed_and_restarted_midway_loses_nothing(
    tmp_path: Path, database_url: str, pool: asyncpg.Pool
) -> None:
    server = await own_nats(tmp_path)
    try:
        settings = make_settings(database_url, server.url)
        async with stack(settings, pool) as svc:
            runtime = await svc.verifier()
            jtis = [new_jti() for _ in range(TOTAL)]
            await _revoke_all(svc, jtis[:400])
            server.kill()  # crash: no clean shutdown
            started = time.perf_counter()
            # NATS is not on the revocation path: every call still succeeds at once.
            await _revoke_all(svc, jtis[400:700])
            print(f"\n300 revocations with NATS down: {time.perf_counter() - started:.2f}s")
            await asyncio.to_thread(server.start)
            top, _ = await _revoke_all(svc, jtis[700:])
            started = time.perf_counter()
            await asyncio.wait_for(runtime.state.wait_for_seq(top), timeout=60)
            print(f"verifier caught up {time.perf_counter() - started:.2f}s after the last ack")
            assert runtime.state.revocations.values(RevocationKind.JTI) == set(jtis)
            assert len(runtime.state.revocations) == TOTAL
            unpublished = await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            print(f"snapshots taken by the verifier: {runtime.subscriber.snapshots_taken}")
            assert unpublished <= TOTAL  # (the relay may still be marking the tail)
    finally:
        server.stop()


async def test_postgres_restarted_midway_fails_fast_and_loses_nothing(
    tmp_path: Path, nats_server: object
) -> None:
    t0 = time.perf_counter()
    pg = await own_postgres(tmp_path)
    print(f"\nown PostgreSQL up in {time.perf_counter() - t0:.2f}s")
    try:
        settings = make_settings(pg.dsn(), nats_server.url)  # type: ignore[attr-defined]
        pool = await asyncpg.create_pool(pg.dsn(), min_size=1, max_size=2)
        try:
            async with stack(settings, pool) as svc:
                runtime = await svc.verifier()
                jtis = [new_jti() for _ in range(TOTAL)]
                t0 = time.perf_counter()
                await _revoke_all(svc, jtis[:400])
                print(f"400 revocations in {time.perf_counter() - t0:.2f}s")
                t0 = time.perf_counter()
                await asyncio.to_thread(pg.stop)
                print(f"PostgreSQL stopped in {time.perf_counter() - t0:.2f}s")
                # During the outage every call fails fast with UNAVAILABLE (never a hang,
                # never a deadline): the client retries.
                durations = []
                for _ in range(20):
                    started = time.perf_counter()
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await svc.revoke(jti=new_jti(), timeout=30)
                    durations.append(time.perf_counter() - started)
                    assert oauth_code(err.value) == (
                        grpc.StatusCode.UNAVAILABLE,
                        "temporarily_unavailable",
                    )
                durations.sort()
                print(
                    f"\nduring the outage: UNAVAILABLE in {durations[10] * 1000:.1f} ms (median),"
                    f" {durations[-1] * 1000:.1f} ms (max)"
                )
                t0 = time.perf_counter()
                restart = asyncio.create_task(asyncio.to_thread(pg.start))
                # Calls issued while it comes back are retried until acknowledged.
                top, unavailable = await _revoke_all(svc, jtis[400:], retry=True)
                await restart
                print(f"restart + 600 revocations in {time.perf_counter() - t0:.2f}s")
                print(f"UNAVAILABLE answers retried around the restart: {unavailable}")
                await asyncio.wait_for(runtime.state.wait_for_seq(top), timeout=60)
                assert runtime.state.revocations.values(RevocationKind.JTI) == set(jtis)
                conn = await asyncpg.connect(pg.dsn())
                try:
                    stored = {r["value"] for r in await conn.fetch("SELECT value FROM revocations")}
                finally:
                    await conn.close()
                assert stored == set(jtis)
        finally:
            pool.terminate()
    finally:
        pg.stop()
