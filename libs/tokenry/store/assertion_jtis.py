"""private_key_jwt replay protection: assertion ids seen, until their exp (RFC 7523 §3 item 7).

Implements ``tokenry.core.clientauth.AssertionReplay``. One statement decides the winner, so two
concurrent requests with the same assertion cannot both pass.
"""

from __future__ import annotations

import asyncpg

from tokenry.core.clock import Clock

# Insert, or take over a row whose time is up (not swept yet); no row back = already used.
_FIRST_USE = """
INSERT INTO assertion_jtis AS a (client_id, jti, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE a.expires_at <= $4
RETURNING 1
"""


class AssertionJtiStore:
    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    async def first_use(self, client_id: str, jti: str, remember_until: int) -> bool:
        now = int(self._clock.now())
        row = await self._pool.fetchval(_FIRST_USE, client_id, jti, remember_until, now)
        return row is not None

    async def sweep(self, now: int) -> int:
        result: str = await self._pool.execute(
            "DELETE FROM assertion_jtis WHERE expires_at <= $1", now
        )
        return int(result.rsplit(maxsplit=1)[-1])
