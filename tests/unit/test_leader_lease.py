"""The one leader-lease loop (issue 12 item 7), over an in-memory lease table and a fake clock.

The relay's and the key rotator's integration tests run it against PostgreSQL; these pin the
rules both rely on.
"""

from __future__ import annotations

import asyncio

from tokenry.core.clock import FakeClock
from tokenry.store.leases import LeaderLease, Lease


class Leases:
    """LeaseStore's contract: one holder at a time; a takeover bumps the fence."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[str, int, float]] = {}
        self.released: list[Lease] = []
        self.fail = False
        self.failures = 0
        self.failed_twice = asyncio.Event()

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        if self.fail:
            self.failures += 1
            if self.failures == 2:
                self.failed_twice.set()
            raise ConnectionError("database down")
        now = self.clock.monotonic()
        row = self.rows.get(name)
        if row is not None and row[0] != holder and row[2] > now:
            return None
        fence = 1 if row is None else row[1] + (0 if row[0] == holder and row[2] > now else 1)
        self.rows[name] = (holder, fence, now + ttl)
        return Lease(name, holder, fence)

    async def release(self, lease: Lease) -> None:
        self.released.append(lease)
        self.rows[lease.name] = (lease.holder, lease.fence, self.clock.monotonic())


async def test_live_counts_from_before_the_renewal_request() -> None:
    clock = FakeClock()
    changes: list[Lease | None] = []
    keeper = LeaderLease(Leases(clock), "l", "a", 3.0, clock, on_change=changes.append)  # type: ignore[arg-type]
    lease = await keeper.renew()
    assert lease == Lease("l", "a", 1) and keeper.live()
    clock.advance(2.9)
    assert keeper.live()
    clock.advance(0.2)  # past ttl without a renewal: no longer live by our own count
    assert not keeper.live() and keeper.lease == lease
    assert await keeper.renew() == Lease("l", "a", 2)  # expired in the table: a new reign
    assert changes == [Lease("l", "a", 1), Lease("l", "a", 2)]  # renewals with one fence: no call


async def test_a_second_holder_waits_and_lost_makes_a_follower() -> None:
    clock = FakeClock()
    table = Leases(clock)
    a = LeaderLease(table, "l", "a", 3.0, clock)  # type: ignore[arg-type]
    changes: list[Lease | None] = []
    b = LeaderLease(table, "l", "b", 3.0, clock, on_change=changes.append)  # type: ignore[arg-type]
    assert await a.renew() is not None
    assert await b.renew() is None and b.lease is None and changes == []
    a.lost()
    assert a.lease is None and not a.live()


async def test_run_works_only_while_held_and_releases_on_stop() -> None:
    clock = FakeClock()
    table = Leases(clock)
    keeper = LeaderLease(table, "l", "a", 0.3, clock)  # type: ignore[arg-type]
    stop = asyncio.Event()
    seen: list[Lease] = []

    async def work(lease: Lease) -> float | None:
        seen.append(lease)
        if len(seen) == 3:
            stop.set()
        return 0.0  # due again at once: the loop still renews before each call

    await asyncio.wait_for(keeper.run(stop, work), 5)
    assert seen == [Lease("l", "a", 1)] * 3 and keeper.attempts == 3
    assert table.released == [Lease("l", "a", 1)] and keeper.lease is None


async def test_failures_back_off_and_drop_a_lease_that_ran_out() -> None:
    clock = FakeClock()
    table = Leases(clock)
    changes: list[Lease | None] = []
    keeper = LeaderLease(table, "l", "a", 0.3, clock, on_change=changes.append)  # type: ignore[arg-type]
    assert await keeper.renew() is not None
    table.fail = True
    clock.advance(1.0)  # the lease ran out while the database is down
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop))
    await asyncio.wait_for(table.failed_twice.wait(), 5)  # retried after a backoff
    stop.set()
    await asyncio.wait_for(task, 5)
    assert changes == [Lease("l", "a", 1), None]
