"""`tokenry keys list | rotate | revoke KID | rewrap` and `tokenry jwks` (docs/keys.md)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import grpc
import typer

from tokenry.cli.common import (
    UNREACHABLE,
    USAGE,
    AdminClientId,
    AdminClientSecret,
    call,
    cli_error,
    fail,
    print_wide,
)
from tokenry.cli.context import CliError, credentials, stack
from tokenry.cli.secrets import ClientSecretFile, read_secret_file
from tokenry.cli.typerkit import App

if TYPE_CHECKING:
    from tokenry.core.keywrap import Kek, KekRing
    from tokenry.store.keys import RewrapReport

app = App(help="Signing keys: list, rotate, revoke, rewrap under a new KEK (docs/keys.md).")


def jwks(ctx: typer.Context) -> None:
    """Print the JWK Set (RFC 7517) published by the key rotator."""
    from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

    found = stack(ctx)
    addr = found.addr("keyrotator")

    def go(channel: grpc.Channel) -> Any:
        return keyrotator_pb2_grpc.KeyRotatorStub(channel).GetJwks(
            keyrotator_pb2.GetJwksRequest(), timeout=10
        )

    resp = call(addr, go, hint=found.hint())
    typer.echo(json.dumps(json.loads(resp.jwks_json), indent=2))


_TIMES = ("created_at", "activated_at", "retiring_at", "retired_at", "revoked_at")


def _key_dict(key: Any) -> dict[str, Any]:
    def when(name: str) -> str | None:
        return key.__getattribute__(name).ToJsonString() if key.HasField(name) else None

    return {
        "kid": key.kid,
        "use": key.use,
        "alg": key.alg,
        "state": key.state,
        **{name: when(name) for name in _TIMES},
        "next_transition_at": when("next_transition_at"),
        "kek_id": key.kek_id,
        "has_private_key": key.has_private_key,
        "revoke_reason": key.revoke_reason or None,
        "revoked_by": key.revoked_by or None,
        "public_jwk": json.loads(key.public_jwk_json),
    }


@app.command("list")
def list_keys(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Include retired and revoked keys")
    ] = False,
) -> None:
    """List the signing keys with their state and timestamps."""
    from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

    found = stack(ctx)
    addr = found.addr("keyrotator")

    def go(channel: grpc.Channel) -> Any:
        return keyrotator_pb2_grpc.KeyRotatorStub(channel).ListKeys(
            keyrotator_pb2.ListKeysRequest(include_ended=show_all), timeout=10
        )

    keys = [_key_dict(k) for k in call(addr, go, hint=found.hint()).keys]
    if as_json:
        typer.echo(json.dumps(keys, indent=2))
        return
    from rich.table import Table

    # Ids and times are never cut: the table wraps (soft_wrap) instead of truncating them.
    table = Table("kid", "use", "alg", "state", "since", "next change", "kek", box=None)
    for key in keys:
        since = {
            "pending": key["created_at"],
            "active": key["activated_at"],
            "retiring": key["retiring_at"],
            "retired": key["retired_at"],
            "revoked": key["revoked_at"],
        }[key["state"]]
        table.add_row(
            key["kid"],
            key["use"],
            key["alg"],
            key["state"],
            since or "",
            key["next_transition_at"] or "",
            key["kek_id"],
        )
    print_wide(table)


@app.command()
def rotate(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    use: Annotated[str, typer.Option(help="Key set use: access or id")] = "access",
    alg: Annotated[str, typer.Option(help="Key set alg (default: the configured one)")] = "",
    force: Annotated[
        bool,
        typer.Option(help="Rotate even if the successor is younger than the publish lead"),
    ] = False,
    client_id: AdminClientId = None,
    client_secret: AdminClientSecret = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Rotate a key set now: its published successor signs from now on (needs tokenry:admin)."""
    from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

    found = stack(ctx)
    try:
        client_secret = read_secret_file(client_secret_file, client_secret)
        creds = credentials(client_id, client_secret, target=found, service="keyrotator")
    except CliError as exc:
        raise cli_error(exc) from None
    addr = found.addr("keyrotator")

    def go(channel: grpc.Channel) -> Any:
        return keyrotator_pb2_grpc.KeyRotatorStub(channel).Rotate(
            # One request_id per run: a retry of this request is idempotent.
            keyrotator_pb2.RotateRequest(
                use=use, alg=alg, force=force, request_id=str(uuid.uuid4())
            ),
            metadata=(("authorization", creds.basic()),),
            timeout=30,
        )

    resp = call(addr, go, hint=found.hint())
    typer.echo(
        json.dumps(
            {
                "active": resp.active_kid,
                "retiring": resp.retiring_kid,
                "pending": resp.pending_kid,
                "seq": resp.seq,
            }
        )
    )


