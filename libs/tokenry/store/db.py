"""Connection pool with bounded retry: start-up order does not matter (docs/design.md §2)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tokenry.core.backoff import Backoff, BackoffPolicy

log = logging.getLogger(__name__)

#: Retries of an unreachable PostgreSQL at start-up: 0.1 s doubling to 5 s, jittered.
CONNECT_BACKOFF = BackoffPolicy(initial=0.1, maximum=5.0)

# A connection, or one borrowed from a pool: what a function running SQL needs.
Executor = asyncpg.Connection | PoolConnectionProxy

# Errors that mean "the database is not reachable right now", as opposed to a bug.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncio.TimeoutError,
)


async def keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does.

    asyncpg always rolls back a transaction left open and drops listener callbacks; its default
    reset then also sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    — one more round trip on every release, which is half the database time of a one-query
    call such as an introspection (``pool.fetchrow``). Tokenry leaves no session state on a
    pooled connection: no session ``SET`` (only ``SET LOCAL`` inside transactions), no
    session-level advisory locks (leases are rows), cursors only inside transactions, and the
    one ``LISTEN`` (the outbox relay's) is removed before release, or the connection is closed.
    """


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    attempts: int = 0,
    command_timeout: float = 5.0,
) -> asyncpg.Pool:
    """Create a pool, retrying with capped exponential backoff (``attempts=0``: forever)."""
    backoff = Backoff(CONNECT_BACKOFF)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                timeout=5.0,
                reset=keep_session,
                # No idle-close timer: asyncpg would arm (and cancel) a timer handle on every
                # release and acquire; a service's small pool may as well stay connected.
                max_inactive_connection_lifetime=0,
            )
        except UNAVAILABLE_ERRORS as exc:
            if attempts and attempt >= attempts:
                raise
            delay = backoff.next_delay()
            log.warning(
                "database not reachable yet (%s); retrying in %.1fs", type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
