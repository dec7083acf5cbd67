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
import contextlib
import logging

from tokenry.core.clock import Clock
from tokenry.services.keyrotator.handlers import KeyRotatorHandlers
from tokenry.store.keys import LeaseLost
from tokenry.store.leases import Lease, LeaseStore

log = logging.getLogger(__name__)

LEASE_NAME = "keyrotator"
ERROR_BACKOFF = 0.5


class RotationLeader:
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
        self._leases = leases
        self._holder = holder
        self._clock = clock
        self._ttl = lease_ttl
        self._lease: Lease | None = None
        self.steps = 0
        self.lost_leases = 0

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def is_leader(self) -> bool:
        return self._lease is not None

    async def step(self) -> float:
        """Renew or take the lease and, as leader, do what is due. Returns seconds to wait."""
        self.steps += 1
        renew_in = self._ttl / 3
        lease = await self._leases.acquire(LEASE_NAME, self._holder, self._ttl)
        if (lease is None) != (self._lease is None):
            log.info("key rotator %s: %s", self._holder, "leader" if lease else "follower")
        self._lease = lease
        if lease is None:
            return renew_in
        try:
            due = await self._handlers.maintain(lease)
        except LeaseLost:
            self.lost_leases += 1
            self._lease = None
            log.warning("key rotator %s lost its lease before writing; wrote nothing", self._holder)
            return renew_in
        if due is None:
            return renew_in
        return max(0.0, min(renew_in, due - self._clock.now()))

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    delay = await self.step()
                except Exception as exc:
                    log.warning(
                        "key rotator step failed: %s: %s; retrying", type(exc).__name__, exc
                    )
                    delay = ERROR_BACKOFF
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            if self._lease is not None:
                with contextlib.suppress(Exception):
                    await self._leases.release(self._lease)
                self._lease = None
