"""`tokenry token issue`: a token by client credentials."""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
import typer

from tokenry.cli.common import USAGE, call, cli_error, fail
from tokenry.cli.context import CliError, credentials, stack
from tokenry.cli.secrets import ClientSecretFile, read_secret_file


def token_issue(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Client id (default: TOKENRY_CLIENT_ID, or the dev admin for the dev stack)"
        ),
    ] = None,
    client_secret: Annotated[
        str | None, typer.Option(help="Client secret (or TOKENRY_CLIENT_SECRET)")
    ] = None,
    client_secret_file: ClientSecretFile = None,
    scope: Annotated[
        str, typer.Option(help="Space-delimited scopes; empty = all the client may have")
    ] = "",
    audience: Annotated[list[str] | None, typer.Option(help="Audience (repeatable)")] = None,
    token_format: Annotated[
        str, typer.Option("--format", help="jwt or opaque (default: the client's format)")
    ] = "",
) -> None:
    """Obtain a token by client credentials; prints the RFC 6749 §5.1 response as JSON.

    Exit codes: 0 issued, 1 refused (invalid_client, invalid_scope, …), 2 usage, 3 unreachable.
    """
    from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

    if token_format not in ("", "jwt", "opaque"):
        raise fail(f"--format must be jwt or opaque, not {token_format!r}", USAGE)
    found = stack(ctx)
    try:
        client_secret = read_secret_file(client_secret_file, client_secret)
        creds = credentials(client_id, client_secret, target=found, service="issuer")
    except CliError as exc:
        raise cli_error(exc) from None
    addr = found.addr("issuer")

    def go(channel: grpc.Channel) -> Any:
        return issuer_pb2_grpc.IssuerStub(channel).Token(
            issuer_pb2.TokenRequest(
                grant_type="client_credentials",
                scope=scope,
                audience=audience or [],
                token_format=token_format,
            ),
            metadata=(("authorization", creds.basic()),),
            timeout=10,
        )

    resp = call(addr, go, hint=found.hint())
    out = {
        "access_token": resp.access_token,
        "token_type": resp.token_type,
        "expires_in": resp.expires_in,
        "scope": resp.scope,
        "issued_token_type": resp.issued_token_type,
    }
    typer.echo(json.dumps(out, indent=2))
