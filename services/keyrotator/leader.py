"""Exactly one key rotator acts on the schedule: the holder of the ``keyrotator`` lease.

Every replica runs this loop. Each step takes or renews the lease (PostgreSQL, store/leases.py);
the holder then does what the lifecycle says is due, inside a transaction that re-checks the
lease (fencing), so a leader paused past its lease — a GC pause, a frozen VM, SIGSTOP — that
wakes up and carries on writes nothing. Renewal and writes share one task: a leader that cannot
renew cannot write either. When the leader dies, another replica takes over once the lease
expires (within ``lease_ttl`` plus one step). On a clean stop the lease is released at once.

This lease is separate from the ``event-publisher`` lease of the outbox relay: the two leaders
may be different replicas.
"""

from __future__ import annotations

import asyncio
import logging

from tokenry.core.clock import Clock
from tokenry.services.keyrotator.handlers import KeyRotatorHandlers
from tokenry.store.keys import LeaseLost
from tokenry.store.leases import LeaderLease, Lease, LeaseStore

log = logging.getLogger(__name__)

LEASE_NAME = "keyrotator"


class RotationLeader:
    """The key rotator's work, run under the one lease loop (``store.leases.LeaderLease``)."""

    def __init__(
        self,
        *,
        handlers: KeyRotatorHandlers,
        leases: LeaseStore,
        holder: str,
        clock: Clock,
        lease_ttl: float,
    ) -> None:
        self._handlers = handlers
        self._clock = clock
        self._lease = LeaderLease(leases, LEASE_NAME, holder, lease_ttl, clock, role="key rotator")
        self.lost_leases = 0

    @property
    def holder(self) -> str:
        return self._lease.holder

    @property
    def is_leader(self) -> bool:
        return self._lease.lease is not None

    @property
    def steps(self) -> int:
        return self._lease.attempts

    async def step(self) -> float:
        """Renew or take the lease and, as leader, do what is due. Returns seconds to wait."""
        lease = await self._lease.renew()
        if lease is None:
            return self._lease.ttl / 3
        due = await self._maintain(lease)
        return self._lease.ttl / 3 if due is None else min(self._lease.ttl / 3, due)

    async def _maintain(self, lease: Lease) -> float | None:
        """What the lifecycle says is due; the seconds until the next thing is (None: nothing)."""
        try:
            due = await self._handlers.maintain(lease)
        except LeaseLost:
            self.lost_leases += 1
            self._lease.lost()
            log.warning(
                "key rotator %s lost its lease before writing; wrote nothing", self._lease.holder
            )
            return None
        return None if due is None else max(0.0, due - self._clock.now())

    async def run(self, stop: asyncio.Event) -> None:
        await self._lease.run(stop, self._maintain)
