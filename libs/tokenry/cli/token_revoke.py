"""`tokenry token revoke TOKEN | --jti J | --grant G | --subject S | --client C`."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import grpc
import typer

from tokenry.cli.common import USAGE, call, cli_error, fail
from tokenry.cli.context import CliError, credentials, stack
from tokenry.cli.secrets import ClientSecretFile, read_secret_file, token_argument

_KINDS = {0: None, 1: "jti", 2: "grant", 3: "subject", 4: "client"}


def token_revoke(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    token: Annotated[
        str | None,
        typer.Argument(
            help="A token to revoke (RFC 7009): its client or an admin may; - reads it from stdin"
        ),
    ] = None,
    jti: Annotated[str | None, typer.Option(help="Revoke one token by jti (admin)")] = None,
    grant: Annotated[
        str | None, typer.Option(help="Revoke a grant/family by gid: every token from it (admin)")
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(help="Revoke every token of a subject issued until now (admin)"),
    ] = None,
    client: Annotated[
        str | None,
        typer.Option("--client", help="Revoke every token of a client issued until now (admin)"),
    ] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the revocation")] = "",
    expires_at: Annotated[
        int, typer.Option(help="Unix time the revocation can be forgotten (0: the default)")
    ] = 0,
    token_type_hint: Annotated[
        str, typer.Option(help="access_token or refresh_token (only a hint)")
    ] = "",
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            "--admin-client-id",
            help="Client id (default: TOKENRY_CLIENT_ID, or the dev admin for the dev stack)",
        ),
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            "--client-secret",
            "--admin-client-secret",
            help="Client secret (default: TOKENRY_CLIENT_SECRET)",
        ),
    ] = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Revoke a token, a jti, a grant, a subject or a client; prints what was recorded as JSON.

    Give exactly one of TOKEN, --jti, --grant, --subject or --client. A TOKEN may be revoked by
    the client it was issued to or by an admin; the other kinds need an admin (tokenry:admin).
    The command returns once the revocation is committed; verifiers apply it within
    milliseconds. A token that is invalid, unknown or expired is accepted without effect
    (RFC 7009 §2.2): the output then says "revoked": false.

    Exit codes: 0 recorded, 1 refused (invalid_client, insufficient_scope), 2 usage,
    3 unreachable.
    """
    from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

    given = {
        "token": token,
        "jti": jti,
        "grant_id": grant,
        "subject": subject,
        "client_id": client,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if len(chosen) != 1:
        raise fail("give exactly one of TOKEN, --jti, --grant, --subject or --client", USAGE)
    found = stack(ctx)
    try:
        if token is not None:
            token = token_argument(token)
            chosen["token"] = token
        client_secret = read_secret_file(client_secret_file, client_secret)
        creds = credentials(client_id, client_secret, target=found, service="revocation")
    except CliError as exc:
        raise cli_error(exc) from None
    addr = found.addr("revocation")
    request = revocation_pb2.RevokeRequest(
        reason=reason,
        expires_at=expires_at,
        token_type_hint=token_type_hint,
        request_id=str(uuid.uuid4()),  # one per run: a retry of this request is idempotent
        **chosen,
    )

    def go(channel: grpc.Channel) -> Any:
        return revocation_pb2_grpc.RevocationStub(channel).Revoke(
            request, metadata=(("authorization", creds.basic()),), timeout=10
        )

    resp = call(addr, go, hint=found.hint())
    kind = _KINDS.get(resp.kind)
    out: dict[str, Any] = {"revoked": kind is not None, "kind": kind, "seq": resp.seq}
    ((target, value),) = chosen.items()
    if target != "token":  # never echo a bearer token
        out["value"] = value
        if target == "jti":
            out["jti"] = value
    if kind is not None:
        out["expires_at"] = resp.expires_at
        if kind in ("subject", "client"):
            out["not_before"] = resp.not_before
    typer.echo(json.dumps(out))
