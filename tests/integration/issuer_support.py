"""Shared helpers for the issuer's integration tests (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tokenry.core import pkce
from tokenry.core.client_secrets import hash_secret
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    LOGIN_SCOPE,
    NO_AUTH,
    PRIVATE_KEY_JWT,
    PUBLIC,
    REFRESH_TOKEN,
    TOKEN_EXCHANGE,
    Client,
)
from tokenry.servicekit.config import Settings
from tokenry.servicekit.status import oauth_error_of
from tokenry.store.clients import ClientStore
from tokenry.v1 import clients_pb2_grpc, issuer_pb2, issuer_pb2_grpc
from tokenry.verifier import VerifierRuntime, start_verifier

from suite import Suite, basic, run_suite

REDIRECT = "https://app.test/cb"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CHALLENGE = pkce.s256_challenge(VERIFIER)
ASSERTION_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwks() -> str:
    jwk = json.loads(ECAlgorithm.to_jwk(ASSERTION_KEY.public_key()))
    jwk.update(kid="k1", alg="ES256")
    return json.dumps({"keys": [jwk]})


def extra_clients() -> list[Client]:
    """The issuer tests' clients, beside the suite's demo/admin/other."""
    base: dict[str, Any] = {"secret_hash": None, "pepper_id": None}
    return [
        Client(
            client_id="web",
            **base,
            grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
            scopes=frozenset({"openid", "read", "write"}),
            audiences=("api",),
            # loopback URIs for RFC 8252 §7.3 (any port) and §8.3 (localhost: exact)
            redirect_uris=(
                REDIRECT,
                "http://127.0.0.1:8123/cb?x=1",
                "http://[::1]/native",
                "http://localhost:8123/cb",
            ),
        ),
        Client(
            client_id="web-opaque",
            **base,
            grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
            scopes=frozenset({"read", "write"}),
            audiences=("api",),
            redirect_uris=(REDIRECT,),
            token_format="opaque",
        ),
        Client(
            client_id="spa",
            **base,
            grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
            scopes=frozenset({"openid", "read"}),
            audiences=("api",),
            redirect_uris=(REDIRECT,),
            client_type=PUBLIC,
            auth_method=NO_AUTH,
        ),
        # A user-facing app whose tokens are meant for svc-a (and its downstream svc-b) too, so
        # svc-a may exchange them (RFC 8693 §2.1, RFC 8725 §3.9: a subject token's aud names
        # the exchanging client or one of its registered audiences).
        Client(
            client_id="portal",
            **base,
            grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
            scopes=frozenset({"openid", "read", "write"}),
            audiences=("api", "svc-a", "svc-b"),
            redirect_uris=(REDIRECT,),
        ),
        Client(
            client_id="portal-opaque",
            **base,
            grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
            scopes=frozenset({"read", "write"}),
            audiences=("api", "svc-a", "svc-b"),
            redirect_uris=(REDIRECT,),
            token_format="opaque",
        ),
        Client(
            client_id="jwtsvc",
            **base,
            grant_types=frozenset({CLIENT_CREDENTIALS}),
            scopes=frozenset({"read"}),
            audiences=("api",),
            auth_method=PRIVATE_KEY_JWT,
            jwks_json=_jwks(),
        ),
        Client(
            client_id="svc-a",
            **base,
            grant_types=frozenset({TOKEN_EXCHANGE, CLIENT_CREDENTIALS}),
            scopes=frozenset({"read", "write"}),
            audiences=("svc-b",),
            token_exchange_from=frozenset({"web", "web-opaque", "portal", "portal-opaque"}),
        ),
        Client(
            client_id="login",
            **base,
            grant_types=frozenset({CLIENT_CREDENTIALS}),
            scopes=frozenset({LOGIN_SCOPE}),
            audiences=("tokenry",),
        ),
    ]


@dataclass
class IssuerSuite:
    suite: Suite
    pool: asyncpg.Pool

    @property
    def settings(self) -> Settings:
        return self.suite.settings

    def secret(self, client_id: str) -> str:
        return self.suite.secrets[client_id]

    def auth(self, client_id: str) -> list[tuple[str, str]]:
        return [("authorization", basic(client_id, self.secret(client_id)))]

    @property
    def issuer(self) -> issuer_pb2_grpc.IssuerStub:
        return issuer_pb2_grpc.IssuerStub(self.suite.channel("issuer"))

    @property
    def clients(self) -> clients_pb2_grpc.ClientsStub:
        return clients_pb2_grpc.ClientsStub(self.suite.channel("issuer"))

    @staticmethod
    def req(**fields: Any) -> issuer_pb2.TokenRequest:
        return issuer_pb2.TokenRequest(**fields)

    def token(self, auth: str | None = None, **fields: Any) -> Any:
        """A Token call authenticated as ``auth`` with client_secret_basic (a public client:
        pass ``client_id=`` instead). Returns the call: await it, or hand it to oauth_error."""
        metadata = self.auth(auth) if auth else []
        return self.issuer.Token(issuer_pb2.TokenRequest(**fields), metadata=metadata, timeout=10)

    async def authorize(self, **fields: Any) -> issuer_pb2.AuthorizeResponse:
        request: dict[str, Any] = {
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": REDIRECT,
            "scope": "openid read",
            "state": "st&=/ é",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
            "nonce": "n-0S6_WzA2Mj",
        }
        request.update(fields)
        return await self.issuer.Authorize(issuer_pb2.AuthorizeRequest(**request), timeout=10)

    async def complete(
        self,
        challenge: str,
        granted_scope: str = "",
        subject: str = "alice",
        caller: str = "login",
        **fields: Any,
    ) -> issuer_pb2.AuthorizeResponse:
        """The login app's answer; the granted set is explicit (empty grants nothing)."""
        return await self.issuer.CompleteAuthorization(
            issuer_pb2.CompleteAuthorizationRequest(
                login_challenge=challenge, subject=subject, granted_scope=granted_scope, **fields
            ),
            metadata=self.auth(caller),
            timeout=10,
        )

    async def code(self, client_id: str = "web", **fields: Any) -> str:
        """Run the front channel for ``alice``; returns the code from the redirect."""
        started = await self.authorize(client_id=client_id, **fields)
        assert started.login_challenge, started.error_description
        done = await self.complete(started.login_challenge, started.requested_scope)
        return query(done.redirect_to)["code"]

    async def code_tokens(
        self, client_id: str = "web", scope: str = "openid read", **fields: Any
    ) -> issuer_pb2.TokenResponse:
        code = await self.code(client_id, scope=scope)
        public = client_id not in self.suite.secrets
        return await until_available(
            lambda: self.token(
                None if public else client_id,
                grant_type="authorization_code",
                code=code,
                redirect_uri=REDIRECT,
                code_verifier=VERIFIER,
                client_id=client_id if public else "",
                **fields,
            )
        )

    async def verifier(self, audience: str = "api") -> VerifierRuntime:
        runtime = await start_verifier(
            issuer=self.settings.issuer_url,
            audience=audience,
            keyrotator_addr=self.suite.addrs["keyrotator"],
            revocation_addr=self.suite.addrs["revocation"],
            nats_url=self.settings.nats_url,
            subjects=self.settings.subjects,
            stream=self.settings.stream.name,
        )
        await asyncio.wait_for(runtime.state.wait_current(), timeout=20)
        return runtime


