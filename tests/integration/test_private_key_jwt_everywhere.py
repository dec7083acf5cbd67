"""private_key_jwt (RFC 7523 §2.2) at the revocation service and the introspector, as at the
issuer: one client-authentication module, one jti replay store (docs/spec.md §3)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from assertion_support import public_jwks, sign_assertion
from cryptography.hazmat.primitives.asymmetric import ec

from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.clients import (
    CLIENT_CREDENTIALS,
    INTROSPECT_SCOPE,
    private_key_jwt_client,
)
from tokenry.servicekit.config import Settings
from tokenry.store.clients import ClientStore
from tokenry.v1 import (
    events_pb2,
    introspector_pb2,
    introspector_pb2_grpc,
    issuer_pb2,
    issuer_pb2_grpc,
    revocation_pb2,
    revocation_pb2_grpc,
)

from issuer_support import oauth_error
from suite import Suite, basic, run_suite

pytestmark = pytest.mark.integration
SERVICES = ("keyrotator", "issuer", "revocation", "introspector")
# "pk-app" gets tokens for "pk-api"; "pk-api" is the resource server that introspects them.
KEYS = {
    "pk-app": ec.generate_private_key(ec.SECP256R1()),
    "pk-api": ec.generate_private_key(ec.SECP256R1()),
}
STRANGER_KEY = ec.generate_private_key(ec.SECP256R1())  # in no client's JWKS


def assertion(client_id: str, aud: object, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    return sign_assertion(client_id, aud, key or KEYS[client_id])


@pytest.fixture
async def suite(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Suite]:
    async with run_suite(settings, pool, services=SERVICES) as running:
        store = ClientStore(pool)
        for client_id, scopes, audiences in (
            ("pk-app", {"read"}, ("pk-api",)),
            ("pk-api", {INTROSPECT_SCOPE}, ()),
        ):
            jwks = public_jwks(KEYS[client_id])
            await store.upsert(
                private_key_jwt_client(client_id, jwks, scopes=scopes, audiences=audiences)
            )
        yield running


def revoke(suite: Suite, token: str, client_assertion: str, **extra: Any) -> Any:
    stub = revocation_pb2_grpc.RevocationStub(suite.channel("revocation"))
    request = revocation_pb2.RevokeRequest(
        token=token,
        client_assertion_type=CLIENT_ASSERTION_TYPE,
        client_assertion=client_assertion,
    )
    return stub.Revoke(request, timeout=10, **extra)


def introspect(suite: Suite, token: str, client_assertion: str) -> Any:
    stub = introspector_pb2_grpc.IntrospectorStub(suite.channel("introspector"))
    request = introspector_pb2.IntrospectRequest(
        token=token,
        client_assertion_type=CLIENT_ASSERTION_TYPE,
        client_assertion=client_assertion,
    )
    return stub.Introspect(request, timeout=10)


async def app_token(suite: Suite) -> tuple[str, str]:
    """A token for pk-app from the issuer, and the (now used) assertion that got it."""
    used = assertion("pk-app", suite.settings.issuer_url)
    stub = issuer_pb2_grpc.IssuerStub(suite.channel("issuer"))
    resp = await stub.Token(
        issuer_pb2.TokenRequest(
            grant_type=CLIENT_CREDENTIALS,
            client_assertion_type=CLIENT_ASSERTION_TYPE,
            client_assertion=used,
        ),
        timeout=10,
    )
    return resp.access_token, used


async def writes(pool: asyncpg.Pool) -> dict[str, int]:
    """Rows a revocation or an authentication writes: proves a refusal wrote nothing."""
    out = {}
    for table in ("revocations", "assertion_jtis"):
        out[table] = await pool.fetchval(f"SELECT count(*) FROM {table}")
    out["outbox"] = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE subject NOT LIKE '%keys%'"
    )
    return out


async def test_a_private_key_jwt_client_introspects_and_revokes(
    suite: Suite, pool: asyncpg.Pool
) -> None:
    issuer = suite.settings.issuer_url
    token, _ = await app_token(suite)
    # aud is the issuer identifier or the token endpoint URL, at every endpoint (docs/spec.md §3).
    for aud in (issuer, issuer + "/oauth2/token"):
        answer = await introspect(suite, token, assertion("pk-api", aud))
        assert answer.active and answer.client_id == "pk-app" and list(answer.aud) == ["pk-api"]
    # Revocation: the client revokes its own token (RFC 7009 §2.1).
    resp = await revoke(suite, token, assertion("pk-app", issuer + "/oauth2/token"))
    assert resp.seq > 0 and resp.kind == events_pb2.REVOCATION_KIND_JTI
    row = await pool.fetchrow("SELECT kind, actor FROM revocations")
    assert dict(row) == {"kind": "jti", "actor": "pk-app"}
    started = time.perf_counter()
    while (await introspect(suite, token, assertion("pk-api", issuer))).active:
        assert time.perf_counter() - started < 10, "revocation never reflected"
    print(
        f"\nrevoked → inactive at the introspector: {(time.perf_counter() - started) * 1000:.1f} ms"
    )
    # RFC 7523 §3: every jti is remembered, in the one store the issuer uses too.
    used = await pool.fetch("SELECT client_id FROM assertion_jtis")
    assert sorted({r["client_id"] for r in used}) == ["pk-api", "pk-app"]


async def test_bad_assertions_are_refused_and_write_nothing(
    suite: Suite, pool: asyncpg.Pool
) -> None:
    issuer = suite.settings.issuer_url
    token, used_at_issuer = await app_token(suite)
    used_at_introspector = assertion("pk-api", issuer)
    assert not (await introspect(suite, "unknown", used_at_introspector)).active
    before = await writes(pool)

    refused_revocations = {
        "replayed (first used at the issuer)": used_at_issuer,
        "wrong audience": assertion("pk-app", "https://elsewhere.test"),
        "another endpoint's URL": assertion("pk-app", issuer + "/oauth2/introspect"),
        "audience array with another value": assertion("pk-app", [issuer, "https://x.test"]),
        "key not in the client's JWKS": assertion("pk-app", issuer, STRANGER_KEY),
    }
    for name, bad in refused_revocations.items():
        code, error, _ = await oauth_error(revoke(suite, token, bad))
        assert (code, error) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client"), name
    refused_introspections = {
        "replayed": used_at_introspector,
        "wrong audience": assertion("pk-api", "https://elsewhere.test"),
        "another endpoint's URL": assertion("pk-api", issuer + "/oauth2/revoke"),
        "key not in the client's JWKS": assertion("pk-api", issuer, STRANGER_KEY),
    }
    for name, bad in refused_introspections.items():
        code, error, _ = await oauth_error(introspect(suite, token, bad))
        assert (code, error) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client"), name
    # RFC 6749 §2.3: one method per request; Basic and an assertion together are refused.
    both = revoke(
        suite,
        token,
        assertion("pk-app", issuer),
        metadata=[("authorization", basic("demo", suite.secrets["demo"]))],
    )
    _, error, _ = await oauth_error(both)
    assert error == "invalid_request"

    assert await writes(pool) == before
    assert (await introspect(suite, token, assertion("pk-api", issuer))).active
