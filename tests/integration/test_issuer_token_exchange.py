"""Token exchange (RFC 8693) and the phantom-token pattern, against real PostgreSQL and NATS."""

from __future__ import annotations

import time

import asyncpg
import jwt
import pytest

from tokenry.bus import codec
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, JWT_TYPE_URN
from tokenry.servicekit.config import Settings
from tokenry.store.revocations import RevocationStore

from issuer_support import issuer_suite, oauth_error

pytestmark = pytest.mark.integration
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def claims_of(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_exchange_on_behalf_of_a_subject(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool) as s:
        user = await s.code_tokens("portal", scope="read write")
        subject = claims_of(user.access_token)
        resp = await s.token(
            "svc-a",
            grant_type=EXCHANGE,
            subject_token=user.access_token,
            subject_token_type=ACCESS_TOKEN_TYPE_URN,
            scope="read",
            audience=["svc-b"],
        )
        assert resp.issued_token_type == ACCESS_TOKEN_TYPE_URN
        assert resp.token_type == "Bearer" and not resp.refresh_token
        runtime = await s.verifier("svc-b")
        try:
            claims = await runtime.verifier.verify(resp.access_token)
        finally:
            await runtime.close()
        assert claims["sub"] == "alice" and claims["gid"] == subject["gid"]  # inherited
        assert claims["client_id"] == "svc-a"
        assert claims["act"] == {"sub": "svc-a"}  # RFC 8693 §4.1
        assert claims["scope"] == "read" and claims["aud"] == "svc-b"
        assert claims["exp"] <= subject["exp"]

        jwt_type = await s.token(
            "svc-a",
            grant_type=EXCHANGE,
            subject_token=user.access_token,
            subject_token_type=JWT_TYPE_URN,
            requested_token_type=JWT_TYPE_URN,
        )
        assert jwt_type.issued_token_type == JWT_TYPE_URN
        # svc-a may exchange tokens issued to web, not its own: a second hop is refused.
        _, error, _ = await oauth_error(
            s.token(
                "svc-a",
                grant_type=EXCHANGE,
                subject_token=resp.access_token,
                subject_token_type=ACCESS_TOKEN_TYPE_URN,
            )
        )
        assert error == "unauthorized_client"


async def test_exchange_never_widens_or_outlives(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool) as s:
        # svc-a's own lifetime is longer than the subject token's.
        await pool.execute("UPDATE clients SET access_token_ttl = 3600 WHERE client_id = 'svc-a'")
        user = await s.code_tokens("portal", scope="read")
        subject = claims_of(user.access_token)
        base = {
            "grant_type": EXCHANGE,
            "subject_token": user.access_token,
            "subject_token_type": ACCESS_TOKEN_TYPE_URN,
        }
        _, error, _ = await oauth_error(s.token("svc-a", scope="read write", **base))
        assert error == "invalid_scope"  # the subject token had read only
        _, error, _ = await oauth_error(s.token("svc-a", audience=["api"], **base))
        assert error == "invalid_target"
        # The exchanged token never outlives its subject token, whatever its own lifetime.
        resp = await s.token("svc-a", **base)
        assert claims_of(resp.access_token)["exp"] == subject["exp"]
        assert resp.expires_in < 3600


async def test_exchange_refusals(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool) as s:
        user = await s.code_tokens("portal", scope="openid read")
        assert user.id_token
        base = {
            "grant_type": EXCHANGE,
            "subject_token": user.access_token,
            "subject_token_type": ACCESS_TOKEN_TYPE_URN,
        }
        cases = [
            ("web", base, "unauthorized_client"),  # no token-exchange grant
            ("svc-a", {**base, "subject_token": user.access_token[:-4] + "AAAA"}, "invalid_grant"),
            ("svc-a", {**base, "subject_token": user.id_token}, "invalid_grant"),  # typ JWT
            ("svc-a", {**base, "subject_token_type": "urn:x"}, "invalid_request"),
            ("svc-a", {**base, "actor_token": "x"}, "invalid_request"),
            ("svc-a", {**base, "subject_token": ""}, "invalid_request"),
            ("svc-a", {**base, "token_format": "opaque"}, "invalid_request"),
        ]
        for client, fields, expected in cases:
            _, error, _ = await oauth_error(s.token(client, **fields))
            assert error == expected, (client, fields.keys())
        # Who may exchange for whom: svc-a may exchange tokens issued to web, not to demo.
        demo = await s.token("demo", grant_type="client_credentials")
        _, error, _ = await oauth_error(
            s.token("svc-a", **{**base, "subject_token": demo.access_token})
        )
        assert error == "unauthorized_client"
        # A revoked subject token cannot be exchanged (checked in PostgreSQL, docs/spec.md §4.5).
        jti = str(claims_of(user.access_token)["jti"])
        now = time.time()
        rev = Revocation(RevocationKind.JTI, jti, 0, int(now) + 4000, "t")
        await RevocationStore(pool).revoke(
            rev, "admin", codec.revocation_event(settings.subjects, rev, now)
        )
        _, error, description = await oauth_error(s.token("svc-a", **base))
        assert error == "invalid_grant" and "revoked" in description


async def test_phantom_token(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool) as s:
        user = await s.code_tokens("portal-opaque", scope="read")
        assert user.access_token.startswith("tkr_at_")
        resp = await s.token(
            "svc-a",
            grant_type=EXCHANGE,
            subject_token=user.access_token,
            subject_token_type=ACCESS_TOKEN_TYPE_URN,
            audience=["svc-b"],
        )
        runtime = await s.verifier("svc-b")
        try:
            claims = await runtime.verifier.verify(resp.access_token)
        finally:
            await runtime.close()
        row = await pool.fetchrow("SELECT * FROM opaque_tokens WHERE kind = 'access'")
        assert (claims["sub"], claims["gid"], claims["scope"]) == ("alice", row["gid"], "read")
        assert claims["exp"] - claims["iat"] <= 300  # short-lived internal JWT
        # A revoked family's opaque token is not exchangeable.
        await pool.execute("UPDATE opaque_tokens SET revoked_at = now()")
        _, error, _ = await oauth_error(
            s.token(
                "svc-a",
                grant_type=EXCHANGE,
                subject_token=user.access_token,
                subject_token_type=ACCESS_TOKEN_TYPE_URN,
            )
        )
        assert error == "invalid_grant"
