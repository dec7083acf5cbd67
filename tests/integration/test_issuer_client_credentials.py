"""client_credentials (RFC 6749 §4.4) with every client authentication method, JWT and opaque,
against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid

import asyncpg
import grpc
import jwt
import pytest

from tokenry.bus import codec
from tokenry.core import opaque
from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.servicekit.config import Settings
from tokenry.store.revocations import RevocationStore

from issuer_support import ASSERTION_KEY, counts, issuer_suite, oauth_error
from suite import basic

pytestmark = pytest.mark.integration
CC = "client_credentials"


def assertion(settings: Settings, **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {
        "iss": "jwtsvc",
        "sub": "jwtsvc",
        "aud": settings.issuer_url,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, ASSERTION_KEY, algorithm="ES256", headers={"kid": "k1"})


async def test_jwt_token_verifies_on_a_running_verifier(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        resp = await s.token("demo", grant_type=CC, scope="demo.read")
        assert (resp.token_type, resp.expires_in, resp.scope) == ("Bearer", 600, "demo.read")
        assert not resp.refresh_token  # RFC 6749 §4.4.3
        runtime = await s.verifier("demo-api")
        try:
            claims = await runtime.verifier.verify(resp.access_token)
        finally:
            await runtime.close()
        assert claims["sub"] == claims["client_id"] == "demo"
        assert claims["scope"] == "demo.read"
        # The hot path wrote nothing (docs/design.md §7).
        assert await pool.fetchval("SELECT count(*) FROM opaque_tokens") == 0


async def test_opaque_token_per_request_stores_only_its_hash(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        resp = await s.token("demo", grant_type=CC, token_format="opaque", audience=["demo-api"])
        token = resp.access_token
        assert token.startswith("tkr_at_") and opaque.kind_of(token) == opaque.ACCESS
        row = await pool.fetchrow(
            "SELECT * FROM opaque_tokens WHERE token_hash = $1",
            hashlib.sha256(token.encode()).digest(),
        )
        assert row is not None
        assert (row["kind"], row["client_id"], row["subject"]) == ("access", "demo", "demo")
        assert row["audiences"] == ["demo-api"]
        assert row["expires_at"] - row["issued_at"] == resp.expires_in == 600
        dump = str([dict(r) for r in await pool.fetch("SELECT * FROM opaque_tokens")])
        assert token not in dump and token[7:50] not in dump
        # Concurrent opaque issuance is batched (group commit) and every row is durable.
        many = await asyncio.gather(
            *(s.token("demo", grant_type=CC, token_format="opaque") for _ in range(50))
        )
        assert await pool.fetchval("SELECT count(*) FROM opaque_tokens") == 51
        assert len({r.access_token for r in many}) == 50


async def test_client_secret_post(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        resp = await s.token(grant_type=CC, client_id="demo", client_secret=s.secret("demo"))
        assert resp.access_token


async def test_refusals_write_nothing(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        before = await counts(pool)
        wrong = [("authorization", basic("demo", "wrong"))]
        cases = [
            (s.issuer.Token(s.req(grant_type=CC), metadata=wrong, timeout=5), "invalid_client"),
            (s.token("demo", grant_type="password"), "unsupported_grant_type"),
            (s.token("demo", grant_type="implicit"), "unsupported_grant_type"),
            (s.token("demo", grant_type=CC, scope="tokenry:admin"), "invalid_scope"),
            (s.token("demo", grant_type=CC, scope="demo.read other"), "invalid_scope"),
            (s.token("demo", grant_type=CC, audience=["other-api"]), "invalid_target"),
            (s.token("demo", grant_type=CC, resource=["other-api"]), "invalid_target"),
            (s.token("demo", grant_type=CC, token_format="xml"), "invalid_request"),
            # the web client may not use client_credentials (disallowed grant)
            (s.token("web", grant_type=CC), "unauthorized_client"),
            # a public client never may (RFC 6749 §4.4)
            (s.token(grant_type=CC, client_id="spa"), "unauthorized_client"),
            (s.token("demo", grant_type="authorization_code"), "unauthorized_client"),
        ]
        for call, expected in cases:
            _, error, _ = await oauth_error(call)
            assert error == expected
        assert await counts(pool) == before


async def test_private_key_jwt(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        text = assertion(settings)
        req = {"grant_type": CC, "client_assertion_type": CLIENT_ASSERTION_TYPE}
        resp = await s.token(client_assertion=text, **req)
        assert resp.scope == "read"
        assert jwt.decode(resp.access_token, options={"verify_signature": False})["sub"] == "jwtsvc"
        # RFC 7523 §3: the jti is remembered until exp.
        row = await pool.fetchrow("SELECT * FROM assertion_jtis")
        assert row["client_id"] == "jwtsvc" and row["expires_at"] >= int(time.time()) + 60
        # The token endpoint URL is an accepted audience too.
        endpoint = settings.issuer_url + "/oauth2/token"
        assert await s.token(client_assertion=assertion(settings, aud=endpoint), **req)

        _, error, description = await oauth_error(s.token(client_assertion=text, **req))
        assert (error, "already used" in description) == ("invalid_client", True)  # replayed

        now = int(time.time())
        refused = {
            "expired": assertion(settings, iat=now - 200, exp=now - 100),
            "wrong audience": assertion(settings, aud="https://elsewhere.test"),
            "audience array with another value": assertion(
                settings, aud=[settings.issuer_url, "https://elsewhere.test"]
            ),
            "too long-lived": assertion(settings, iat=now, exp=now + 301),
            "no exp": assertion(settings, exp=None),
            "iss differs from sub": assertion(settings, iss="demo"),
        }
        for name, bad in refused.items():
            _, error, _ = await oauth_error(s.token(client_assertion=bad, **req))
            assert error == "invalid_client", name
        # A secret does not authenticate a private_key_jwt client.
        _, error, _ = await oauth_error(
            s.token(grant_type=CC, client_id="jwtsvc", client_secret="x")
        )
        assert error == "invalid_client"
        assert await pool.fetchval("SELECT count(*) FROM assertion_jtis") == 2


async def test_future_watermark_gives_temporarily_unavailable(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        await s.token("demo", grant_type=CC)  # cached, warm
        now = time.time()
        not_before = math.ceil(now) + 3
        rev = Revocation(RevocationKind.CLIENT, "demo", not_before, not_before + 4000, "test")
        await RevocationStore(pool).revoke(
            rev, "admin", codec.revocation_event(settings.subjects, rev, now)
        )
        started = time.perf_counter()
        while True:  # the issuer learns it from the event (or its 5 s reload)
            try:
                await s.token("demo", grant_type=CC)
            except grpc.aio.AioRpcError as exc:
                code, error, _ = await oauth_error(_raise(exc))
                assert (code, error) == (grpc.StatusCode.UNAVAILABLE, "temporarily_unavailable")
                break
            assert time.perf_counter() - started < 20, "watermark never applied"
            await asyncio.sleep(0.02)
        print(
            f"\nclient watermark applied by the issuer after {time.perf_counter() - started:.3f} s"
        )
        assert time.time() < not_before, "the test machine is too slow for this check"
        # Another client is not affected.
        assert await s.token("other", grant_type=CC)
        # Once the watermark is behind us, tokens are minted again (iat >= not_before).
        await asyncio.sleep(max(0.0, not_before - time.time()))  # wall time must pass it
        resp = await s.token("demo", grant_type=CC)
        assert (
            jwt.decode(resp.access_token, options={"verify_signature": False})["iat"] >= not_before
        )


async def _raise(exc: Exception) -> None:
    raise exc
