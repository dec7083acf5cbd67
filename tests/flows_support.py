"""Build :mod:`tokenry.flows` over any set of storage ports, with no server (no tests here).

Used by the flow unit tests (over :class:`tokenry.store.memory.MemoryStore`) and by the contract
suite (over memory and PostgreSQL alike).
"""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from tokenry.core import pkce
from tokenry.core.authorize import AuthorizationRequest
from tokenry.core.client_secrets import Pepper, pepper_id
from tokenry.core.clientauth import POST, AssertionContext, ClientCredentials
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    LOGIN_SCOPE,
    REFRESH_TOKEN,
    Client,
    secret_client,
)
from tokenry.core.clock import FakeClock
from tokenry.core.errors import UnsupportedGrantType
from tokenry.core.refresh import derivation_key
from tokenry.core.signing import SigningKey, generate_private_key
from tokenry.flows import (
    Completion,
    IssuerDeps,
    Minter,
    TokenEndpoint,
    TokenRequest,
    TokenResult,
    Watermarks,
)
from tokenry.store.memory import MemoryStore
from tokenry.store.ports import (
    AccessTokenWriter,
    AssertionReplay,
    AuthorizeRequestStorage,
    ClientLookup,
    RevocationLog,
    Transactional,
)

ISSUER = "https://issuer.test"
REDIRECT = "https://app.test/cb"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
SECRET = "tkr_cs_" + "s" * 43
PEPPER_KEY = b"p" * 32
PEPPER = Pepper(pepper_id(PEPPER_KEY), PEPPER_KEY)


def clock() -> FakeClock:
    """A clock tests move by hand, starting at the real time (PostgreSQL's clock decides which
    recorded revocations are live)."""
    return FakeClock(float(int(time.time())))


def _client(client_id: str, grants: frozenset[str], **fields: Any) -> Client:
    return secret_client(
        client_id, SECRET, PEPPER, grant_types=grants, audiences=("api",), **fields
    )


def clients() -> list[Client]:
    """``svc`` (client credentials, JWT and opaque), ``web`` and ``web-opaque`` (code + refresh),
    ``login`` (the login app that completes authorizations)."""
    code = frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN})
    return [
        _client("svc", frozenset({CLIENT_CREDENTIALS}), scopes=frozenset({"read", "write"})),
        _client("web", code, scopes=frozenset({"openid", "read"}), redirect_uris=(REDIRECT,)),
        _client(
            "web-opaque",
            code,
            scopes=frozenset({"read"}),
            redirect_uris=(REDIRECT,),
            token_format="opaque",
        ),
        _client("login", frozenset({CLIENT_CREDENTIALS}), scopes=frozenset({LOGIN_SCOPE})),
    ]


def creds(client_id: str) -> ClientCredentials:
    return ClientCredentials(client_id, SECRET, POST)


@functools.cache
def _keys() -> tuple[SigningKey, SigningKey]:
    # One RSA key per session: generating one takes a while.
    return (
        SigningKey("k-es256", "ES256", generate_private_key("ES256")),
        SigningKey("k-rs256", "RS256", generate_private_key("RS256")),
    )


class StaticKeys:
    """``tokenry.flows.SigningKeys`` with one ES256 access key and one RS256 ID-token key."""

    def __init__(self) -> None:
        self._access, self._id = _keys()

    def current(self, use: str = "access", alg: str | None = None) -> SigningKey:
        return self._access if use == "access" else self._id


class NoExchange:
    async def exchange(self, client: Client, req: TokenRequest) -> TokenResult:
        raise UnsupportedGrantType("no token exchange in this rig")


@dataclass(frozen=True)
class Ports:
    """One adapter's ports, as a composition root wires them."""

    clients: ClientLookup
    assertions: AssertionReplay
    requests: AuthorizeRequestStorage
    access_tokens: AccessTokenWriter
    transactions: Transactional
    revocations: RevocationLog


async def memory_rig() -> tuple[TokenEndpoint, MemoryStore, StaticKeys]:
    """A token endpoint over a fresh in-memory store holding :func:`clients`, its store and its
    keys (the flow unit tests' rig)."""
    now = clock()
    store = MemoryStore(now)
    for client in clients():
        await store.upsert_client(client)
    keys = StaticKeys()
    ports = Ports(store, store, store, store, store, store)
    return endpoint(ports, now, keys=keys), store, keys


def access_claims(token: str, keys: StaticKeys, audience: str = "api") -> dict[str, Any]:
    """The claims of an access token :func:`memory_rig`'s endpoint signed, verified strictly."""
    key = keys.current().private_key.public_key()
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["ES256"], audience=audience, issuer=ISSUER
    )
    return claims


def endpoint(ports: Ports, now: FakeClock, *, keys: StaticKeys | None = None) -> TokenEndpoint:
    deps = IssuerDeps(
        clients=ports.clients,
        peppers={PEPPER.id: PEPPER},
        assertions=AssertionContext(
            audiences=frozenset({ISSUER}), clock=now, replay=ports.assertions
        ),
        minter=Minter(issuer=ISSUER, keys=keys or StaticKeys()),
        clock=now,
        watermarks=Watermarks(),
        access_tokens=ports.access_tokens,
        requests=ports.requests,
        transactions=ports.transactions,
        revocations=ports.revocations,
        refresh_key=derivation_key(secrets.token_bytes(32)),
    )
    return TokenEndpoint(deps, NoExchange())


async def authorization_code(flows: TokenEndpoint, client_id: str, scope: str) -> str:
    """Run the front channel (authorize, then the login app completes it for ``alice``)."""
    out = await flows.code_flow.authorize(
        AuthorizationRequest(
            response_type="code",
            client_id=client_id,
            redirect_uri=REDIRECT,
            scope=scope,
            state="st",
            code_challenge=pkce.s256_challenge(VERIFIER),
            code_challenge_method="S256",
            nonce="n1",
        )
    )
    assert out.login_challenge, out
    login = await flows.authenticate(creds("login"))
    done = await flows.code_flow.complete(
        login, Completion(out.login_challenge, "alice", scope, 0, deny=False)
    )
    query = parse_qs(urlsplit(done.redirect_to).query)
    assert query["state"] == ["st"] and query["iss"] == [ISSUER]
    return query["code"][0]


def code_request(client_id: str, code: str, verifier: str = VERIFIER) -> TokenRequest:
    return TokenRequest(
        grant_type=AUTHORIZATION_CODE,
        scope="",
        audiences=(),
        credentials=creds(client_id),
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )


def refresh_request(client_id: str, token: str) -> TokenRequest:
    return TokenRequest(
        grant_type=REFRESH_TOKEN,
        scope="",
        audiences=(),
        credentials=creds(client_id),
        refresh_token=token,
    )