def query(uri: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(uri).query, keep_blank_values=True).items()}


async def until_available(make: Any, timeout: float = 20.0) -> Any:
    """Retry ``make()`` while the issuer answers UNAVAILABLE (e.g. an ID key not loaded yet)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await make()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def oauth_error(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str, str]:
    """The gRPC code, OAuth error code and description of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    detail = oauth_error_of(err.value)
    assert detail is not None, "every error carries an OAuthError detail"
    return err.value.code(), detail.error, detail.error_description


async def register(pool: asyncpg.Pool, settings: Settings, suite: Suite) -> None:
    pepper = next(iter(settings.peppers.values()))
    store = ClientStore(pool)
    for spec in extra_clients():
        client = spec
        if spec.auth_method in ("client_secret_basic", "client_secret_post"):
            secret = secrets.token_urlsafe(32)
            suite.secrets[spec.client_id] = secret
            client = replace(spec, secret_hash=hash_secret(pepper, secret), pepper_id=pepper.id)
        await store.upsert(client)


@contextlib.asynccontextmanager
async def issuer_suite(
    settings: Settings,
    pool: asyncpg.Pool,
    services: tuple[str, ...] = ("keyrotator", "revocation", "issuer"),
) -> AsyncIterator[IssuerSuite]:
    async with run_suite(settings, pool, services=services) as suite:
        await register(pool, settings, suite)
        yield IssuerSuite(suite, pool)


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows per table the issuer writes: proves a refused request wrote nothing."""
    out = {}
    for table in ("grants", "opaque_tokens", "auth_codes", "auth_requests", "revocations"):
        out[table] = await pool.fetchval(f"SELECT count(*) FROM {table}")
    out["outbox"] = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE subject NOT LIKE '%keys%'"
    )
    return out
