"""`tokenry user add | list | delete`: the dev user store of the gateway's login page.

The store is a JSON file of scrypt hashes (:mod:`tokenry.core.users`, docs/gateway.md): the
one ``--file``, else ``TOKENRY_GATEWAY_USERS``, else the dev stack's ``$TOKENRY_HOME/users.json``
(what ``tokenry dev`` hands the gateway). A running gateway sees a change at the next sign-in.
``delete`` also ends the user's login sessions in the gateway's database when one is configured
(``--database-url``, ``TOKENRY_DATABASE_URL``, the dev stack's), and says so when it cannot.

A password is read from a hidden prompt (asked twice) or, for scripts, from the first line of
standard input with ``--password-stdin``; never from a flag, which would land in the shell
history and in ``ps``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tokenry.cli.common import NEGATIVE, USAGE, fail
from tokenry.cli.context import Flags, home, stack
from tokenry.cli.typerkit import App
from tokenry.core.users import UserStore, check_username

app = App(help="Add, list and delete the users of the gateway's built-in login page (dev).")

UsersFile = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="The user store (default: TOKENRY_GATEWAY_USERS, then $TOKENRY_HOME/users.json)",
    ),
]


def _path(ctx: typer.Context, given: Path | None) -> Path:
    if given is not None:
        return given
    env = os.environ.get("TOKENRY_GATEWAY_USERS")
    if env:
        return Path(env)
    flags = ctx.find_root().obj
    return home(flags.home if isinstance(flags, Flags) else None) / "users.json"


def _store(path: Path) -> UserStore:
    try:
        return UserStore(path)
    except ValueError as exc:
        raise fail(str(exc), USAGE) from None
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", USAGE) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    first = typer.prompt("Password", hide_input=True)
    again = typer.prompt("Repeat the password", hide_input=True)
    if first != again:
        raise fail("the passwords differ; nothing changed", USAGE)
    return str(first)


@app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="1-64 letters, digits or . _ @ + -")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    file: UsersFile = None,
) -> None:
    """Add a user, or set a new password for one (scrypt-hashed; the password is never shown)."""
    try:
        check_username(username)
    except ValueError as exc:
        raise fail(str(exc), USAGE) from None
    path = _path(ctx, file)
    store = _store(path)
    existed = username in store.list()
    password = _read_password(password_stdin)
    try:
        store.add(username, password)
    except ValueError as exc:
        raise fail(f"{exc}; nothing changed", USAGE) from None
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}", USAGE) from None
    typer.echo(f"{'updated' if existed else 'added'} {username} in {path}")


@app.command("list")
def list_users(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
    file: UsersFile = None,
) -> None:
    """List the usernames, one a line (never a hash)."""
    path = _path(ctx, file)
    store = _store(path)
    names = store.list()
    if as_json:
        typer.echo(json.dumps(names))
        return
    for name in names:  # one a line: whole at any terminal width
        typer.echo(name)


@app.command("delete")
def delete(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The user to remove")],
    file: UsersFile = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL URL of the gateway's login sessions"
            " (default: TOKENRY_DATABASE_URL, then the dev stack's)"
        ),
    ] = None,
) -> None:
    """Remove a user and end their login sessions (when the gateway's database is configured)."""
    path = _path(ctx, file)
    store = _store(path)
    try:
        found = store.delete(username)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}", USAGE) from None
    if not found:
        raise fail(f"no user {username[:64]!r} in {path}", NEGATIVE)
    typer.echo(f"deleted {username}")
    # The user first: once gone no new session can start, so none outlives this.
    ended = _end_sessions(ctx, username, database_url)
    if isinstance(ended, int):
        typer.echo(f"ended {ended} login session{'' if ended == 1 else 's'} of {username}")
    else:
        typer.echo(
            f"warning: login sessions of {username} were not ended ({ended});"
            " they last until logout or expiry (12 h by default)",
            err=True,
        )


def _end_sessions(ctx: typer.Context, subject: str, given: str | None) -> int | str:
    """Delete the subject's rows of ``login_sessions`` (the gateway's sessions, migration
    0009): how many, or why not (no database configured or reachable)."""
    import asyncpg

    from tokenry.servicekit.variables import postgres_url

    found = stack(ctx, database_url=given)
    if found.database_url is None:
        return "no database: pass --database-url or set TOKENRY_DATABASE_URL"
    try:
        dsn = postgres_url(found.database_url.value)
    except ValueError as exc:
        return f"{found.database_url.source} {exc}"
    try:
        return asyncio.run(_delete_sessions(dsn, subject))
    except (OSError, TimeoutError) as exc:
        return f"PostgreSQL is unreachable: {type(exc).__name__}"
    except asyncpg.PostgresError as exc:
        return f"PostgreSQL refused: {type(exc).__name__}"


async def _delete_sessions(dsn: str, subject: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        status = await conn.execute("DELETE FROM login_sessions WHERE subject = $1", subject)
    finally:
        await conn.close()
    return int(status.split()[-1])  # "DELETE <n>"
