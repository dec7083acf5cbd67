"""`tokenry client create | update | list | show | delete`: the client registry (docs/spec.md §6).

Every subcommand calls the issuer's admin API as an admin client, except
``tokenry client create --bootstrap-admin``, which writes the first admin client straight into
the database (the trust root, docs/spec.md §2): it needs ``TOKENRY_DATABASE_URL`` and the secret
pepper (``TOKENRY_SECRET_PEPPER`` or ``_FILE``, or the dev stack's in ``$TOKENRY_HOME``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer

from tokenry.cli.common import (
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
from tokenry.devstack.endpoints import Stack

app = App(help="Register, list, show and delete OAuth clients.")


def _metadata(
    target: Stack, client_id: str | None, client_secret: str | None, secret_file: str | None
) -> tuple[tuple[str, str], ...]:
    try:
        client_secret = read_secret_file(secret_file, client_secret)
        creds = credentials(client_id, client_secret, target=target, service="issuer")
    except CliError as exc:
        raise cli_error(exc) from None
    return (("authorization", creds.basic()),)


def _info_dict(info: Any) -> dict[str, Any]:
    return {
        "client_id": info.client_id,
        "client_type": info.client_type,
        "token_endpoint_auth_method": info.token_endpoint_auth_method,
        "grant_types": list(info.grant_types),
        "redirect_uris": list(info.redirect_uris),
        "scopes": list(info.scopes),
        "audiences": list(info.audiences),
        "token_format": info.token_format,
        "access_token_ttl": info.access_token_ttl,
        "id_token_ttl": info.id_token_ttl,
        "id_token_alg": info.id_token_alg,
        "refresh_token_idle_ttl": info.refresh_token_idle_ttl,
        "refresh_token_absolute_ttl": info.refresh_token_absolute_ttl,
        "token_exchange_from": list(info.token_exchange_from),
        "jwks": json.loads(info.jwks_json) if info.jwks_json else None,
        "description": info.description,
        "web_origins": list(info.web_origins),
        "first_party": info.first_party,
        "post_logout_redirect_uris": list(info.post_logout_redirect_uris),
    }


def _pepper(target: Stack) -> tuple[str, bytes]:
    text = os.environ.get("TOKENRY_SECRET_PEPPER")
    path = os.environ.get("TOKENRY_SECRET_PEPPER_FILE") or str(target.home / "secret-pepper")
    if not text:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            raise CliError(
                "the secret pepper is needed: set TOKENRY_SECRET_PEPPER or _FILE"
            ) from None
    if len(text) < 32:
        raise CliError("TOKENRY_SECRET_PEPPER must be at least 32 characters")
    from tokenry.core.client_secrets import pepper_id

    return pepper_id(text.encode()), text.encode()


async def bootstrap_admin(dsn: str, client_id: str, pepper: tuple[str, bytes]) -> str:
    """Create the first admin client straight in the database; returns its secret."""
    from tokenry.core.client_secrets import Pepper, generate_secret, hash_secret
    from tokenry.core.clients import ADMIN_SCOPE, CLIENT_CREDENTIALS, Client, validate_registration
    from tokenry.store.clients import ClientExists, ClientStore
    from tokenry.store.db import create_pool

    key = Pepper(*pepper)
    secret = generate_secret()
    client = Client(
        client_id=client_id,
        secret_hash=hash_secret(key, secret),
        pepper_id=key.id,
        grant_types=frozenset({CLIENT_CREDENTIALS}),
        scopes=frozenset({ADMIN_SCOPE}),
        audiences=("tokenry",),
        description="bootstrap admin (tokenry client create --bootstrap-admin)",
    )
    validate_registration(client, registrar_is_admin=True)
    pool = await create_pool(dsn, max_size=1, attempts=3)
    try:
        # No event: nothing can have cached a client that did not exist (negative cache
        # entries live 2 s).
        await ClientStore(pool).create(client, None)
    except ClientExists:
        raise CliError(f"client {client_id!r} already exists", code=1) from None
    finally:
        await pool.close()
    return secret


@app.command("create")
def create(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    client_id: Annotated[str, typer.Argument(help="The new client's id")],
    bootstrap_admin_: Annotated[
        bool,
        typer.Option(
            "--bootstrap-admin",
            help="Create the first admin client straight in the database (the trust root)",
        ),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL for --bootstrap-admin (default: TOKENRY_DATABASE_URL)"),
    ] = None,
    client_type: Annotated[str, typer.Option("--type", help="confidential or public")] = (
        "confidential"
    ),
    auth_method: Annotated[
        str | None,
        typer.Option(help="client_secret_basic (default), client_secret_post, private_key_jwt"),
    ] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option(help="Grant type (repeatable): client_credentials, authorization_code, …"),
    ] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Allowed scope (repeatable)")] = None,
    audience: Annotated[list[str] | None, typer.Option(help="Audience (repeatable)")] = None,
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="Exact redirect URI (repeatable)")
    ] = None,
    token_format: Annotated[str, typer.Option("--format", help="jwt or opaque")] = "jwt",
    access_token_ttl: Annotated[int, typer.Option(help="Seconds (max 3600)")] = 600,
    jwks_file: Annotated[
        Path | None, typer.Option(help="JWK Set of the client's public keys (private_key_jwt)")
    ] = None,
    exchange_from: Annotated[
        list[str] | None,
        typer.Option(help="Token exchange: client ids whose tokens it may exchange ('*' = any)"),
    ] = None,
    description: Annotated[str, typer.Option(help="Free text")] = "",
    web_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Browser origin allowed by CORS, exactly https://host[:port] (repeatable)"
        ),
    ] = None,
    first_party: Annotated[
        bool, typer.Option("--first-party", help="Skip the consent page (login is still asked)")
    ] = False,
    post_logout_redirect_uri: Annotated[
        list[str] | None,
        typer.Option(help="Exact URI /oauth2/logout may return to (repeatable)"),
    ] = None,
    admin_client_id: AdminClientId = None,
    admin_client_secret: AdminClientSecret = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Register a client; prints it as JSON with its generated secret (shown only once).

    With --bootstrap-admin: the first admin, written straight into the database.
    """
    found = stack(ctx, database_url=database_url)
    if bootstrap_admin_:
        from tokenry.cli.common import UNREACHABLE
        from tokenry.servicekit.variables import postgres_url

        if found.database_url is None:
            raise fail("no database: pass --database-url or set TOKENRY_DATABASE_URL", USAGE)
        try:
            dsn = postgres_url(found.database_url.value)
        except ValueError as exc:
            raise fail(f"{found.database_url.source} {exc}", USAGE) from None
        try:
            secret = asyncio.run(bootstrap_admin(dsn, client_id, _pepper(found)))
        except CliError as exc:
            raise cli_error(exc) from None
        except (OSError, TimeoutError) as exc:
            raise fail(f"PostgreSQL is unreachable: {type(exc).__name__}", UNREACHABLE) from None
        except Exception as exc:  # the database: one line, no traceback, no DSN
            raise fail(f"bootstrap failed: {type(exc).__name__}: {exc}") from None
        typer.echo(json.dumps({"client_id": client_id, "client_secret": secret}, indent=2))
        return

    from tokenry.v1 import clients_pb2, clients_pb2_grpc

    jwks_json = ""
    if jwks_file is not None:
        try:
            jwks_json = jwks_file.read_text()
        except OSError as exc:
            raise fail(f"cannot read {jwks_file}: {exc.strerror}", USAGE) from None
    method = auth_method or ("private_key_jwt" if jwks_json else "")
    info = clients_pb2.ClientInfo(
        client_id=client_id,
        client_type=client_type,
        token_endpoint_auth_method=method,
        grant_types=grant or ["client_credentials"],
        redirect_uris=redirect_uri or [],
        scopes=scope or [],
        audiences=audience or [],
        token_format=token_format,
        access_token_ttl=access_token_ttl,
        jwks_json=jwks_json,
        token_exchange_from=exchange_from or [],
        description=description,
        web_origins=web_origin or [],
        first_party=first_party,
        post_logout_redirect_uris=post_logout_redirect_uri or [],
    )
    metadata = _metadata(found, admin_client_id, admin_client_secret, client_secret_file)
    addr = found.addr("issuer")

    def go(channel: grpc.Channel) -> Any:
        return clients_pb2_grpc.ClientsStub(channel).CreateClient(
            # One request_id per run: a retry of this request is idempotent.
            clients_pb2.CreateClientRequest(client=info, request_id=str(uuid.uuid4())),
            metadata=metadata,
            timeout=10,
        )

    resp = call(addr, go, hint=found.hint())
    out = _info_dict(resp.client)
    if resp.client_secret:
        out["client_secret"] = resp.client_secret
    typer.echo(json.dumps(out, indent=2))


