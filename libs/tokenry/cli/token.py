"""`tokenry token …`: issue, revoke and verify tokens (one module per command)."""

from __future__ import annotations

import typer

from tokenry.cli.token_introspect import token_introspect
from tokenry.cli.token_issue import token_issue
from tokenry.cli.token_revoke import token_revoke
from tokenry.cli.token_verify import token_verify

app = typer.Typer(help="Issue, revoke and verify tokens.", no_args_is_help=True)
app.command("issue")(token_issue)
app.command("revoke")(token_revoke)
app.command("verify")(token_verify)
app.command("introspect")(token_introspect)
