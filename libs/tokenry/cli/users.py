"""`tokenry user add | list | delete`: the dev user store of the gateway's login page.

The store is a JSON file of scrypt hashes (:mod:`tokenry.core.users`, docs/gateway.md): the
one ``--file``, else ``TOKENRY_GATEWAY_USERS``, else the dev stack's ``$TOKENRY_HOME/users.json``
(what ``tokenry dev`` hands the gateway). A running gateway sees a change at the next sign-in.

A password is read from a hidden prompt (asked twice) or, for scripts, from the first line of
standard input with ``--password-stdin``; never from a flag, which would land in the shell
history and in ``ps``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tokenry.cli.common import NEGATIVE, USAGE, fail
from tokenry.cli.context import Flags, home
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
) -> None:
    """Remove a user (sessions already signed in end at their expiry or at logout)."""
    path = _path(ctx, file)
    store = _store(path)
    try:
        found = store.delete(username)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}", USAGE) from None
    if not found:
        raise fail(f"no user {username[:64]!r} in {path}", NEGATIVE)
    typer.echo(f"deleted {username}")
