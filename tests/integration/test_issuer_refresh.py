"""refresh_token (RFC 6749 §6, OAuth 2.1 §4.3.1): rotation, family revocation on reuse, the
grace rule of docs/spec.md §3 and one winner under concurrency, against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import json
import math
import time

import asyncpg
import jwt
import pytest

from tokenry.bus import codec
from tokenry.core import opaque
from tokenry.core.oidc import at_hash
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.servicekit.config import Settings
from tokenry.store.revocations import RevocationStore
from tokenry.verifier.errors import RevokedError

from issuer_support import REDIRECT, VERIFIER, IssuerSuite, issuer_suite, oauth_error, query

pytestmark = pytest.mark.integration
REFRESH = "refresh_token"


def claims_of(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


async def refresh(s: IssuerSuite, token: str, client: str = "web", **fields: object) -> object:
    return await s.token(client, grant_type=REFRESH, refresh_token=token, **fields)


async def test_rotation_and_retry_inside_the_grace(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as s:
        first = await s.code_tokens("web", scope="read write")
        second = await refresh(s, first.refresh_token, scope="read")
        assert second.refresh_token != first.refresh_token  # rotated
        assert opaque.kind_of(second.refresh_token) == opaque.REFRESH
        assert second.scope == "read"  # the access token may narrow...
        a2 = claims_of(second.access_token)
        assert a2["gid"] == claims_of(first.access_token)["gid"]
        # ...the refresh token keeps the family's scope (RFC 6749 §6).
        third = await refresh(s, second.refresh_token)
        assert third.scope == "read write"

        # A retry of the spent token inside the grace: the same successor, and an access token
        # with the same jti, iat and exp (docs/spec.md §3).
        retry = await refresh(s, second.refresh_token)
        assert retry.refresh_token == third.refresh_token
        a3, r3 = claims_of(third.access_token), claims_of(retry.access_token)
        assert (r3["jti"], r3["iat"], r3["exp"]) == (a3["jti"], a3["iat"], a3["exp"])
        assert await pool.fetchval("SELECT count(*) FROM opaque_tokens WHERE kind = 'refresh'") == 3
        # Escalation is refused and writes nothing.
        _, error, _ = await oauth_error(refresh(s, third.refresh_token, scope="read openid"))
        assert error == "invalid_scope"
        _, error, _ = await oauth_error(refresh(s, third.refresh_token, audience=["other"]))
        assert error == "invalid_target"
        # Another client cannot use it (RFC 6749 §6: bound to its client).
        _, error, _ = await oauth_error(refresh(s, third.refresh_token, client="web-opaque"))
        assert error == "invalid_grant"
        assert (await refresh(s, third.refresh_token)).refresh_token


async def test_concurrent_refreshes_have_one_winner(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as s:
        first = await s.code_tokens("web-opaque", scope="read")
        results = await asyncio.gather(
            *(refresh(s, first.refresh_token, "web-opaque") for _ in range(16))
        )
        assert len({r.refresh_token for r in results}) == 1
        assert len({r.access_token for r in results}) == 1  # opaque: derived, so identical
        # Decided in the database: exactly one successor row, one new access-token row.
        assert await pool.fetchval("SELECT count(*) FROM opaque_tokens WHERE kind = 'refresh'") == 2
        assert await pool.fetchval("SELECT count(*) FROM opaque_tokens WHERE kind = 'access'") == 2
        assert await pool.fetchval("SELECT count(*) FROM revocations") == 0


async def test_reuse_revokes_the_family_on_running_verifiers(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        first = await s.code_tokens("web", scope="read")
        second = await refresh(s, first.refresh_token)
        third = await refresh(s, second.refresh_token)  # the successor is used: no more grace
        runtime = await s.verifier("api")
        try:
            for resp in (first, second, third):
                await runtime.verifier.verify(resp.access_token)
            _, error, description = await oauth_error(refresh(s, first.refresh_token))
            assert error == "invalid_grant" and "already used" in description
            gid = claims_of(first.access_token)["gid"]
            seq = await pool.fetchval(
                "SELECT seq FROM revocations WHERE kind = 'grant' AND value = $1", gid
            )
            started = time.perf_counter()
            await asyncio.wait_for(runtime.state.wait_for_seq(seq), timeout=10)
            print(
                f"\nrefresh reuse → family revoked on the verifier in {time.perf_counter() - started:.3f} s"
            )
            for resp in (first, second, third):  # previously issued access tokens
                with pytest.raises(RevokedError):
                    await runtime.verifier.verify(resp.access_token)
        finally:
            await runtime.close()
        # The family is dead for refreshing too, even with its newest token.
        _, error, _ = await oauth_error(refresh(s, third.refresh_token))
        assert error == "invalid_grant"
        assert await pool.fetchval("SELECT count(*) FROM grants WHERE revoked_at IS NULL") == 0


async def test_reuse_after_the_grace_revokes_the_family(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        first = await s.code_tokens("web", scope="read")
        await refresh(s, first.refresh_token)
        # Move the rotation 11 s into the past instead of sleeping through the 10 s grace.
        await pool.execute(
            "UPDATE opaque_tokens SET used_at = used_at - 11 WHERE used_at IS NOT NULL"
        )
        _, error, _ = await oauth_error(refresh(s, first.refresh_token))
        assert error == "invalid_grant"
        assert await pool.fetchval("SELECT count(*) FROM revocations WHERE kind = 'grant'") == 1


async def test_subject_revoked_since_the_family_began_cannot_refresh(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        first = await s.code_tokens("web", scope="read")
        before = await pool.fetchval("SELECT count(*) FROM opaque_tokens")
        now = time.time()
        rev = Revocation(
            RevocationKind.SUBJECT, "alice", math.ceil(now) + 2, int(now) + 90_000, "t"
        )
        await RevocationStore(pool).revoke(
            rev, "admin", codec.revocation_event(settings.subjects, rev, now)
        )
        _, error, _ = await oauth_error(refresh(s, first.refresh_token))
        assert error == "invalid_grant"
        assert await pool.fetchval("SELECT count(*) FROM opaque_tokens") == before


async def test_client_revoked_since_the_family_began_cannot_refresh(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        first = await s.code_tokens("web", scope="read")
        now = time.time()
        rev = Revocation(RevocationKind.CLIENT, "web", math.ceil(now) + 2, int(now) + 90_000, "t")
        await RevocationStore(pool).revoke(
            rev, "admin", codec.revocation_event(settings.subjects, rev, now)
        )
        _, error, _ = await oauth_error(refresh(s, first.refresh_token))
        assert error == "invalid_grant"


async def test_refresh_token_errors(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        for token, expected in (
            ("", "invalid_request"),
            ("tkr_rt_nonsense", "invalid_grant"),
            (opaque.new_token(opaque.REFRESH), "invalid_grant"),  # well-formed, unknown
            (opaque.new_token(opaque.ACCESS), "invalid_grant"),  # wrong kind
        ):
            _, error, _ = await oauth_error(refresh(s, token))
            assert error == expected
        _, error, _ = await oauth_error(refresh(s, "x", client="demo"))
        assert error == "unauthorized_client"


async def test_a_public_client_gets_no_retry_grace(settings: Settings, pool: asyncpg.Pool) -> None:
    """docs/spec.md §3: the grace is off for public clients, whose spent refresh token may be a
    copy: presenting it again at once is reuse, which revokes the family."""
    async with issuer_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as s:

        def public_refresh(token: str) -> object:
            return s.token(None, grant_type=REFRESH, refresh_token=token, client_id="spa")

        first = await s.code_tokens("spa", scope="read")
        second = await public_refresh(first.refresh_token)
        # Inside the 10 s a confidential client would get: reuse all the same.
        _, error, _ = await oauth_error(public_refresh(first.refresh_token))
        assert error == "invalid_grant"
        _, error, _ = await oauth_error(public_refresh(second.refresh_token))
        assert error == "invalid_grant"  # the family is revoked


async def test_refresh_answers_a_new_id_token(settings: Settings, pool: asyncpg.Pool) -> None:
    """OIDC Core §12.2: the same iss, sub and aud, a new iat, the original auth_time, no nonce."""
    async with issuer_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as s:
        started = await s.authorize()
        auth_time = int(time.time()) - 100
        done = await s.complete(started.login_challenge, "openid read", auth_time=auth_time)
        code = query(done.redirect_to)["code"]
        first = await s.token(
            "web",
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=VERIFIER,
        )
        original = claims_of(first.id_token)
        assert original["nonce"]  # the code's ID token carries the request's nonce
        second = await refresh(s, first.refresh_token)
        assert second.id_token and second.id_token != first.id_token
        header = jwt.get_unverified_header(second.id_token)
        row = await pool.fetchrow(
            "SELECT public_jwk::text AS jwk FROM signing_keys WHERE kid = $1", header["kid"]
        )
        renewed = jwt.decode(
            second.id_token,
            jwt.PyJWK(json.loads(row["jwk"])).key,
            algorithms=[header["alg"]],
            audience="web",
            issuer=settings.issuer_url,
        )
        assert header["typ"] == "JWT"
        for claim in ("iss", "sub", "aud"):
            assert renewed[claim] == original[claim], claim
        assert renewed["auth_time"] == auth_time  # the original authentication, not the refresh
        assert "nonce" not in renewed
        assert renewed["iat"] == claims_of(second.access_token)["iat"] >= original["iat"]
        assert renewed["at_hash"] == at_hash(second.access_token)
        # A retry inside the grace gets an ID token too, with the same iat as its access token
        # (the same claims, re-signed).
        retry = await refresh(s, first.refresh_token)
        again = claims_of(retry.id_token)
        assert again["at_hash"] == at_hash(retry.access_token)
        assert (again["iat"], again["auth_time"]) == (renewed["iat"], auth_time)
        assert "nonce" not in again
        # Without openid in the answer's scope, no ID token.
        third = await refresh(s, second.refresh_token, scope="read")
        assert not third.id_token
