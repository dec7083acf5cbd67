"""`tokenry`: one CLI for operators (docs/spec.md §6).

Every error is one line on stderr, never a traceback, with a documented exit code: 0 ok, 1 a
negative answer, 2 usage or configuration error, 3 unreachable (:mod:`tokenry.cli.common`).
``TOKENRY_DEBUG=1`` shows the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Annotated

import typer

from tokenry.cli import bench, clients, dev, events, keys, status, token, users
from tokenry.cli.common import USAGE, quiet_nats_tls_close
from tokenry.cli.context import Flags
from tokenry.cli.migrate import migrate
from tokenry.cli.typerkit import App

app = App(
    help="Tokenry: token infrastructure for your service mesh.\n\n"
    "Exit codes: 0 ok, 1 a negative answer (invalid token, refused, not found), 2 usage or "
    "configuration error, 3 unreachable. Addresses come from the flags below, then "
    "TOKENRY_<SERVICE>_ADDR / TOKENRY_NATS_URL, then a running `tokenry dev` "
    "($TOKENRY_HOME/dev.json), then the default ports; `tokenry status` shows which.",
)
app.add_typer(token.app, name="token")
app.add_typer(events.app, name="events")
app.add_typer(keys.app, name="keys")
app.add_typer(clients.app, name="client")
app.add_typer(users.app, name="user")
app.add_typer(dev.app, name="dev")
app.command()(keys.jwks)
app.command()(migrate)
app.command()(status.status)
app.command()(bench.bench)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("tokenry")
        except metadata.PackageNotFoundError:
            version = "unknown"
        typer.echo(f"tokenry {version}")
        raise typer.Exit(0)


@app.callback()
def root(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option(
            envvar="TOKENRY_HOME",
            help="The dev stack's folder, whose dev.json says where it runs (default ./.tokenry)",
            show_envvar=False,
        ),
    ] = None,
    issuer_addr: Annotated[
        str | None, typer.Option(help="The issuer (default: TOKENRY_ISSUER_ADDR, dev.json, :50051)")
    ] = None,
    introspector_addr: Annotated[
        str | None, typer.Option(help="The introspector (TOKENRY_INTROSPECTOR_ADDR, :50052)")
    ] = None,
    revocation_addr: Annotated[
        str | None, typer.Option(help="The revocation service (TOKENRY_REVOCATION_ADDR, :50053)")
    ] = None,
    keyrotator_addr: Annotated[
        str | None, typer.Option(help="The key rotator (TOKENRY_KEYROTATOR_ADDR, :50054)")
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option(help="NATS (TOKENRY_NATS_URL, dev.json, nats://127.0.0.1:4222)")
    ] = None,
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Tokenry: token infrastructure for your service mesh."""
    ctx.obj = Flags(
        home=home,
        issuer=issuer_addr,
        introspector=introspector_addr,
        revocation=revocation_addr,
        keyrotator=keyrotator_addr,
        nats_url=nats_url,
    )


def _usage_line(exc: typer.TyperException) -> str:
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)  # a usage error knows its command
    if ctx is not None:
        return f"error: {message} (see `{ctx.command_path} --help`)"
    return f"error: {message}"


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting."""
    command = typer.main.get_command(app)
    quiet_nats_tls_close()  # token verify and events watch close NATS-over-TLS connections
    try:
        result = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="tokenry",
            standalone_mode=False,
        )
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `tokenry` alone: the help, exit 2
            typer.echo(exc.format_message())
            return USAGE
        typer.echo(_usage_line(exc), err=True)
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except Exception as exc:
        if os.environ.get("TOKENRY_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {first} (TOKENRY_DEBUG=1 shows where)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
