"""`tokenry migrate`: apply pending database migrations."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tokenry.cli.common import NEGATIVE, UNREACHABLE, USAGE, fail
from tokenry.cli.context import stack


def migrate(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL (default: TOKENRY_DATABASE_URL, then the dev stack's)"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for PostgreSQL")] = 10.0,
) -> None:
    """Apply pending database migrations (safe to run twice).

    Exit codes: 0 applied (or nothing to do), 1 a migration failed, 2 no or a malformed URL,
    3 PostgreSQL unreachable.
    """
    import asyncpg

    from tokenry.servicekit.variables import postgres_url
    from tokenry.store.migrate import migrate as run_migrations

    found = stack(ctx, database_url=database_url).database_url
    if found is None:
        raise fail(
            "no database: pass --database-url or set TOKENRY_DATABASE_URL (or run `tokenry dev`)",
            USAGE,
        )
    try:
        dsn = postgres_url(found.value)
    except ValueError as exc:
        name = "--database-url" if found.source == "--database-url" else found.source
        raise fail(f"{name} {exc}", USAGE) from None

    async def go() -> list[str]:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            return await run_migrations(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(go())
    except (OSError, TimeoutError) as exc:
        raise fail(
            f"PostgreSQL (from {found.source}) is unreachable: {type(exc).__name__}", UNREACHABLE
        ) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The message of a server error holds no URL; the URL itself is never printed.
        raise fail(f"migration failed: {type(exc).__name__}: {exc}", NEGATIVE) from None
    typer.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )
