"""`tokenry`: one CLI for operators (SPEC §6). Errors are one line, never a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer

from tokenry.cli import bench, clients, events, keys, token
from tokenry.cli.common import fail
from tokenry.cli.context import CliError, home, setting

app = typer.Typer(help="Tokenry: token infrastructure for your service mesh.", no_args_is_help=True)
app.add_typer(token.app, name="token")
app.add_typer(events.app, name="events")
app.add_typer(keys.app, name="keys")
app.add_typer(clients.app, name="client")
app.command()(keys.jwks)
app.command()(bench.bench)


@app.command()
def dev(
    data_dir: Annotated[
        str | None, typer.Option(help="Data folder (default $TOKENRY_HOME or ./.tokenry)")
    ] = None,
) -> None:
    """Run PostgreSQL, NATS and every service locally until Ctrl-C."""
    from tokenry.devstack.stack import run_foreground

    raise typer.Exit(run_foreground(home(data_dir), os.environ))


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option(envvar="TOKENRY_DATABASE_URL", help="PostgreSQL URL")
    ] = None,
) -> None:
    """Apply pending database migrations (safe to run twice)."""
    import asyncpg

    from tokenry.store.migrate import migrate as run_migrations

    try:
        dsn = database_url or setting("TOKENRY_DATABASE_URL", "database_url")
    except CliError as exc:
        raise fail(str(exc)) from None

    async def go() -> list[str]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await run_migrations(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(go())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise fail(f"migration failed: {type(exc).__name__}: {exc}") from None
    typer.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
