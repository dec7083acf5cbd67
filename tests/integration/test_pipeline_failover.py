"""Publisher failover (docs/design.md §4): two revocation services, each with an outbox relay, one
leader by lease. SIGKILL the leader mid-stream: the other takes over, no event is lost and the
stream never sees a seq before a lower one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from tokenry.bus import codec
from tokenry.core.ids import new_jti
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.servicekit.config import Settings
from tokenry.services.revocation.settings import RevocationSettings
from tokenry.store.revocations import RevocationStore
from tokenry.verifier import start_verifier
from tokenry.verifier._feed import SyncSettings

from pipeline_support import (
    StoreJwks,
    kill,
    make_keys,
    spawn_revocation,
    stream_outbox_seqs,
    wait_until,
)
from suite import register_clients

pytestmark = pytest.mark.integration

TOTAL = 600
OPTIONS = RevocationSettings(heartbeat_interval=0.2, lease_ttl=1.0, sweep_interval=3600)


async def _leader_pid(pool: asyncpg.Pool) -> int | None:
    holder = await pool.fetchval(
        "SELECT holder FROM leases WHERE name = 'event-publisher' AND expires_at > now()"
    )
    return int(holder.split(":")[2]) if holder else None


async def test_killing_the_publisher_leader_loses_nothing_and_keeps_order(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool
) -> None:
    await register_clients(pool, settings)
    await make_keys(settings, pool)  # no key rotator afterwards: it would run a relay too
    procs = [spawn_revocation(settings, OPTIONS, tmp_path / f"relay{i}.log") for i in range(2)]
    runtime = None
    try:
        await wait_until(lambda: _leader_pid(pool), 60, "a publisher leader")
        runtime = await start_verifier(
            issuer=settings.issuer_url,
            audience="demo-api",
            jwks_source=StoreJwks(pool),
            nats_url=settings.nats_url,
            subjects=settings.subjects,
            stream=settings.stream.name,
            revocation_addr=procs[0][1],
            sync=SyncSettings(snapshot_jitter=0.2),
        )
        store = RevocationStore(pool)
        now = int(time.time())
        jtis = [new_jti() for _ in range(TOTAL)]
        top = 0
        killed: int | None = None
        for i, jti in enumerate(jtis):
            rev = Revocation(RevocationKind.JTI, jti, 0, now + 600)
            event = codec.revocation_event(settings.subjects, rev, now, actor="admin")
            top = (await store.revoke(rev, "admin", event)).seq
            if i % 20 == 19:
                await asyncio.sleep(0.01)  # a steady stream, not one burst
            if i == TOTAL // 3:
                killed = await _leader_pid(pool)
                assert killed is not None
                kill(next(p for p, _ in procs if p.pid == killed))
                killed_at = time.perf_counter()
        assert killed is not None
        await asyncio.wait_for(runtime.state.wait_for_seq(top), timeout=60)
        print(f"\nall {TOTAL} applied {time.perf_counter() - killed_at:.2f}s after the kill")
        new_leader = await _leader_pid(pool)
        assert new_leader is not None and new_leader != killed
        assert runtime.state.revocations.values(RevocationKind.JTI) == set(jtis)
        # The stream as every verifier reads it: each seq exactly once, strictly increasing.
        seqs = await stream_outbox_seqs(settings.nats_url, settings)
        assert seqs == sorted(set(seqs)) and seqs[-1] == top
        assert seqs == list(range(seqs[0], top + 1))
    finally:
        if runtime is not None:
            await runtime.close()
        for proc, _ in procs:
            if proc.poll() is None:
                kill(proc)
