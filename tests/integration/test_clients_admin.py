"""The client registry: admin RPCs, the `tokenry client` CLI, cache invalidation by event, and
deleting a client revokes its tokens — against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from typer.testing import CliRunner

from tokenry.cli.main import app as cli_app
from tokenry.servicekit.config import Settings
from tokenry.services.issuer import app as issuer_app
from tokenry.v1 import clients_pb2, issuer_pb2, issuer_pb2_grpc
from tokenry.verifier.errors import RevokedError

from issuer_support import IssuerSuite, issuer_suite, oauth_error
from suite import basic, served

pytestmark = pytest.mark.integration
CC = "client_credentials"


def spec(client_id: str, **fields: Any) -> clients_pb2.ClientInfo:
    base: dict[str, Any] = {
        "client_id": client_id,
        "grant_types": [CC],
        "scopes": ["demo.read"],
        "audiences": ["demo-api"],
    }
    base.update(fields)
    return clients_pb2.ClientInfo(**base)


async def create(s: IssuerSuite, info: clients_pb2.ClientInfo, caller: str = "admin") -> Any:
    return await s.clients.CreateClient(
        clients_pb2.CreateClientRequest(client=info), metadata=s.auth(caller), timeout=10
    )


async def test_admin_registers_lists_and_shows_clients(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as s:
        created = await create(s, spec("svc-new", description="made by a test"))
        secret = created.client_secret
        assert secret.startswith("tkr_cs_") and len(secret) >= 7 + 43  # ≥ 256 bits
        assert created.client.token_endpoint_auth_method == "client_secret_basic"
        row = await pool.fetchrow("SELECT * FROM clients WHERE client_id = 'svc-new'")
        assert secret not in str(dict(row)) and len(row["secret_hash"]) == 64  # keyed hash only
        # The new client works at once.
        token = await s.issuer.Token(
            issuer_pb2.TokenRequest(grant_type=CC),
            metadata=[("authorization", basic("svc-new", secret))],
            timeout=10,
        )
        assert token.scope == "demo.read"
        listed = await s.clients.ListClients(
            clients_pb2.ListClientsRequest(), metadata=s.auth("admin"), timeout=10
        )
        assert "svc-new" in [c.client_id for c in listed.clients]
        assert secret not in str(listed)
        shown = await s.clients.GetClient(
            clients_pb2.GetClientRequest(client_id="svc-new"), metadata=s.auth("admin"), timeout=10
        )
        assert shown.description == "made by a test" and shown.access_token_ttl == 600
        # The registration's event is in the outbox (issuers drop cached copies on it).
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE subject = $1",
                f"{settings.subjects.prefix}.events.clients.created",
            )
            == 1
        )
        # A public client and a private_key_jwt client get no secret.
        spa = await create(
            s,
            spec(
                "spa-new",
                client_type="public",
                grant_types=["authorization_code"],
                redirect_uris=["https://spa.test/cb"],
            ),
        )
        assert not spa.client_secret and spa.client.token_endpoint_auth_method == "none"
        # Only an admin can grant tokenry:* scopes, and an admin can.
        admin2 = await create(s, spec("admin2", scopes=["tokenry:admin"], audiences=["tokenry"]))
        assert list(admin2.client.scopes) == ["tokenry:admin"]


async def test_non_admin_cannot_register_or_read_clients(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        before = await pool.fetchval("SELECT count(*) FROM clients")
        for caller in ("demo", "login"):
            code, error, _ = await oauth_error(create(s, spec("evil"), caller=caller))
            assert (code, error) == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
        code, error, _ = await oauth_error(
            create(s, spec("evil", scopes=["tokenry:admin"]), caller="demo")
        )
        assert error == "insufficient_scope"
        code, _, _ = await oauth_error(
            s.clients.ListClients(clients_pb2.ListClientsRequest(), metadata=s.auth("demo"))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, error, _ = await oauth_error(
            s.clients.CreateClient(clients_pb2.CreateClientRequest(client=spec("x")))
        )
        assert (code, error) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client")
        assert await pool.fetchval("SELECT count(*) FROM clients") == before


async def test_invalid_registrations_write_nothing(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        before = await pool.fetchval("SELECT count(*) FROM clients")
        for info in (
            spec("pw", grant_types=["password"]),
            spec("imp", grant_types=["implicit"]),
            spec("web", grant_types=["authorization_code"]),  # no redirect URI
            spec("web", grant_types=["authorization_code"], redirect_uris=["http://x.test/cb"]),
            spec("pub", client_type="public", grant_types=[CC]),
            spec("ttl", access_token_ttl=3601),
            spec("jwk", token_endpoint_auth_method="private_key_jwt"),
            spec("bad id!"),
            spec("demo"),  # taken
        ):
            _, error, _ = await oauth_error(create(s, info))
            assert error == "invalid_request", info.client_id
        assert await pool.fetchval("SELECT count(*) FROM clients") == before
        assert (
            await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE '%clients%'") == 0
        )


@contextlib.asynccontextmanager
async def second_issuer(settings: Settings) -> AsyncIterator[str]:
    service = issuer_app.build(settings, "127.0.0.1", 0)
    async with served(service, issuer_app.SERVICE_NAMES) as addr:
        yield addr


async def test_deleting_a_client_revokes_its_tokens_everywhere(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s, second_issuer(settings) as other_addr:
        created = await create(s, spec("doomed"))
        metadata = [("authorization", basic("doomed", created.client_secret))]
        request = issuer_pb2.TokenRequest(grant_type=CC)
        token = await s.issuer.Token(request, metadata=metadata, timeout=10)
        async with grpc.aio.insecure_channel(other_addr) as channel:
            other = issuer_pb2_grpc.IssuerStub(channel)
            await other.Token(request, metadata=metadata, timeout=10)  # cached there now
            runtime = await s.verifier("demo-api")
            try:
                await runtime.verifier.verify(token.access_token)
                _, error, _ = await oauth_error(
                    s.clients.DeleteClient(
                        clients_pb2.DeleteClientRequest(client_id="admin"),
                        metadata=s.auth("admin"),
                    )
                )
                assert error == "invalid_request"  # an admin cannot delete itself
                started = time.perf_counter()
                deleted = await s.clients.DeleteClient(
                    clients_pb2.DeleteClientRequest(client_id="doomed", reason="test"),
                    metadata=s.auth("admin"),
                    timeout=10,
                )
                await asyncio.wait_for(
                    runtime.state.wait_for_seq(deleted.revocation_seq), timeout=10
                )
                with pytest.raises(RevokedError):
                    await runtime.verifier.verify(token.access_token)
                # The clients.deleted event is a tokenry.v1.Event to verifiers too: their
                # sequence stays gap-free across it.
                client_seq = await pool.fetchval(
                    "SELECT seq FROM outbox WHERE subject LIKE '%.events.clients.deleted'"
                )
                assert client_seq > deleted.revocation_seq
                await asyncio.wait_for(runtime.state.wait_for_seq(client_seq), timeout=10)
            finally:
                await runtime.close()
            # The other issuer drops its cached copy on the event (its TTL is only the backup).
            while True:
                try:
                    await other.Token(request, metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                        break
                assert time.perf_counter() - started < 30, "the other issuer kept the client"
                await asyncio.sleep(0.02)
            print(
                f"\nclient deleted → refused by another issuer after {time.perf_counter() - started:.3f} s"
            )
        code, error, _ = await oauth_error(s.issuer.Token(request, metadata=metadata, timeout=10))
        assert (code, error) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client")
        code, error, _ = await oauth_error(
            s.clients.GetClient(
                clients_pb2.GetClientRequest(client_id="doomed"), metadata=s.auth("admin")
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM revocations WHERE kind = 'client' AND value = 'doomed'"
            )
            == 1
        )


async def test_cli_bootstrap_admin_then_manage_clients(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Any
) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as s:
        pepper = next(iter(settings.peppers.values()))
        env = {
            "TOKENRY_HOME": str(tmp_path),
            "TOKENRY_DATABASE_URL": settings.database_url,
            "TOKENRY_SECRET_PEPPER": pepper.key.decode(),
            "TOKENRY_ISSUER_ADDR": s.suite.addrs["issuer"],
            "TOKENRY_CLIENT_ID": "",
            "TOKENRY_CLIENT_SECRET": "",
        }
        runner = CliRunner()

        async def cli(*args: str) -> Any:
            # The CLI is synchronous gRPC: run it off the loop that serves the issuer.
            return await asyncio.to_thread(runner.invoke, cli_app, list(args), env=env)

        boot = await cli("client", "create", "root", "--bootstrap-admin")
        assert boot.exit_code == 0, boot.output
        root = json.loads(boot.stdout)
        again = await cli("client", "create", "root", "--bootstrap-admin")
        assert again.exit_code == 1 and "already exists" in again.output

        auth = ["--admin-client-id", "root", "--admin-client-secret", root["client_secret"]]
        made = await cli(
            "client", "create", "cli-svc", "--scope", "demo.read", "--audience", "demo-api",
            "--format", "opaque", *auth,
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        cli_secret = json.loads(made.stdout)["client_secret"]
        assert cli_secret.startswith("tkr_cs_")
        issued = await cli(
            "token", "issue", "--client-id", "cli-svc", "--client-secret", cli_secret,
            "--format", "opaque",
        )  # fmt: skip
        assert issued.exit_code == 0, issued.output
        assert json.loads(issued.stdout)["access_token"].startswith("tkr_at_")
        listed = await cli("client", "list", "--json", *auth)
        assert listed.exit_code == 0, listed.output
        ids = [c["client_id"] for c in json.loads(listed.stdout)]
        assert {"root", "cli-svc", "demo"} <= set(ids)
        shown = await cli("client", "show", "cli-svc", *auth)
        assert json.loads(shown.stdout)["token_format"] == "opaque"
        denied = await cli(
            "client", "list", "--admin-client-id", "demo", "--admin-client-secret", s.secret("demo")
        )
        assert denied.exit_code == 1 and "insufficient_scope" in denied.output
        gone = await cli("client", "delete", "cli-svc", *auth)
        assert gone.exit_code == 0 and json.loads(gone.stdout)["deleted"] == "cli-svc"
        missing = await cli("client", "show", "cli-svc", *auth)
        assert missing.exit_code == 1 and "not_found" in missing.output
        assert "Traceback" not in missing.output
