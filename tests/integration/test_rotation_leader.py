"""One rotator acts at a time (docs/spec.md §5): failover between two rotator processes when the
leader is killed, and a paused leader that wakes after losing its lease writes nothing (fencing)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

from tokenry.core.clock import SystemClock
from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings
from tokenry.services.keyrotator.handlers import KeyRotatorHandlers
from tokenry.services.keyrotator.leader import LEASE_NAME, RotationLeader
from tokenry.store.clients import ClientStore
from tokenry.store.keys import KeyStore, KeyWriter
from tokenry.store.leases import Lease, LeaseStore

from keys_support import key_states, rotator_config, wait_until
from suite import process_env, wait_serving

pytestmark = pytest.mark.integration


class PausingKeyStore(KeyStore):
    """A real KeyStore whose next write stalls before its transaction, like a leader frozen by a
    GC pause or SIGSTOP between deciding and writing."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.pause_next = True
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    @contextlib.asynccontextmanager
    async def writer(self, lease: Lease | None) -> AsyncIterator[KeyWriter]:
        if self.pause_next:
            self.pause_next = False
            self.paused.set()
            await self.resume.wait()
        async with super().writer(lease) as writer:
            yield writer


async def _snapshot(pool: asyncpg.Pool) -> tuple[dict[str, str], list[str], int]:
    outbox = [r["subject"] for r in await pool.fetch("SELECT subject FROM outbox ORDER BY seq")]
    return await key_states(pool), outbox, await pool.fetchval("SELECT seq FROM outbox_counter")


async def test_a_paused_leader_that_lost_its_lease_writes_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    config = rotator_config(settings, lease_ttl=1.0)
    clock = SystemClock()

    def rotator(store: KeyStore, holder: str) -> RotationLeader:
        handlers = KeyRotatorHandlers(
            keys=store,
            config=config,
            subjects=settings.subjects,
            clock=clock,
            clients=ClientStore(pool),
            peppers=settings.peppers,
        )
        return RotationLeader(
            handlers=handlers, leases=LeaseStore(pool), holder=holder, clock=clock, lease_ttl=1.0
        )

    stop = asyncio.Event()
    paused_store = PausingKeyStore(pool)
    a = rotator(paused_store, "rotator-a")
    task_a = asyncio.create_task(a.run(stop))
    try:
        # A takes the lease, decides to create the first keys, and freezes right before writing.
        await asyncio.wait_for(paused_store.paused.wait(), 10)
        assert a.is_leader
        assert await pool.fetchval("SELECT holder FROM leases WHERE name = $1", LEASE_NAME) == (
            "rotator-a"
        )
        assert await key_states(pool) == {}

        b = rotator(KeyStore(pool), "rotator-b")
        task_b = asyncio.create_task(b.run(stop))
        started = time.perf_counter()

        async def b_took_over() -> bool:
            holder = await pool.fetchval("SELECT holder FROM leases WHERE name = $1", LEASE_NAME)
            return holder == "rotator-b" and len(await key_states(pool)) == 2

        took = await wait_until(b_took_over, timeout=20, what="B takes over and writes")
        print(f"\nB took over from the frozen leader A after {took:.2f}s (lease ttl 1s)")
        before = await _snapshot(pool)

        # A wakes up and carries on with the write it had decided on.
        paused_store.resume.set()

        async def a_gave_up() -> bool:
            return a.lost_leases == 1

        await wait_until(a_gave_up, timeout=10, what="A notices it lost the lease")
        assert not a.is_leader and b.is_leader
        # Nothing of A's reached the database: same keys, same events, same sequence.
        assert await _snapshot(pool) == before
        states = await key_states(pool)
        assert sorted(states.values()) == ["active", "pending"]
    finally:
        stop.set()
        await asyncio.gather(task_a, *([task_b] if "task_b" in locals() else []))


def _process_env(settings: Settings, port: int) -> dict[str, str]:
    assert settings.kek is not None
    extra = {
        "TOKENRY_DEV": "1",  # accelerated timing breaks the production timing rules on purpose
        "TOKENRY_KEYROTATOR_LISTEN": f"127.0.0.1:{port}",
        "TOKENRY_KEY_SETS": "access:ES256",
        "TOKENRY_KEY_ROTATION_INTERVAL": "1s",
        "TOKENRY_KEY_PUBLISH_LEAD": "500ms",
        "TOKENRY_KEY_RETENTION": "3s",
        "TOKENRY_JWKS_CACHE_TTL": "500ms",
        "TOKENRY_KEYROTATOR_LEASE_TTL": "1s",
        "TOKENRY_LOG_LEVEL": "WARNING",
    }
    return process_env(settings, extra)


async def _holder_pid(pool: asyncpg.Pool) -> int | None:
    holder = await pool.fetchval(
        "SELECT holder FROM leases WHERE name = $1 AND expires_at > now()", LEASE_NAME
    )
    return None if holder is None else int(holder.split(":")[2])


async def _activations_since(pool: asyncpg.Pool, since: datetime) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM signing_keys WHERE activated_at > $1", since
    )
    return count


async def test_failover_between_two_rotator_processes(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    procs: dict[int, asyncio.subprocess.Process] = {}
    addrs = []
    try:
        for _ in range(2):
            port = free_tcp_port()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tokenry.services.keyrotator",
                env=_process_env(settings, port),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            procs[proc.pid] = proc
            addrs.append(f"127.0.0.1:{port}")
        for addr in addrs:
            await wait_serving(addr, timeout=30)

        async def rotating() -> bool:
            retired = await pool.fetchval(
                "SELECT count(*) FROM signing_keys WHERE state IN ('retiring', 'retired')"
            )
            return bool(retired >= 2)

        await wait_until(rotating, timeout=30, what="the leader rotates on schedule")
        leader = await _holder_pid(pool)
        assert leader in procs
        (other,) = set(procs) - {leader}

        killed_at = await pool.fetchval("SELECT now()")
        started = time.perf_counter()
        procs[leader].send_signal(signal.SIGKILL)  # no clean release: the lease must expire
        await procs[leader].wait()

        async def took_over() -> bool:
            return await _holder_pid(pool) == other

        takeover = await wait_until(took_over, timeout=30, what="the other rotator takes over")

        async def rotates_on_schedule() -> bool:
            return await _activations_since(pool, killed_at) >= 2

        await wait_until(rotates_on_schedule, timeout=30, what="the new leader rotates")
        rotated = time.perf_counter() - started
        print(
            f"\nleader killed → lease taken over in {takeover:.2f}s,"
            f" two scheduled rotations done {rotated:.2f}s after the kill (interval 1s, ttl 1s)"
        )
        # Never two active keys, and the successor invariant holds.
        states = list((await key_states(pool)).values())
        assert states.count("active") == 1 and states.count("pending") == 1
        assert procs[other].returncode is None
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
