"""Connection pool with bounded retry: start-up order does not matter (docs/design.md §2)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

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


#: the span attributes of every query span (OpenTelemetry database semantic conventions)
DB_SYSTEM: Final = "postgresql"
_TRACER: Final = "tokenry.store"


@functools.lru_cache(maxsize=512)
def operation_name(query: str) -> str:
    """The statement's operation (its first keyword: ``SELECT``, ``INSERT``, ``WITH``…), the
    only part of a query a span carries: never the text, never a parameter (docs/spec.md §7)."""
    head = query.lstrip(" \t\r\n(").split(None, 1)
    word = head[0].rstrip(";(").upper() if head else ""
    return word if word.isalpha() and len(word) <= 16 else "QUERY"


async def _traced(run: Callable[[], Awaitable[Any]], query: str) -> Any:
    """``run()`` inside a client span named after ``query``'s operation."""
    op = operation_name(query)
    span = trace.get_tracer(_TRACER).start_span(
        op,
        kind=SpanKind.CLIENT,
        attributes={"db.system": DB_SYSTEM, "db.operation.name": op},
    )
    try:
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            return await run()
    except BaseException as exc:
        # The type only: a PostgreSQL error message may quote a value (a unique key).
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


def _recording() -> bool:
    return trace.get_current_span().is_recording()


class TracedConnection(asyncpg.Connection):
    """A connection whose queries are client spans, *only* inside a recording span.

    Outside a sampled trace (with 1 % sampling, 99 % of the calls) a query costs one
    context-variable read more and no span object is made; the OpenTelemetry asyncpg
    instrumentation starts a span object for every query (docs/benchmarks/telemetry.md).
    A span carries ``db.system`` and ``db.operation.name`` only: no statement text, no
    parameter (a token, a hash, a secret). Transactions' ``BEGIN``/``COMMIT`` are spans too.
    Prepared statements and cursors are not traced (Tokenry's hot paths use neither).
    """

    __slots__ = ()

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        run = super().execute
        if not _recording():
            return await run(query, *args, **kwargs)
        return await _traced(lambda: run(query, *args, **kwargs), query)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> Any:
        run = super().executemany
        if not _recording():
            return await run(command, args, **kwargs)
        return await _traced(lambda: run(command, args, **kwargs), command)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        run = super().fetch
        if not _recording():
            return await run(query, *args, **kwargs)
        return await _traced(lambda: run(query, *args, **kwargs), query)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        run = super().fetchrow
        if not _recording():
            return await run(query, *args, **kwargs)
        return await _traced(lambda: run(query, *args, **kwargs), query)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        run = super().fetchval
        if not _recording():
            return await run(query, *args, **kwargs)
        return await _traced(lambda: run(query, *args, **kwargs), query)

    async def fetchmany(self, query: str, args: Any, **kwargs: Any) -> Any:
        run = super().fetchmany
        if not _recording():
            return await run(query, args, **kwargs)
        return await _traced(lambda: run(query, args, **kwargs), query)


def tracing_installed() -> bool:
    """True when an application installed a tracer provider (the services do it with
    servicekit.telemetry); otherwise pools use asyncpg's own connection class, untouched."""
    return not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    attempts: int = 0,
    command_timeout: float = 5.0,
    traced: bool | None = None,
) -> asyncpg.Pool:
    """Create a pool, retrying with capped exponential backoff (``attempts=0``: forever).

    ``traced`` (default: when a tracer provider is installed) makes every connection a
    :class:`TracedConnection`: a span per query inside sampled traces.
    """
    connection_class: type[asyncpg.Connection[Any]] = asyncpg.Connection
    if tracing_installed() if traced is None else traced:
        connection_class = TracedConnection
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
                connection_class=connection_class,
            )
        except UNAVAILABLE_ERRORS as exc:
            if attempts and attempt >= attempts:
                raise
            delay = backoff.next_delay()
            log.warning(
                "database not reachable yet (%s); retrying in %.1fs", type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
