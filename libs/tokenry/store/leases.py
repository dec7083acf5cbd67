"""Leader leases in PostgreSQL with a fencing counter.

A lease is taken when free or expired and renewed by its holder; every takeover bumps ``fence``,
and a leader's writes check (holder, fence) inside their own transaction, so a paused ex-leader
that wakes after losing the lease writes nothing. :class:`LeaderLease` is the one loop that
keeps a lease (the event publisher's and the key rotator's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from tokenry.core.backoff import Backoff, BackoffPolicy
from tokenry.core.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    holder: str
    fence: int


_ACQUIRE = """
INSERT INTO leases AS l (name, holder, fence, expires_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE
    SET holder = EXCLUDED.holder,
        fence = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                     THEN l.fence ELSE l.fence + 1 END,
        expires_at = EXCLUDED.expires_at
    WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
RETURNING fence
"""


class LeaseStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take or renew the lease; None when another holder's lease is still live."""
        fence = await self._pool.fetchval(_ACQUIRE, name, holder, ttl)
        return None if fence is None else Lease(name, holder, int(fence))

    async def release(self, lease: Lease) -> None:
        await self._pool.execute(
            "UPDATE leases SET expires_at = now() WHERE name = $1 AND holder = $2 AND fence = $3",
            lease.name,
            lease.holder,
            lease.fence,
        )


class LeaderLease:
    """One named lease kept by one loop: the outbox relay's publisher and the key rotator run it.

    :meth:`run` takes or renews the lease every ``ttl / 3`` and, while it is held, awaits
    ``work(lease)`` in the same task, so a holder that cannot renew cannot work either; the
    work's writes re-check the fence in their own transaction anyway. :meth:`live` counts the
    lease's expiry from before the last renewal request (never later than PostgreSQL's own), so
    a holder paused past its lease knows it without asking. Failures back off (jittered, capped
    at ``ttl / 3``); on stop the lease is released at once.

    Args:
        on_change: called with the new lease (None: lost) whenever it is taken, lost or its
            fence changes.
    """

    def __init__(
        self,
        leases: LeaseStore,
        name: str,
        holder: str,
        ttl: float,
        clock: Clock,
        *,
        role: str | None = None,
        on_change: Callable[[Lease | None], None] | None = None,
    ) -> None:
        self._leases = leases
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self._clock = clock
        self._role = role or name
        self._on_change = on_change
        self._valid_until = 0.0
        self.lease: Lease | None = None
        #: renewal attempts so far
        self.attempts = 0

    def live(self) -> bool:
        """Held, and not past the expiry counted from before its last renewal request."""
        return self.lease is not None and self._clock.monotonic() < self._valid_until

    async def renew(self) -> Lease | None:
        """Take or renew the lease (bounded by ``ttl / 3``); None while another holds it."""
        self.attempts += 1
        started = self._clock.monotonic()
        lease = await asyncio.wait_for(
            self._leases.acquire(self.name, self.holder, self.ttl), timeout=self.ttl / 3
        )
        if lease is not None:
            # Counted from before the request: PostgreSQL's expiry is at least this late.
            self._valid_until = started + self.ttl
        self._set(lease)
        return lease

    def lost(self) -> None:
        """The work found the lease gone (a fenced write refused): follower until renewed."""
        self._set(None)

    async def release(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            with contextlib.suppress(Exception):
                await self._leases.release(lease)

    async def run(
        self,
        stop: asyncio.Event,
        work: Callable[[Lease], Awaitable[float | None]] | None = None,
    ) -> None:
        """Keep the lease until ``stop``; ``work`` returns the seconds until it is next due
        (None: nothing scheduled), which may shorten the wait before the next renewal."""
        interval = self.ttl / 3
        backoff = Backoff(BackoffPolicy(initial=min(0.5, interval), maximum=interval))
        try:
            while not stop.is_set():
                wait = interval
                try:
                    lease = await self.renew()
                    if lease is not None and work is not None:
                        due = await work(lease)
                        if due is not None:
                            wait = max(0.0, min(wait, due))
                    backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("%s lease: %s: %s", self._role, type(exc).__name__, exc)
                    if self.lease is not None and not self.live():
                        log.warning("%s %s: lease ran out unrenewed", self._role, self.holder)
                        self._set(None)
                    wait = backoff.next_delay()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=wait)
        finally:
            await self.release()

    def _set(self, lease: Lease | None) -> None:
        old, self.lease = self.lease, lease
        if (lease is None) != (old is None):
            log.info("%s %s: %s", self._role, self.holder, "leader" if lease else "follower")
        if self._on_change is not None and (
            (lease is None) != (old is None) or (lease is not None and lease != old)
        ):
            self._on_change(lease)
