"""`tokenry token revoke`: revocations."""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
import typer

from tokenry.cli.common import call, fail
from tokenry.cli.context import CliError, credentials, service_addr


def token_revoke(
    jti: Annotated[str, typer.Option(help="The jti of the token to revoke")],
    reason: Annotated[str, typer.Option(help="Recorded with the revocation")] = "",
    client_id: Annotated[
        str | None, typer.Option(help="Admin client id (default: the dev admin)")
    ] = None,
    client_secret: Annotated[str | None, typer.Option(help="Admin client secret")] = None,
) -> None:
    """Revoke a token by jti (needs tokenry:admin); prints the event sequence."""
    from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

    try:
        creds = credentials(client_id, client_secret)
    except CliError as exc:
        raise fail(str(exc)) from None
    addr = service_addr("revocation")

    def go(channel: grpc.Channel) -> Any:
        return revocation_pb2_grpc.RevocationStub(channel).Revoke(
            revocation_pb2.RevokeRequest(jti=jti, reason=reason),
            metadata=(("authorization", creds.basic()),),
            timeout=10,
        )

    resp = call(addr, go)
    typer.echo(json.dumps({"revoked": True, "jti": jti, "seq": resp.seq}))
