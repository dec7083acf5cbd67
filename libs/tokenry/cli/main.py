"""`tokenry`: one CLI for operators (SPEC §6). Errors are one line, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import grpc
import typer

from tokenry.cli.context import CliError, credentials, home, service_addr, setting

app = typer.Typer(help="Tokenry: token infrastructure for your service mesh.", no_args_is_help=True)
token_app = typer.Typer(help="Issue, revoke and verify tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

T = TypeVar("T")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _rpc_error(exc: grpc.RpcError, addr: str) -> str:
    from tokenry.servicekit.status import oauth_error_of

    detail = oauth_error_of(exc)
    if detail is not None:
        return f"{detail.error}: {detail.error_description}"
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"service at {addr} is unreachable ({code.name})"
    return f"{code.name if code else 'RPC failed'}: {exc.details() if isinstance(exc, grpc.Call) else exc}"


def _call(addr: str, fn: Callable[[grpc.Channel], T]) -> T:
    try:
        with grpc.insecure_channel(addr) as channel:
            return fn(channel)
    except grpc.RpcError as exc:
        raise _fail(_rpc_error(exc, addr)) from None
    except CliError as exc:
        raise _fail(str(exc)) from None


@app.command()
def dev(
    data_dir: Annotated[
        str | None, typer.Option(help="Data folder (default $TOKENRY_HOME or ./.tokenry)")
    ] = None,
) -> None:
    """Run PostgreSQL, NATS and every service locally until Ctrl-C."""
    from tokenry.devstack.stack import run_foreground

    raise typer.Exit(run_foreground(home(data_dir), os.environ))


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option(envvar="TOKENRY_DATABASE_URL", help="PostgreSQL URL")
    ] = None,
) -> None:
    """Apply pending database migrations (safe to run twice)."""
    import asyncpg

    from tokenry.store.migrate import migrate as run_migrations

    try:
        dsn = database_url or setting("TOKENRY_DATABASE_URL", "database_url")
    except CliError as exc:
        raise _fail(str(exc)) from None

    async def go() -> list[str]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await run_migrations(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(go())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise _fail(f"migration failed: {type(exc).__name__}: {exc}") from None
    typer.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


@token_app.command("issue")
def token_issue(
    client_id: Annotated[
        str | None, typer.Option(help="Client id (default: TOKENRY_CLIENT_ID or the dev admin)")
    ] = None,
    client_secret: Annotated[
        str | None, typer.Option(help="Client secret (or TOKENRY_CLIENT_SECRET)")
    ] = None,
    scope: Annotated[
        str, typer.Option(help="Space-delimited scopes; empty = all the client may have")
    ] = "",
    audience: Annotated[list[str] | None, typer.Option(help="Audience (repeatable)")] = None,
    token_format: Annotated[
        str, typer.Option("--format", help="jwt (opaque tokens come with the issuer issue)")
    ] = "jwt",
) -> None:
    """Obtain a token by client credentials; prints the RFC 6749 §5.1 response as JSON."""
    from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

    if token_format != "jwt":
        raise _fail(f"--format {token_format!r} is not supported by this issuer; use jwt")
    try:
        creds = credentials(client_id, client_secret)
    except CliError as exc:
        raise _fail(str(exc)) from None
    addr = service_addr("issuer")

    def go(channel: grpc.Channel) -> Any:
        return issuer_pb2_grpc.IssuerStub(channel).Token(
            issuer_pb2.TokenRequest(
                grant_type="client_credentials", scope=scope, audience=audience or []
            ),
            metadata=[("authorization", creds.basic())],
            timeout=10,
        )

    resp = _call(addr, go)
    out = {
        "access_token": resp.access_token,
        "token_type": resp.token_type,
        "expires_in": resp.expires_in,
        "scope": resp.scope,
        "issued_token_type": resp.issued_token_type,
    }
    typer.echo(json.dumps(out, indent=2))


@token_app.command("revoke")
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
        raise _fail(str(exc)) from None
    addr = service_addr("revocation")

    def go(channel: grpc.Channel) -> Any:
        return revocation_pb2_grpc.RevocationStub(channel).Revoke(
            revocation_pb2.RevokeRequest(jti=jti, reason=reason),
            metadata=[("authorization", creds.basic())],
            timeout=10,
        )

    resp = _call(addr, go)
    typer.echo(json.dumps({"revoked": True, "jti": jti, "seq": resp.seq}))


@token_app.command("verify")
def token_verify(
    token: Annotated[str, typer.Argument(help="The access token (JWT)")],
    audience: Annotated[str, typer.Option(help="This resource server's audience")],
    issuer: Annotated[
        str | None, typer.Option(help="Expected iss (default TOKENRY_ISSUER_URL)")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for current revocation state")
    ] = 10.0,
) -> None:
    """Verify a token locally with the resource-server library: exit 0 and print its claims,
    or exit 1 with the reason."""
    from tokenry.bus.codec import Subjects
    from tokenry.verifier import VerificationError, start_verifier

    try:
        iss = issuer or setting("TOKENRY_ISSUER_URL", "issuer_url")
        nats_url = setting("TOKENRY_NATS_URL", "nats_url")
        prefix = setting("TOKENRY_NATS_PREFIX", "nats_prefix", "tokenry")
        stream = setting("TOKENRY_NATS_STREAM", "nats_stream", "TOKENRY_EVENTS")
    except CliError as exc:
        raise _fail(str(exc)) from None

    async def go() -> dict[str, Any]:
        runtime = await asyncio.wait_for(
            start_verifier(
                issuer=iss,
                audience=audience,
                keyrotator_addr=service_addr("keyrotator"),
                nats_url=nats_url,
                subjects=Subjects(prefix),
                stream=stream,
            ),
            timeout=wait,
        )
        try:
            deadline = time.monotonic() + wait
            while runtime.state.is_stale() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return dict(await runtime.verifier.verify(token))
        finally:
            await runtime.close()

    try:
        claims = asyncio.run(go())
    except VerificationError as exc:
        typer.echo(f"invalid: {exc.reason}: {exc.description}", err=True)
        raise typer.Exit(1) from None
    except TimeoutError:
        raise _fail("could not reach the key rotator or NATS in time") from None
    typer.echo(json.dumps(claims, indent=2, sort_keys=True))


@app.command()
def jwks() -> None:
    """Print the JWK Set (RFC 7517) published by the key rotator."""
    from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

    addr = service_addr("keyrotator")

    def go(channel: grpc.Channel) -> Any:
        return keyrotator_pb2_grpc.KeyRotatorStub(channel).GetJwks(
            keyrotator_pb2.GetJwksRequest(), timeout=10
        )

    resp = _call(addr, go)
    typer.echo(json.dumps(json.loads(resp.jwks_json), indent=2))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