# An RFC 7638 thumbprint kid is base64url and may start with '-': such an argument is the kid,
# not an unknown option (known options still parse as options).
@app.command(context_settings={"ignore_unknown_options": True})
def revoke(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(help="The kid of the key to revoke")],
    reason: Annotated[str, typer.Option(help="Recorded with the key")] = "",
    client_id: AdminClientId = None,
    client_secret: AdminClientSecret = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Emergency: revoke a key; its tokens are rejected everywhere (needs tokenry:admin)."""
    from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

    found = stack(ctx)
    try:
        client_secret = read_secret_file(client_secret_file, client_secret)
        creds = credentials(client_id, client_secret, target=found, service="keyrotator")
    except CliError as exc:
        raise cli_error(exc) from None
    addr = found.addr("keyrotator")

    def go(channel: grpc.Channel) -> Any:
        return keyrotator_pb2_grpc.KeyRotatorStub(channel).RevokeKey(
            keyrotator_pb2.RevokeKeyRequest(kid=kid, reason=reason, request_id=str(uuid.uuid4())),
            metadata=(("authorization", creds.basic()),),
            timeout=30,
        )

    resp = call(addr, go, hint=found.hint())
    typer.echo(
        json.dumps(
            {
                "revoked": resp.revoked_kid or kid,
                "active": resp.active_kid or None,
                "pending": resp.pending_kid or None,
                "seq": resp.seq,
            }
        )
    )


@app.command()
def rewrap(
    ctx: typer.Context,
    new_kek_file: Annotated[
        Path | None,
        typer.Option(help="File holding the new KEK (default: TOKENRY_KEK_NEW(_FILE))"),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL (default: TOKENRY_DATABASE_URL, then the dev stack's)"),
    ] = None,
) -> None:
    """Re-encrypt every private key under a new KEK, without downtime (docs/keys.md).

    Needs the current KEK (TOKENRY_KEK or TOKENRY_KEK_FILE) and the new one. Safe to run again.
    Exit codes: 0 done, 1 some keys are sealed under a KEK not given, 2 a KEK or the URL is
    missing or malformed, 3 PostgreSQL unreachable.
    """
    import asyncpg

    from tokenry.core.keywrap import KekRing, kek_from_env
    from tokenry.servicekit.variables import postgres_url

    found = stack(ctx, database_url=database_url)
    env = dict(os.environ)
    dev_kek = found.home / "kek"
    if not env.get("TOKENRY_KEK") and not env.get("TOKENRY_KEK_FILE") and dev_kek.exists():
        env["TOKENRY_KEK_FILE"] = str(dev_kek)
    if new_kek_file is not None:
        env.pop("TOKENRY_KEK_NEW", None)
        env["TOKENRY_KEK_NEW_FILE"] = str(new_kek_file)
    if found.database_url is None:
        raise fail("no database: pass --database-url or set TOKENRY_DATABASE_URL", USAGE)
    try:
        dsn = postgres_url(found.database_url.value)
    except ValueError as exc:
        raise fail(f"{found.database_url.source} {exc}", USAGE) from None
    try:
        old = kek_from_env(env, "TOKENRY_KEK")
        new = kek_from_env(env, "TOKENRY_KEK_NEW")
    except ValueError as exc:
        raise fail(str(exc), USAGE) from None
    if old is None:
        raise fail("the current KEK is needed: set TOKENRY_KEK or TOKENRY_KEK_FILE", USAGE)
    if new is None:
        raise fail(
            "the new KEK is needed: TOKENRY_KEK_NEW, TOKENRY_KEK_NEW_FILE or --new-kek-file", USAGE
        )
    try:
        report = asyncio.run(_rewrap(dsn, KekRing(new, (old,)), new))
    except (OSError, TimeoutError) as exc:
        raise fail(
            f"PostgreSQL is unreachable, nothing changed: {type(exc).__name__}", UNREACHABLE
        ) from None
    except asyncpg.PostgresError as exc:
        raise fail(f"rewrap failed, nothing changed: {type(exc).__name__}") from None
    typer.echo(
        json.dumps(
            {
                "kek_id": new.id,
                "rewrapped": len(report.rewrapped),
                "unchanged": report.unchanged,
                "failed": list(report.failed),
            }
        )
    )
    if report.failed:
        raise fail(
            f"{len(report.failed)} key(s) are sealed under a KEK that was not given;"
            " run again with that KEK as TOKENRY_KEK"
        )


async def _rewrap(dsn: str, ring: KekRing, target: Kek) -> RewrapReport:
    import asyncpg

    from tokenry.store.keys import KeyStore

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, timeout=10)
    try:
        return await KeyStore(pool).rewrap(ring, target)
    finally:
        await pool.close()
