"""Every MUST failure of the issuer, each its own test, named after the attack, over gRPC on one
shared issuer (real PostgreSQL + NATS). Each refusal carries its RFC 6749 §5.2 code in the
OAuthError detail, and writes nothing. Scenario tests (reuse → family revoked on a running
verifier, code expiry, concurrent refreshes…) live in the other test_issuer_* modules."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import grpc
import jwt
import pytest
from databases import new_database

from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings
from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.client_secrets import Pepper, hash_secret, pepper_id
from tokenry.core.keywrap import Kek
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.servicekit.config import Settings
from tokenry.store.clients import ClientStore
from tokenry.v1 import clients_pb2

from issuer_support import (
    ASSERTION_KEY,
    REDIRECT,
    VERIFIER,
    IssuerSuite,
    counts,
    extra_clients,
    issuer_suite,
    oauth_error,
    query,
)
from suite import basic

pytestmark = pytest.mark.integration
CC = "client_credentials"
CODE = "authorization_code"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


@pytest.fixture(scope="module")
async def s(
    pg_server: EmbeddedPostgres, nats_server: EmbeddedNats, template_db: str
) -> AsyncIterator[IssuerSuite]:
    dsn = await new_database(pg_server, template_db)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    tag = uuid.uuid4().hex[:10]
    pepper_key = secrets.token_urlsafe(32).encode()
    settings = Settings(
        dev=True,
        database_url=dsn,
        nats_url=nats_server.url,
        issuer_url="https://issuer.test",
        subjects=Subjects(f"t{tag}"),
        stream=StreamSettings(name=f"T{tag}", max_age=600),
        log_level="WARNING",
        access_token_alg="ES256",
        kek=Kek.generate(),
        peppers={pepper_id(pepper_key): Pepper(pepper_id(pepper_key), pepper_key)},
    )
    try:
        async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as suite:
            yield suite
    finally:
        await pool.close()
        conn = await asyncpg.connect(pg_server.dsn())
        try:
            await conn.execute(
                f"DROP DATABASE IF EXISTS {dsn.split('/')[-1].split('?')[0]} WITH (FORCE)"
            )
        finally:
            await conn.close()


async def refused(s: IssuerSuite, call: Any, expected: str) -> str:
    """Assert the call fails with ``expected`` and that nothing was written."""
    before = await counts(s.pool)
    _, error, description = await oauth_error(call)
    assert error == expected, description
    assert await counts(s.pool) == before
    return description


def assertion(s: IssuerSuite, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": "jwtsvc",
        "sub": "jwtsvc",
        "aud": s.settings.issuer_url,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    text = jwt.encode(
        {k: v for k, v in body.items() if v is not None},
        ASSERTION_KEY,
        algorithm="ES256",
        headers={"kid": "k1"},
    )
    return {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": text}


# --- PKCE (RFC 7636, S256 only) ------------------------------------------------------------------


async def test_plain_pkce_is_refused(s: IssuerSuite) -> None:
    out = await s.authorize(code_challenge=VERIFIER, code_challenge_method="plain")
    assert out.error == "invalid_request" and not out.login_challenge
    assert query(out.redirect_to)["error"] == "invalid_request"


async def test_missing_code_challenge_is_refused(s: IssuerSuite) -> None:
    out = await s.authorize(code_challenge="", code_challenge_method="")
    assert out.error == "invalid_request" and not out.login_challenge


async def test_wrong_code_verifier_is_refused(s: IssuerSuite) -> None:
    code = await s.code(scope="read")
    fields = {"grant_type": CODE, "code": code, "redirect_uri": REDIRECT}
    await refused(s, s.token("web", code_verifier="W" * 43, **fields), "invalid_grant")


async def test_missing_code_verifier_is_refused(s: IssuerSuite) -> None:
    code = await s.code(scope="read")
    fields = {"grant_type": CODE, "code": code, "redirect_uri": REDIRECT}
    # RFC 7636 §4.6, docs/flows.md §6: not redeemable without its verifier.
    await refused(s, s.token("web", **fields), "invalid_grant")


# --- redirect URIs: exact string match -----------------------------------------------------------

MISMATCHES = {
    "trailing-slash": REDIRECT + "/",
    "case": "https://app.TEST/cb",
    "extra-query": REDIRECT + "?next=/admin",
}


@pytest.mark.parametrize("uri", MISMATCHES.values(), ids=MISMATCHES.keys())
async def test_redirect_uri_mismatch_at_authorize(s: IssuerSuite, uri: str) -> None:
    await refused(s, s.authorize(redirect_uri=uri), "invalid_request")


@pytest.mark.parametrize("uri", MISMATCHES.values(), ids=MISMATCHES.keys())
async def test_redirect_uri_mismatch_at_token(s: IssuerSuite, uri: str) -> None:
    code = await s.code(scope="read")
    fields = {"grant_type": CODE, "code": code, "code_verifier": VERIFIER}
    await refused(s, s.token("web", redirect_uri=uri, **fields), "invalid_grant")


# --- scope escalation, disallowed grant, wrong secret ---------------------------------------------


async def test_scope_escalation_client_credentials(s: IssuerSuite) -> None:
    await refused(s, s.token("demo", grant_type=CC, scope="demo.read admin"), "invalid_scope")


async def test_scope_escalation_to_reserved_scope(s: IssuerSuite) -> None:
    await refused(s, s.token("demo", grant_type=CC, scope="tokenry:admin"), "invalid_scope")


async def test_scope_escalation_at_code_redemption(s: IssuerSuite) -> None:
    code = await s.code(scope="read")
    fields = {"grant_type": CODE, "code": code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER}
    await refused(s, s.token("web", scope="read write", **fields), "invalid_scope")


async def test_scope_escalation_at_refresh(s: IssuerSuite) -> None:
    tokens = await s.code_tokens("web", scope="read")
    call = s.token(
        "web", grant_type="refresh_token", refresh_token=tokens.refresh_token, scope="write"
    )
    await refused(s, call, "invalid_scope")


async def test_disallowed_grant(s: IssuerSuite) -> None:
    await refused(s, s.token("web", grant_type=CC), "unauthorized_client")


async def test_password_grant_does_not_exist(s: IssuerSuite) -> None:
    await refused(s, s.token("demo", grant_type="password"), "unsupported_grant_type")


async def test_wrong_secret(s: IssuerSuite) -> None:
    call = s.issuer.Token(
        s.req(grant_type=CC), metadata=[("authorization", basic("demo", "nope"))], timeout=5
    )
    code = await refused(s, call, "invalid_client")
    assert code == "client authentication failed"


# --- private_key_jwt (RFC 7523) -------------------------------------------------------------------


async def test_replayed_assertion(s: IssuerSuite) -> None:
    once = assertion(s)
    assert (await s.token(grant_type=CC, **once)).access_token
    description = await refused(s, s.token(grant_type=CC, **once), "invalid_client")
    assert "already used" in description


async def test_expired_assertion(s: IssuerSuite) -> None:
    now = int(time.time())
    await refused(
        s, s.token(grant_type=CC, **assertion(s, iat=now - 200, exp=now - 100)), "invalid_client"
    )


async def test_wrongly_audienced_assertion(s: IssuerSuite) -> None:
    await refused(
        s, s.token(grant_type=CC, **assertion(s, aud="https://evil.test")), "invalid_client"
    )


async def test_too_long_lived_assertion(s: IssuerSuite) -> None:
    now = int(time.time())
    await refused(
        s, s.token(grant_type=CC, **assertion(s, iat=now, exp=now + 600)), "invalid_client"
    )


# --- token exchange (RFC 8693) --------------------------------------------------------------------


async def test_token_exchange_widening_scope(s: IssuerSuite) -> None:
    user = await s.code_tokens("portal", scope="read")
    call = s.token(
        "svc-a",
        grant_type=EXCHANGE,
        subject_token=user.access_token,
        subject_token_type=ACCESS_TOKEN_TYPE_URN,
        scope="read write",
    )
    await refused(s, call, "invalid_scope")


async def test_token_exchange_never_outlives_its_subject_token(s: IssuerSuite) -> None:
    user = await s.code_tokens("portal", scope="read")
    subject_exp = jwt.decode(user.access_token, options={"verify_signature": False})["exp"]
    # A client whose own access-token lifetime (1 h) is far longer than the subject token's.
    long_lived = replace(
        next(c for c in extra_clients() if c.client_id == "svc-a"),
        client_id="svc-long",
        access_token_ttl=3600,
        secret_hash=hash_secret(next(iter(s.settings.peppers.values())), "long-secret-" + "x" * 32),
        pepper_id=next(iter(s.settings.peppers)),
    )
    await ClientStore(s.pool).upsert(long_lived)
    s.suite.secrets["svc-long"] = "long-secret-" + "x" * 32
    resp = await s.token(
        "svc-long",
        grant_type=EXCHANGE,
        subject_token=user.access_token,
        subject_token_type=ACCESS_TOKEN_TYPE_URN,
    )
    exchanged = jwt.decode(resp.access_token, options={"verify_signature": False})
    assert exchanged["exp"] == subject_exp
    assert exchanged["exp"] - exchanged["iat"] < 3600


# --- the client registry ---------------------------------------------------------------------------


async def test_non_admin_registering_a_client(s: IssuerSuite) -> None:
    call = s.clients.CreateClient(
        clients_pb2.CreateClientRequest(
            client=clients_pb2.ClientInfo(
                client_id="evil", grant_types=[CC], scopes=["tokenry:admin"], audiences=["x"]
            )
        ),
        metadata=s.auth("demo"),
        timeout=5,
    )
    code, error, _ = await oauth_error(call)
    assert (code, error) == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
    assert await s.pool.fetchval("SELECT count(*) FROM clients WHERE client_id = 'evil'") == 0
