"""Test helpers: the HTTP gateway in-process on port 0 beside the gRPC suite, against the real
PostgreSQL and NATS of tests/conftest.py (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import httpx
from assertion_support import public_jwks, sign_assertion
from cryptography.hazmat.primitives.asymmetric import ec

from tokenry.core import pkce
from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    INTROSPECT_SCOPE,
    LOGIN_SCOPE,
    NO_AUTH,
    PUBLIC,
    REFRESH_TOKEN,
    Client,
    private_key_jwt_client,
    with_secret,
)
from tokenry.servicekit.config import Settings
from tokenry.services.gateway.app import GatewayOptions, build
from tokenry.services.gateway.users import UserStore
from tokenry.store.clients import ClientStore
from tokenry.store.outbox_feed import AppliedSeq

from suite import Suite, run_suite

REDIRECT = "https://app.test/cb"
#: the single-page app's origin (client "spa": CORS) and the RP's post-logout page ("web")
SPA_ORIGIN = "https://spa.test"
LOGGED_OUT = "https://app.test/logged-out"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CHALLENGE = pkce.s256_challenge(VERIFIER)
ASSERTION_KEY = ec.generate_private_key(ec.SECP256R1())
USER, PASSWORD = "alice", "correct horse battery"


def client_assertion(client_id: str, aud: Any) -> str:
    return sign_assertion(client_id, aud, ASSERTION_KEY)


def gateway_clients() -> list[Client]:
    base: dict[str, Any] = {"secret_hash": None, "pepper_id": None}
    return [
        Client(
            client_id="web",
            **base,
            grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
            scopes=frozenset({"openid", "read", "write"}),
            audiences=("api",),
            redirect_uris=(REDIRECT, "http://127.0.0.1/cb"),
            description="Web Portal",
            post_logout_redirect_uris=(LOGGED_OUT,),
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
            web_origins=(SPA_ORIGIN,),
        ),
        Client(
            client_id="first",  # first-party: no consent page (docs/gateway.md)
            **base,
            grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
            scopes=frozenset({"openid", "read", "write"}),
            audiences=("api",),
            redirect_uris=(REDIRECT,),
            description="Tokenry Console",
            first_party=True,
        ),
        Client(
            client_id="opaque-svc",
            **base,
            grant_types=frozenset({CLIENT_CREDENTIALS}),
            scopes=frozenset({"demo.read"}),
            audiences=("demo-api",),
            token_format="opaque",
        ),
        private_key_jwt_client(
            "jwtsvc",
            public_jwks(ASSERTION_KEY),
            scopes={"read", INTROSPECT_SCOPE},
            audiences=("api",),
        ),
        Client(
            client_id="api",  # a resource server that introspects its own tokens
            **base,
            grant_types=frozenset({CLIENT_CREDENTIALS}),
            scopes=frozenset({INTROSPECT_SCOPE}),
            audiences=(),
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
class GatewaySuite:
    suite: Suite
    url: str
    http: httpx.AsyncClient
    applied: AppliedSeq
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.suite.settings

    def basic(self, client_id: str) -> httpx.BasicAuth:
        return httpx.BasicAuth(client_id, self.secrets[client_id])

    async def token(self, client_id: str = "demo", **form: Any) -> httpx.Response:
        form.setdefault("grant_type", "client_credentials")
        return await self.http.post("/oauth2/token", data=form, auth=self.basic(client_id))

    async def introspect(self, token: str, caller: str = "demo-api") -> httpx.Response:
        return await self.http.post(
            "/oauth2/introspect", data={"token": token}, auth=self.basic(caller)
        )

    async def revoke(self, token: str, caller: str = "demo", **form: Any) -> httpx.Response:
        return await self.http.post(
            "/oauth2/revoke", data={"token": token, **form}, auth=self.basic(caller)
        )


def authorize_url(**overrides: str) -> str:
    """An authorization request of client ``web`` for alice's browser (override any field)."""
    params = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": REDIRECT,
        "scope": "openid read",
        "state": "st&=/ é",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "nonce": "n-1",
    }
    params.update(overrides)
    return "/oauth2/authorize?" + urlencode(params)


def query(location: str) -> dict[str, str]:
    """The query parameters of a redirect's Location."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def redeem(
    g: GatewaySuite, code: str, client_id: str = "web", **request: Any
) -> httpx.Response:
    """The token request of the code grant (a public client sends only its client_id);
    ``request``: more of httpx's arguments (headers, say)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    }
    if client_id in g.secrets:
        return await g.http.post("/oauth2/token", data=form, auth=g.basic(client_id), **request)
    return await g.http.post("/oauth2/token", data={**form, "client_id": client_id}, **request)


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a rendered form (what a browser would post back)."""
    return {
        html.unescape(m.group(1)): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    }


async def browser_login(
    http: httpx.AsyncClient,
    authorize_url: str,
    *,
    user: str = USER,
    password: str = PASSWORD,
    scopes: list[str] | None = None,
    decision: str = "allow",
) -> httpx.Response:
    """Drive the login and consent pages as a browser would; returns the final redirect."""
    page = await http.get(authorize_url)
    assert page.status_code == 200, page.text
    login = await http.post(
        "/oauth2/login",
        data={**hidden_fields(page.text), "username": user, "password": password},
    )
    assert login.status_code == 200, login.text
    fields = hidden_fields(login.text)
    granted = scopes if scopes is not None else fields["scope"].split()
    form: dict[str, Any] = {**fields, "grant_scope": granted, "decision": decision}
    return await http.post("/oauth2/consent", data=form)


async def register(pool: asyncpg.Pool, settings: Settings, secrets_out: dict[str, str]) -> None:
    pepper = next(iter(settings.peppers.values()))
    store = ClientStore(pool)
    for spec in gateway_clients():
        client = spec
        if spec.auth_method in ("client_secret_basic", "client_secret_post"):
            secret = secrets.token_urlsafe(32)
            secrets_out[spec.client_id] = secret
            client = with_secret(spec, secret, pepper)
        await store.upsert(client)


async def wait_ready(http: httpx.AsyncClient, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/health/ready")).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError("the gateway did not become ready")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def gateway_suite(
    settings: Settings,
    pool: asyncpg.Pool,
    services: tuple[str, ...] = ("keyrotator",),
    login_url: str = "",
) -> AsyncIterator[GatewaySuite]:
    """The gRPC services named (the key rotator makes the keys) and the gateway
    (``login_url``: TOKENRY_LOGIN_URL, an external login app)."""
    async with run_suite(settings, pool, services=services) as suite:
        await register(pool, settings, suite.secrets)
        applied = AppliedSeq()
        users = UserStore()
        users.add(USER, PASSWORD)
        gateway = build(
            settings,
            "127.0.0.1",
            0,
            applied=applied,
            options=GatewayOptions(users=users, login_url=login_url),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.serve(stop))
        url = f"http://127.0.0.1:{gateway.port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                await wait_ready(http)
                yield GatewaySuite(suite, url, http, applied, suite.secrets)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)


__all__ = [
    "ASSERTION_KEY",
    "CHALLENGE",
    "LOGGED_OUT",
    "SPA_ORIGIN",
    "CLIENT_ASSERTION_TYPE",
    "PASSWORD",
    "REDIRECT",
    "USER",
    "VERIFIER",
    "GatewaySuite",
    "authorize_url",
    "client_assertion",
    "browser_login",
    "gateway_suite",
    "hidden_fields",
    "query",
    "redeem",
]
