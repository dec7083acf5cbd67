"""`tokenry token …`: issue, revoke and verify tokens (one module per command)."""

from __future__ import annotations

from tokenry.cli.token_introspect import token_introspect
from tokenry.cli.token_issue import token_issue
from tokenry.cli.token_revoke import token_revoke
from tokenry.cli.token_verify import token_verify
from tokenry.cli.typerkit import App

app = App(help="Issue, introspect, revoke and verify tokens.")
app.command("issue")(token_issue)
app.command("revoke")(token_revoke)
app.command("verify")(token_verify)
app.command("introspect")(token_introspect)
