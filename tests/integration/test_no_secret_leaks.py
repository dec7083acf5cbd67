"""Secrets never leak (issue 13 item 7; docs/spec.md §7): one test feeds known secrets, tokens and
private keys through every path — each RPC of the four services, right and wrong, the CLI,
error replies, logs at DEBUG (through the services' own JSON formatter) and the exceptions a
caller sees — and greps every output for each of them.

Outputs that carry a secret by design are not searched for *that* secret: the Token response
carries the token it issues, CreateClient the secret it generates, and `tokenry token issue`
prints its token. Everything else — logs, error details, trailing metadata, exception reprs,
any other response, the CLI's stderr — must hold none of them, in clear, as a Basic header or
as a token segment.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from assertion_support import public_jwks, sign_assertion
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.clients import private_key_jwt_client
from tokenry.servicekit.config import Settings
from tokenry.servicekit.logging import JsonFormatter
from tokenry.store.clients import ClientStore
from tokenry.v1 import (
    clients_pb2,
    clients_pb2_grpc,
    introspector_pb2,
    introspector_pb2_grpc,
    issuer_pb2,
    issuer_pb2_grpc,
    keyrotator_pb2,
    keyrotator_pb2_grpc,
    revocation_pb2,
    revocation_pb2_grpc,
)

from suite import basic, run_suite

pytestmark = pytest.mark.integration

TOKENRY = str(Path(sys.executable).with_name("tokenry"))
JWT_KEY = ec.generate_private_key(ec.SECP256R1())
JWT_KEY_PEM = JWT_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


class Secrets:
    """Every secret fed in, and the forms it could leak in."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, name: str, value: str) -> str:
        self.values[name] = value
        return value

    def forms(self, exclude: frozenset[str] = frozenset()) -> Iterator[tuple[str, str]]:
        for name, value in self.values.items():
            if name in exclude:
                continue
            yield name, value
            if value.count(".") == 2:  # a JWS: its segments (the signature, the payload)
                for i, segment in enumerate(value.split(".")):
                    if len(segment) >= 16:
                        yield f"{name}[segment {i}]", segment
            if len(value) >= 12:
                yield f"{name}[base64]", base64.b64encode(value.encode()).decode()

    def leaks(self, where: str, text: str, exclude: frozenset[str] = frozenset()) -> list[str]:
        return [f"{name} leaked in {where}" for name, form in self.forms(exclude) if form in text]


