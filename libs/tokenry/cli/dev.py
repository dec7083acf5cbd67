"""`tokenry dev [--data-dir DIR]` and `tokenry dev env`: the local stack (docs/spec.md §6)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tokenry.cli.common import UNREACHABLE, fail
from tokenry.cli.context import Flags
from tokenry.cli.typerkit import App

app = App(
    help="Run PostgreSQL, NATS and every service locally until Ctrl-C; `tokenry dev env` "
    "prints where it runs.",
    no_args_is_help=False,
    invoke_without_command=True,
)

DataDir = Annotated[
    str | None,
    typer.Option(help="Data folder (default: --home, $TOKENRY_HOME or ./.tokenry)"),
]


def _folder(ctx: typer.Context, data_dir: str | None) -> str | None:
    root = ctx.find_root().obj
    return data_dir or (root.home if isinstance(root, Flags) else None)


@app.callback()
def dev(
    ctx: typer.Context,
    data_dir: DataDir = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Plaintext listeners and NATS instead of TLS from the generated dev CA",
        ),
    ] = False,
) -> None:
    """Run PostgreSQL, NATS and every service locally until Ctrl-C, over TLS from a local
    dev CA written to $TOKENRY_HOME/tls (`tokenry dev env` exports its path). The HTTP gateway
    is the issuer URL, https://localhost:8080 (--insecure: http://127.0.0.1:8080), or the free
    port it got when 8080 is taken; each service's Prometheus metrics URL is printed.

    Exit codes: 0 stopped cleanly, 1 failed to start, 2 a dev stack already runs in this folder.
    """
    if ctx.invoked_subcommand is not None:
        return
    from tokenry.devstack.endpoints import home
    from tokenry.devstack.stack import run_foreground

    raise typer.Exit(run_foreground(home(_folder(ctx, data_dir)), os.environ, insecure=insecure))


@app.command("env")
def env(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """Print `export` lines for the running dev stack: every address, the NATS URL, the issuer
    URL (the gateway), the home, and unless it runs --insecure the dev CA: TOKENRY_TLS_CA and
    NODE_EXTRA_CA_CERTS, and SSL_CERT_FILE / REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE naming the
    system's roots plus the dev CA (curl, Python and Node then trust the gateway). Comment lines
    give the discovery and metrics URLs.

    Use: eval "$(tokenry dev env)". Exit 3 when no dev stack runs in the folder.
    """
    from tokenry.devstack.endpoints import export_lines, home, read_dev_file

    folder = home(_folder(ctx, data_dir))
    running = read_dev_file(folder)
    if running is None:
        raise fail(
            f"no running `tokenry dev` in {folder} (no live dev.json): start `tokenry dev`, or"
            " pass --data-dir / set TOKENRY_HOME to the folder it uses",
            UNREACHABLE,
        )
    typer.echo("\n".join(export_lines(running)))
