"""Leader leases in PostgreSQL with a fencing counter.

A lease is taken when free or expired and renewed by its holder; every takeover bumps ``fence``,
and a leader's writes check (holder, fence) inside their own transaction, so a paused ex-leader
that wakes after losing the lease writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


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