class Outputs:
    """Everything a path produced, with the secrets it may carry by design."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, frozenset[str]]] = []

    def add(self, where: str, text: str, exclude: frozenset[str] = frozenset()) -> None:
        self.items.append((where, text, exclude))

    def error(self, where: str, exc: grpc.aio.AioRpcError) -> None:
        self.add(f"{where}: details", exc.details() or "")
        self.add(f"{where}: debug", exc.debug_error_string() or "")
        self.add(f"{where}: trailers", repr(exc.trailing_metadata()))
        self.add(f"{where}: str/repr", f"{exc!s} {exc!r}")


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Every record at DEBUG, through the services' JSON formatter, exceptions included."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter("leak-test"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def _register_jwt_client(pool: asyncpg.Pool) -> None:
    jwks = public_jwks(JWT_KEY, kid="leak-1")
    await ClientStore(pool).upsert(
        private_key_jwt_client("jwt-svc", jwks, scopes={"demo.read"}, audiences=("demo-api",))
    )


def _assertion(issuer: str) -> str:
    return sign_assertion("jwt-svc", issuer, JWT_KEY, kid="leak-1")


async def _call(outputs: Outputs, where: str, rpc: Callable[[], Awaitable[Any]]) -> Any:
    """Run one RPC; record its error (if any) or its response."""
    try:
        response = await rpc()
    except grpc.aio.AioRpcError as exc:
        outputs.error(where, exc)
        return None
    if hasattr(response, "__aiter__"):
        response = [m async for m in response]
    outputs.add(f"{where}: response", str(response))
    return response


async def test_no_secret_leaks_through_any_path(
    settings: Settings, pool: asyncpg.Pool, debug_logs: io.StringIO, tmp_path: Path
) -> None:
    found = Secrets()
    outputs = Outputs()
    found.add("kek", settings.kek.key.hex() if settings.kek else "")
    for pepper in settings.peppers.values():
        found.add(f"pepper {pepper.id}", pepper.key.decode(errors="replace"))
    found.add("jwt client private key", JWT_KEY_PEM.split("\n")[1])  # a line of the PEM body
    wrong = found.add("wrong secret", "tkr_cs_" + "W" * 20 + uuid.uuid4().hex)
    garbage = found.add("garbage token", "tkr_at_" + uuid.uuid4().hex + "G" * 20)
    challenge = found.add("login challenge", "tkr_lc_" + uuid.uuid4().hex + "C" * 12)
    await _register_jwt_client(pool)

    async with run_suite(
        settings, pool, ("keyrotator", "issuer", "revocation", "introspector")
    ) as suite:
        demo = found.add("demo secret", suite.secrets["demo"])
        admin = found.add("admin secret", suite.secrets["admin"])
        found.add("demo-api secret", suite.secrets["demo-api"])
        found.add("demo basic header", basic("demo", demo))
        issuer = issuer_pb2_grpc.IssuerStub(suite.channel("issuer"))
        clients = clients_pb2_grpc.ClientsStub(suite.channel("issuer"))
        introspector = introspector_pb2_grpc.IntrospectorStub(suite.channel("introspector"))
        revocation = revocation_pb2_grpc.RevocationStub(suite.channel("revocation"))
        keys = keyrotator_pb2_grpc.KeyRotatorStub(suite.channel("keyrotator"))
        good = (("authorization", basic("demo", demo)),)
        bad = (("authorization", basic("demo", wrong)),)
        admin_md = (("authorization", basic("admin", admin)),)
        admin_bad = (("authorization", basic("admin", wrong)),)
        rs_md = (("authorization", basic("demo-api", suite.secrets["demo-api"])),)
        cc = issuer_pb2.TokenRequest(grant_type="client_credentials")

        # --- issuer: Token, right and wrong, every client authentication method -------------
        jwt_resp = await issuer.Token(cc, metadata=good, timeout=10)
        access = found.add("access token (jwt)", jwt_resp.access_token)
        opaque_req = issuer_pb2.TokenRequest(grant_type="client_credentials", token_format="opaque")
        opaque_resp = await issuer.Token(opaque_req, metadata=good, timeout=10)
        opaque = found.add("access token (opaque)", opaque_resp.access_token)
        await _call(
            outputs, "Token wrong basic", lambda: issuer.Token(cc, metadata=bad, timeout=10)
        )
        post = issuer_pb2.TokenRequest(
            grant_type="client_credentials", client_id="demo", client_secret=wrong
        )
        await _call(outputs, "Token wrong post", lambda: issuer.Token(post, timeout=10))
        malformed = (("authorization", "Basic " + wrong),)
        await _call(
            outputs,
            "Token malformed basic",
            lambda: issuer.Token(cc, metadata=malformed, timeout=10),
        )
        both = issuer_pb2.TokenRequest(grant_type="client_credentials", client_secret=wrong)
        await _call(
            outputs, "Token two methods", lambda: issuer.Token(both, metadata=good, timeout=10)
        )
        assertion = found.add("client assertion", _assertion(settings.issuer_url))
        pkjwt = issuer_pb2.TokenRequest(
            grant_type="client_credentials",
            client_assertion_type=CLIENT_ASSERTION_TYPE,
            client_assertion=assertion,
        )
        first = await _call(
            outputs, "Token private_key_jwt", lambda: issuer.Token(pkjwt, timeout=10)
        )
        assert first is not None
        found.add("access token (pkjwt)", first.access_token)
        outputs.items.pop()  # that response carries its own token by design
        await _call(outputs, "Token replayed assertion", lambda: issuer.Token(pkjwt, timeout=10))
        exchange = issuer_pb2.TokenRequest(
            grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
            subject_token=access,
            subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        )
        await _call(
            outputs,
            "Token exchange refused",
            lambda: issuer.Token(exchange, metadata=good, timeout=10),
        )
        refresh = issuer_pb2.TokenRequest(grant_type="refresh_token", refresh_token=garbage)
        await _call(
            outputs, "Token bad refresh", lambda: issuer.Token(refresh, metadata=good, timeout=10)
        )
        await _call(
            outputs,
            "Authorize bad",
            lambda: issuer.Authorize(
                issuer_pb2.AuthorizeRequest(client_id="demo", redirect_uri=garbage), timeout=10
            ),
        )
        await _call(
            outputs,
            "CompleteAuthorization bogus challenge",
            lambda: issuer.CompleteAuthorization(
                issuer_pb2.CompleteAuthorizationRequest(login_challenge=challenge, subject="u"),
                metadata=admin_md,
                timeout=10,
            ),
        )

        # --- client registry admin RPCs -----------------------------------------------------
        created = await clients.CreateClient(
            clients_pb2.CreateClientRequest(
                client=clients_pb2.ClientInfo(
                    client_id="leak-new",
                    grant_types=["client_credentials"],
                    scopes=["demo.read"],
                    audiences=["demo-api"],
                )
            ),
            metadata=admin_md,
            timeout=10,
        )
        found.add("generated secret", created.client_secret)
        for where, rpc in {
            "GetClient": lambda: clients.GetClient(
                clients_pb2.GetClientRequest(client_id="leak-new"), metadata=admin_md, timeout=10
            ),
            "ListClients": lambda: clients.ListClients(
                clients_pb2.ListClientsRequest(), metadata=admin_md, timeout=10
            ),
            "ListClients wrong secret": lambda: clients.ListClients(
                clients_pb2.ListClientsRequest(), metadata=admin_bad, timeout=10
            ),
            "DeleteClient wrong secret": lambda: clients.DeleteClient(
                clients_pb2.DeleteClientRequest(client_id="leak-new"),
                metadata=admin_bad,
                timeout=10,
            ),
        }.items():
            await _call(outputs, where, rpc)

        # --- introspector ----------------------------------------------------------------------
        for where, token, md in (
            ("Introspect jwt", access, rs_md),
            ("Introspect opaque", opaque, rs_md),
            ("Introspect garbage", garbage, rs_md),
            ("Introspect wrong caller secret", access, bad),
            ("Introspect without the scope", access, good),
        ):
            await _call(
                outputs,
                where,
                functools.partial(
                    introspector.Introspect,
                    introspector_pb2.IntrospectRequest(token=token),
                    metadata=md,
                    timeout=10,
                ),
            )

        # --- revocation service ----------------------------------------------------------------
        for where, request, md in (
            ("Revoke garbage", revocation_pb2.RevokeRequest(token=garbage), good),
            ("Revoke wrong secret", revocation_pb2.RevokeRequest(token=access), bad),
            ("Revoke jti without admin", revocation_pb2.RevokeRequest(jti="x" * 22), good),
            ("Revoke opaque", revocation_pb2.RevokeRequest(token=opaque), good),
            ("Revoke jwt", revocation_pb2.RevokeRequest(token=access), good),
        ):
            await _call(
                outputs,
                where,
                functools.partial(revocation.Revoke, request, metadata=md, timeout=10),
            )
        await _call(
            outputs,
            "ListRevocations",
            lambda: _drain(revocation.ListRevocations(revocation_pb2.ListRevocationsRequest())),
        )
        await _call(outputs, "GetHead", lambda: revocation.GetHead(revocation_pb2.GetHeadRequest()))

        # --- key rotator -----------------------------------------------------------------------
        await _call(outputs, "GetJwks", lambda: keys.GetJwks(keyrotator_pb2.GetJwksRequest()))
        for where, md in (("ListKeys", admin_md), ("ListKeys wrong secret", admin_bad)):
            await _call(
                outputs,
                where,
                functools.partial(
                    keys.ListKeys, keyrotator_pb2.ListKeysRequest(), metadata=md, timeout=10
                ),
            )
        await _call(
            outputs,
            "Rotate wrong secret",
            lambda: keys.Rotate(keyrotator_pb2.RotateRequest(use="access"), metadata=admin_bad),
        )
        await _call(
            outputs,
            "RevokeKey unknown",
            lambda: keys.RevokeKey(
                keyrotator_pb2.RevokeKeyRequest(kid="no-such-kid", reason="leak test"),
                metadata=admin_bad,
            ),
        )

        # --- the CLI (DEBUG logging), against the same services ---------------------------------
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TOKENRY_")},
            "TOKENRY_HOME": str(tmp_path / "home"),
            "TOKENRY_LOG_LEVEL": "DEBUG",
            "TOKENRY_ISSUER_ADDR": suite.addrs["issuer"],
            "TOKENRY_INTROSPECTOR_ADDR": suite.addrs["introspector"],
            "TOKENRY_REVOCATION_ADDR": suite.addrs["revocation"],
            "TOKENRY_KEYROTATOR_ADDR": suite.addrs["keyrotator"],
        }
        secret_file = tmp_path / "wrong-secret"
        secret_file.write_text(wrong)
        from_file = ["--client-secret-file", str(secret_file)]
        for args, stdin in (
            (["token", "issue", "--client-id", "demo", *from_file], ""),
            (["token", "introspect", "-", "--client-id", "demo-api", *from_file], access),
            (["token", "revoke", "-", "--client-id", "demo", *from_file], access),
            (["token", "introspect", garbage, "--client-id", "demo", "--client-secret", wrong], ""),
            (["keys", "rotate", "--client-id", "admin", *from_file], ""),
            (["client", "list", "--client-id", "admin", *from_file], ""),
        ):
            # Not subprocess.run: the services answer on this test's event loop, which a
            # blocking wait would stall (every call would then end as "unreachable").
            returncode, stdout, stderr = await _run_cli(args, env, stdin)
            # The wrong secret reached the service and was refused: an answer, not a timeout.
            assert returncode != 0, (args, stderr)
            assert "unreachable" not in stderr and "invalid_client" in stderr, (args, stderr)
            outputs.add(f"CLI {args[:2]} stdout", stdout)
            outputs.add(f"CLI {args[:2]} stderr", stderr)

    # --- exceptions and reprs of the request objects that carry credentials -------------------
    from tokenry.core.clientauth import BasicHeader, ClientCredentials, credentials_from

    outputs.add(
        "ClientCredentials repr", repr(ClientCredentials("demo", wrong, "client_secret_post"))
    )
    outputs.add("BasicHeader repr", repr(BasicHeader(basic("demo", wrong))))
    outputs.add("credentials_from repr", repr(credentials_from(basic("demo", wrong), "", "")))
    try:
        credentials_from("Basic " + wrong, "demo", "")
    except Exception as exc:
        outputs.add("credentials_from exception", f"{exc!s} {exc!r}")

    # Controls: the capture sees DEBUG messages of the services' loggers, and the grep finds a
    # secret (and a JWT's signature alone) where there is one.
    logging.getLogger("tokenry.services.leaktest").debug("control %s", "LEAK-CONTROL-7f3a")
    logs = debug_logs.getvalue()
    assert "LEAK-CONTROL-7f3a" in logs
    assert len(logs.splitlines()) > 20, "the services logged nothing at DEBUG"
    assert found.leaks("control", f"x{wrong}y")
    assert found.leaks("control", access.rsplit(".", 1)[1])
    outputs.add("logs at DEBUG", logs)
    assert len(outputs.items) > 40
    leaks = [leak for item in outputs.items for leak in found.leaks(*item)]
    assert not leaks, "\n".join(leaks)


async def _run_cli(args: list[str], env: dict[str, str], stdin: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        TOKENRY,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _drain(call: Any) -> list[Any]:
    return [m async for m in call]
