"""`tokenry token introspect`: RFC 7662 introspection through the introspector."""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
import typer

from tokenry.cli.common import call, cli_error
from tokenry.cli.context import CliError, credentials, stack
from tokenry.cli.secrets import ClientSecretFile, read_secret_file, token_argument


def token_introspect(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    token: Annotated[
        str,
        typer.Argument(help="An access or refresh token (JWT or opaque); - reads it from stdin"),
    ],
    token_type_hint: Annotated[
        str, typer.Option(help="access_token or refresh_token (a hint)")
    ] = "",
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            "--admin-client-id",
            help="Caller with tokenry:introspect (default: TOKENRY_CLIENT_ID, or the dev admin)",
        ),
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            "--client-secret",
            "--admin-client-secret",
            help="Caller's secret (default: TOKENRY_CLIENT_SECRET)",
        ),
    ] = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Print the RFC 7662 §2.2 response as JSON: "active": false for any token not valid.

    Exit codes: 0 answered (active or not), 1 refused, 2 usage, 3 unreachable.
    """
    from tokenry.core.introspection import INACTIVE, from_claims
    from tokenry.v1 import introspector_pb2, introspector_pb2_grpc

    found = stack(ctx)
    try:
        token = token_argument(token)
        client_secret = read_secret_file(client_secret_file, client_secret)
        creds = credentials(client_id, client_secret, target=found, service="introspector")
    except CliError as exc:
        raise cli_error(exc) from None
    addr = found.addr("introspector")

    def go(channel: grpc.Channel) -> Any:
        return introspector_pb2_grpc.IntrospectorStub(channel).Introspect(
            introspector_pb2.IntrospectRequest(token=token, token_type_hint=token_type_hint),
            metadata=(("authorization", creds.basic()),),
            timeout=10,
        )

    resp = call(addr, go, hint=found.hint())
    if not resp.active:
        typer.echo(json.dumps(INACTIVE.to_json()))
        return
    claims: dict[str, Any] = {
        "scope": resp.scope,
        "client_id": resp.client_id,
        "sub": resp.sub,
        "aud": list(resp.aud),
        "iss": resp.iss,
        "jti": resp.jti,
        "exp": resp.exp,
        "iat": resp.iat,
        "nbf": resp.nbf,
    }
    if resp.act_json:
        claims["act"] = json.loads(resp.act_json)
    if resp.cnf_json:
        claims["cnf"] = json.loads(resp.cnf_json)
    typer.echo(json.dumps(from_claims(claims).to_json(), indent=2))