@app.command("update")
def update(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    client_id: Annotated[str, typer.Argument(help="The client's id")],
    web_origin: Annotated[
        list[str] | None,
        typer.Option(help="Browser origin allowed by CORS (repeatable; replaces the list)"),
    ] = None,
    no_web_origins: Annotated[
        bool, typer.Option("--no-web-origins", help="Remove every web origin")
    ] = False,
    first_party: Annotated[
        bool | None,
        typer.Option("--first-party/--third-party", help="Skip the consent page, or ask again"),
    ] = None,
    post_logout_redirect_uri: Annotated[
        list[str] | None,
        typer.Option(help="Exact URI /oauth2/logout may return to (repeatable; replaces)"),
    ] = None,
    no_post_logout_redirect_uris: Annotated[
        bool,
        typer.Option("--no-post-logout-redirect-uris", help="Remove every post-logout URI"),
    ] = False,
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="Exact redirect URI (repeatable; replaces the list)")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Free text")] = None,
    admin_client_id: AdminClientId = None,
    admin_client_secret: AdminClientSecret = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Change a registration in place: only the options given (prints it as JSON).

    Only what no issued token depends on: web origins, first-party, post-logout URIs, redirect
    URIs, description.
    """
    from tokenry.v1 import clients_pb2, clients_pb2_grpc

    if (web_origin and no_web_origins) or (
        post_logout_redirect_uri and no_post_logout_redirect_uris
    ):
        raise fail("give a list or its --no-… option, not both", USAGE)
    info = clients_pb2.ClientInfo(client_id=client_id)
    mask: list[str] = []
    if web_origin or no_web_origins:
        info.web_origins.extend(web_origin or [])
        mask.append("web_origins")
    if post_logout_redirect_uri or no_post_logout_redirect_uris:
        info.post_logout_redirect_uris.extend(post_logout_redirect_uri or [])
        mask.append("post_logout_redirect_uris")
    if redirect_uri:
        info.redirect_uris.extend(redirect_uri)
        mask.append("redirect_uris")
    if first_party is not None:
        info.first_party = first_party
        mask.append("first_party")
    if description is not None:
        info.description = description
        mask.append("description")
    if not mask:
        raise fail("nothing to change: give at least one option (see --help)", USAGE)
    found = stack(ctx)
    metadata = _metadata(found, admin_client_id, admin_client_secret, client_secret_file)

    def go(channel: grpc.Channel) -> Any:
        return clients_pb2_grpc.ClientsStub(channel).UpdateClient(
            clients_pb2.UpdateClientRequest(client=info, update_mask=mask),
            metadata=metadata,
            timeout=10,
        )

    typer.echo(json.dumps(_info_dict(call(found.addr("issuer"), go, hint=found.hint())), indent=2))


@app.command("list")
def list_clients(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
    admin_client_id: AdminClientId = None,
    admin_client_secret: AdminClientSecret = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """List registered clients (never their secrets)."""
    from tokenry.v1 import clients_pb2, clients_pb2_grpc

    found = stack(ctx)
    metadata = _metadata(found, admin_client_id, admin_client_secret, client_secret_file)
    addr = found.addr("issuer")

    def go(channel: grpc.Channel) -> Any:
        return clients_pb2_grpc.ClientsStub(channel).ListClients(
            clients_pb2.ListClientsRequest(), metadata=metadata, timeout=10
        )

    clients = [_info_dict(c) for c in call(addr, go, hint=found.hint()).clients]
    if as_json:
        typer.echo(json.dumps(clients, indent=2))
        return
    from rich.table import Table

    table = Table("client_id", "type", "auth", "grants", "scopes", "audiences", "format", box=None)
    for c in clients:
        table.add_row(
            c["client_id"],
            c["client_type"],
            c["token_endpoint_auth_method"],
            " ".join(c["grant_types"]),
            " ".join(c["scopes"]),
            " ".join(c["audiences"]),
            c["token_format"],
        )
    print_wide(table)


@app.command("show")
def show(
    ctx: typer.Context,
    client_id: Annotated[str, typer.Argument(help="The client's id")],
    admin_client_id: AdminClientId = None,
    admin_client_secret: AdminClientSecret = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Print one client as JSON."""
    from tokenry.v1 import clients_pb2, clients_pb2_grpc

    found = stack(ctx)
    metadata = _metadata(found, admin_client_id, admin_client_secret, client_secret_file)
    addr = found.addr("issuer")

    def go(channel: grpc.Channel) -> Any:
        return clients_pb2_grpc.ClientsStub(channel).GetClient(
            clients_pb2.GetClientRequest(client_id=client_id), metadata=metadata, timeout=10
        )

    typer.echo(json.dumps(_info_dict(call(addr, go, hint=found.hint())), indent=2))


@app.command("delete")
def delete(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    client_id: Annotated[str, typer.Argument(help="The client's id")],
    reason: Annotated[str, typer.Option(help="Recorded with the client revocation")] = "",
    admin_client_id: AdminClientId = None,
    admin_client_secret: AdminClientSecret = None,
    client_secret_file: ClientSecretFile = None,
) -> None:
    """Delete a client and revoke every token issued to it."""
    from tokenry.v1 import clients_pb2, clients_pb2_grpc

    found = stack(ctx)
    metadata = _metadata(found, admin_client_id, admin_client_secret, client_secret_file)
    addr = found.addr("issuer")

    def go(channel: grpc.Channel) -> Any:
        return clients_pb2_grpc.ClientsStub(channel).DeleteClient(
            clients_pb2.DeleteClientRequest(
                client_id=client_id, reason=reason, request_id=str(uuid.uuid4())
            ),
            metadata=metadata,
            timeout=10,
        )

    resp = call(addr, go, hint=found.hint())
    typer.echo(json.dumps({"deleted": client_id, "revocation_seq": resp.revocation_seq}))
