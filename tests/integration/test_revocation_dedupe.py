"""One revocation, one event (issue 11, finding 3), against the real service and PostgreSQL.

A repeated revocation is a no-op that returns the existing seq, unless it raises ``not_before``
or a caller-given ``expires_at``; a server-computed expiry never counts; the duplicate check
runs after the outbox counter lock, so concurrent identical revocations cannot each write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tokenry.servicekit.config import Settings
from tokenry.v1 import revocation_pb2

from pipeline_support import ShiftedClock, Stack, revocation_only, start_service

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def svc(settings: Settings, pool: asyncpg.Pool, clock: ShiftedClock) -> AsyncIterator[Stack]:
    async with revocation_only(settings, pool, clock=clock) as s:
        yield s


async def revocation_events(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE subject LIKE '%revocation%'"
    )
    return count


async def test_four_concurrent_identical_revocations_make_one_event_and_one_seq(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    exp = int(time.time()) + 300
    jtis = [f"dup-{i}" for i in range(200)]
    calls = [svc.revoke(jti=j, expires_at=exp) for j in jtis for _ in range(4)]
    responses = await asyncio.gather(*calls)
    seqs: dict[str, set[int]] = {}
    for j, resp in zip((j for j in jtis for _ in range(4)), responses, strict=True):
        seqs.setdefault(j, set()).add(resp.seq)
    several = {j: s for j, s in seqs.items() if len(s) != 1}
    assert not several, f"{len(several)} jtis got several seqs, e.g. {list(several.items())[:3]}"
    assert await revocation_events(pool) == len(jtis)
    stored = dict(await pool.fetch("SELECT value, seq FROM revocations WHERE kind = 'jti'"))
    assert stored == {j: next(iter(s)) for j, s in seqs.items()}
    # The sequence stays gap-free: every seq from 1 to the head is one event.
    head = await pool.fetchval("SELECT seq FROM outbox_counter")
    assert sorted(await pool.fetchval("SELECT array_agg(seq) FROM outbox")) == list(
        range(1, head + 1)
    )


async def test_two_replicas_revoking_the_same_jtis_make_one_event_each(
    svc: Stack, pool: asyncpg.Pool, settings: Settings, clock: ShiftedClock
) -> None:
    """Group commit serialises one process's writes; replicas still race in PostgreSQL, where
    only the counter lock taken before the duplicate check keeps one event per revocation."""
    second = await start_service("revocation", settings, clock=clock)
    try:
        exp = int(time.time()) + 300
        jtis = [f"rep-{i}" for i in range(100)]
        addrs = [svc.revocation.addr, second.addr]
        request = revocation_pb2.RevokeRequest
        calls = [
            svc.stub(addrs[k % 2]).Revoke(
                request(jti=j, expires_at=exp), metadata=svc.auth(), timeout=10
            )
            for j in jtis
            for k in range(4)
        ]
        responses = await asyncio.gather(*calls)
    finally:
        await second.stop()
    seqs: dict[str, set[int]] = {}
    for j, resp in zip((j for j in jtis for _ in range(4)), responses, strict=True):
        seqs.setdefault(j, set()).add(resp.seq)
    assert all(len(s) == 1 for s in seqs.values())
    assert await revocation_events(pool) == len(jtis)


async def test_a_repeat_without_expires_at_is_a_no_op_even_a_second_later(
    svc: Stack, pool: asyncpg.Pool, clock: ShiftedClock
) -> None:
    first = await svc.revoke(jti="j-slide")
    clock.offset += 5  # the server-computed expiry (now + max lifetime) has slid by 5 s
    again = await svc.revoke(jti="j-slide")
    assert again.seq == first.seq
    assert await revocation_events(pool) == 1
    # The grant default expiry slides the same way: still one event.
    g1 = await svc.revoke(grant_id="g-slide")
    clock.offset += 5
    assert (await svc.revoke(grant_id="g-slide")).seq == g1.seq
    assert await revocation_events(pool) == 2


async def test_raising_a_caller_given_expiry_or_a_watermark_is_a_new_event(
    svc: Stack, pool: asyncpg.Pool, clock: ShiftedClock
) -> None:
    exp = int(time.time()) + 60
    first = await svc.revoke(jti="j-raise", expires_at=exp)
    assert (await svc.revoke(jti="j-raise", expires_at=exp)).seq == first.seq
    assert (await svc.revoke(jti="j-raise", expires_at=exp - 10)).seq == first.seq  # lower
    raised = await svc.revoke(jti="j-raise", expires_at=exp + 60)
    assert raised.seq > first.seq
    sub = await svc.revoke(subject="alice")
    assert (await svc.revoke(subject="alice")).seq == sub.seq  # same second, same watermark
    clock.offset += 3
    later = await svc.revoke(subject="alice")  # not_before = ceil(now) + skew has risen
    assert later.seq > sub.seq and later.not_before > sub.not_before
    assert await revocation_events(pool) == 4
