"""A verifier cut off from NATS while 5,000 revocations happen resumes from the stream to the
exact state; when the stream was purged meanwhile, it takes a fresh snapshot and ends exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest

from tokenry.bus import codec
from tokenry.core.ids import new_jti
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.devstack import EmbeddedNats
from tokenry.servicekit.config import Settings
from tokenry.store.revocations import RevocationStore

from pipeline_support import Stack, TcpProxy, stack, wait_until

pytestmark = pytest.mark.integration

AWAY = 5_000


@pytest.fixture
async def proxy(nats_server: EmbeddedNats) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the session's NATS: the verifier's line, for the test to cut."""
    proxy = TcpProxy(nats_server.host, nats_server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _revoke_many(svc: Stack, n: int) -> tuple[list[str], int]:
    """n revocations through the store (the service's own write path), 8 at a time."""
    store = RevocationStore(svc.pool)
    now = int(time.time())
    jtis = [new_jti() for _ in range(n)]
    top = 0

    async def worker(chunk: list[str]) -> None:
        nonlocal top
        for jti in chunk:
            rev = Revocation(RevocationKind.JTI, jti, 0, now + 600)
            event = codec.revocation_event(svc.settings.subjects, rev, now, actor="admin")
            top = max(top, (await store.revoke(rev, "admin", event)).seq)

    await asyncio.gather(*(worker(jtis[i::8]) for i in range(8)))
    return jtis, top


async def _away_while_revoking(
    svc: Stack, proxy: TcpProxy, *, purge: bool
) -> tuple[set[str], int, float]:
    runtime = svc.runtimes[0]
    first = await svc.revoke(jti="before-the-cut")
    await asyncio.wait_for(runtime.state.wait_for_seq(first.seq), timeout=10)
    proxy.cut()
    await wait_until(lambda: not runtime.nats_connected, 10, "the verifier notices the cut")
    jtis, top = await _revoke_many(svc, AWAY)
    await wait_until(lambda: _published(svc.pool, top), 60, "the relay has published everything")
    if purge:
        nc = await nats.connect(svc.settings.nats_url)
        try:
            await nc.jetstream().purge_stream(svc.settings.stream.name)
        finally:
            await nc.close()
    started = time.perf_counter()
    proxy.resume()
    await asyncio.wait_for(runtime.state.wait_for_seq(top), timeout=60)
    return {"before-the-cut", *jtis}, top, time.perf_counter() - started


async def _published(pool: asyncpg.Pool, seq: int) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) = 0 FROM outbox WHERE seq <= $1 AND published_at IS NULL", seq
        )
    )


async def test_disconnected_verifier_resumes_from_the_stream_to_the_exact_state(
    settings: Settings, pool: asyncpg.Pool, proxy: TcpProxy
) -> None:
    async with stack(settings, pool) as svc:
        runtime = await svc.verifier(nats_url=proxy.url)
        expected, _, took = await _away_while_revoking(svc, proxy, purge=False)
        print(f"\n{AWAY} missed events caught up {took:.2f}s after reconnecting")
        assert runtime.state.revocations.values(RevocationKind.JTI) == expected
        assert runtime.subscriber.snapshots_taken == 1  # the stream had it all
        assert not runtime.state.has_gap


async def test_purged_stream_makes_the_verifier_take_a_snapshot_and_end_exact(
    settings: Settings, pool: asyncpg.Pool, proxy: TcpProxy
) -> None:
    async with stack(settings, pool) as svc:
        runtime = await svc.verifier(nats_url=proxy.url)
        expected, top, took = await _away_while_revoking(svc, proxy, purge=True)
        print(f"\nsnapshot after the purge: exact {took:.2f}s after reconnecting")
        assert runtime.subscriber.snapshots_taken == 2
        assert runtime.state.revocations.values(RevocationKind.JTI) == expected
        # And it keeps consuming the stream from there.
        after = await svc.revoke(jti="after-the-purge")
        await asyncio.wait_for(runtime.state.wait_for_seq(after.seq), timeout=10)
        assert after.seq > top
        assert "after-the-purge" in runtime.state.revocations.values(RevocationKind.JTI)
