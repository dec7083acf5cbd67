"""authorization_code + PKCE (RFC 6749 §4.1, RFC 7636) with the login/consent front channel,
and OIDC ID tokens, against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import asyncpg
import grpc
import jwt
import pytest

from tokenry.core.oidc import at_hash
from tokenry.servicekit.config import Settings
from tokenry.verifier.errors import RevokedError

from issuer_support import (
    REDIRECT,
    VERIFIER,
    counts,
    issuer_suite,
    oauth_error,
    query,
    until_available,
)

pytestmark = pytest.mark.integration
CODE = "authorization_code"
STATE = "st&=/ é"


async def _id_token_key(pool: asyncpg.Pool, kid: str) -> jwt.PyJWK:
    row = await pool.fetchrow(
        "SELECT public_jwk::text AS jwk FROM signing_keys WHERE kid = $1", kid
    )
    return jwt.PyJWK(json.loads(row["jwk"]))


async def test_code_flow_with_openid(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool) as s:
        started = await s.authorize()
        assert started.login_challenge.startswith("tkr_lc_")
        assert (started.client_id, started.requested_scope) == ("web", "openid read")
        auth_time = int(time.time()) - 5
        done = await s.complete(started.login_challenge, "openid read", auth_time=auth_time)
        assert done.redirect_to.startswith(REDIRECT + "?")
        params = query(done.redirect_to)
        assert params["state"] == STATE  # RFC 6749 §4.1.2: untouched
        assert params["iss"] == settings.issuer_url  # RFC 9207
        assert params["code"].startswith("tkr_ac_")
        # Only hashes are stored.
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM auth_codes WHERE code_hash = $1",
                hashlib.sha256(params["code"].encode()).digest(),
            )
            == 1
        )

        resp = await until_available(
            lambda: s.token(
                "web",
                grant_type=CODE,
                code=params["code"],
                redirect_uri=REDIRECT,
                code_verifier=VERIFIER,
            )
        )
        assert resp.scope == "openid read" and resp.token_type == "Bearer"
        assert resp.refresh_token.startswith("tkr_rt_")

        runtime = await s.verifier("api")
        try:
            claims = await runtime.verifier.verify(resp.access_token)
        finally:
            await runtime.close()
        assert (claims["sub"], claims["client_id"], claims["aud"]) == ("alice", "web", "api")

        header = jwt.get_unverified_header(resp.id_token)
        assert (header["alg"], header["typ"]) == ("RS256", "JWT")  # OIDC Core §15.1
        key = await _id_token_key(pool, header["kid"])
        id_claims = jwt.decode(
            resp.id_token, key.key, algorithms=["RS256"], audience="web", issuer=settings.issuer_url
        )
        assert id_claims["sub"] == "alice"
        assert id_claims["nonce"] == "n-0S6_WzA2Mj"
        assert id_claims["auth_time"] == auth_time
        assert id_claims["at_hash"] == at_hash(resp.access_token)
        grant = await pool.fetchrow("SELECT * FROM grants WHERE gid = $1", claims["gid"])
        assert grant["subject"] == "alice" and grant["client_id"] == "web"


async def test_public_client_with_pkce_and_opaque_tokens(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        resp = await s.code_tokens("spa", scope="read")
        assert resp.access_token and resp.refresh_token and not resp.id_token
        opaque_resp = await s.code_tokens("web-opaque", scope="read")
        assert opaque_resp.access_token.startswith("tkr_at_")
        rows = await pool.fetch("SELECT kind FROM opaque_tokens ORDER BY kind")
        assert [r["kind"] for r in rows] == ["access", "refresh", "refresh"]


async def test_pkce_is_mandatory_and_s256_only(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        before = await counts(pool)
        for change in (
            {"code_challenge_method": "plain"},
            {"code_challenge_method": "plain", "code_challenge": VERIFIER},
            {"code_challenge": ""},  # missing challenge
            {"code_challenge_method": ""},  # absent method means plain (RFC 7636 §4.3)
        ):
            refused = await s.authorize(**change)
            assert not refused.login_challenge
            assert refused.error == "invalid_request", change
            params = query(refused.redirect_to)
            assert refused.redirect_to.startswith(REDIRECT + "?")
            assert params["error"] == "invalid_request"
            assert params["state"] == STATE
        refused = await s.authorize(response_type="token")  # no implicit grant
        assert refused.error == "unsupported_response_type"
        refused = await s.authorize(scope="openid admin")
        assert refused.error == "invalid_scope"
        assert await counts(pool) == before


@pytest.mark.parametrize(
    "uri",
    [
        REDIRECT + "/",  # trailing slash
        "https://APP.test/cb",  # case
        REDIRECT + "?extra=1",  # extra query
        "http://127.0.0.1:8123/cb",  # registered with ?x=1
        "",
    ],
)
async def test_redirect_uri_mismatch_is_not_redirected(
    settings: Settings, pool: asyncpg.Pool, uri: str
) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        code, error, _ = await oauth_error(s.authorize(redirect_uri=uri))
        assert (code, error) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_request")
        assert await pool.fetchval("SELECT count(*) FROM auth_requests") == 0
        # A registered URI with its own query is matched exactly and keeps its query.
        ok = await s.authorize(redirect_uri="http://127.0.0.1:8123/cb?x=1")
        done = await s.complete(ok.login_challenge, "read")
        assert query(done.redirect_to)["x"] == "1"


async def test_token_request_errors(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as s:
        code = await s.code(scope="read")
        before = await counts(pool)

        def redeem(**change: object) -> object:
            fields: dict[str, object] = {
                "grant_type": CODE,
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": VERIFIER,
            }
            fields.update(change)
            auth = fields.pop("auth", "web")
            return s.token(auth, **fields)  # type: ignore[arg-type]

        cases = [
            ({"code_verifier": "x" * 43}, "invalid_grant"),  # wrong verifier
            ({"code_verifier": ""}, "invalid_grant"),  # RFC 7636 §4.6, docs/flows.md §6
            ({"code_verifier": "short"}, "invalid_request"),
            ({"redirect_uri": REDIRECT + "/"}, "invalid_grant"),  # trailing slash
            ({"redirect_uri": "https://APP.test/cb"}, "invalid_grant"),  # case
            ({"redirect_uri": REDIRECT + "?a=b"}, "invalid_grant"),  # extra query
            ({"redirect_uri": ""}, "invalid_request"),
            ({"code": "tkr_ac_garbage"}, "invalid_grant"),
            ({"code": ""}, "invalid_request"),
            ({"scope": "read write"}, "invalid_scope"),  # escalation
            ({"auth": "demo"}, "unauthorized_client"),  # disallowed grant
        ]
        for change, expected in cases:
            _, error, _ = await oauth_error(redeem(**change))  # type: ignore[arg-type]
            assert error == expected, change
        assert await counts(pool) == before  # nothing written, the code is still good
        assert (await redeem()).access_token  # type: ignore[attr-defined]


async def test_code_reuse_revokes_everything_issued_from_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with issuer_suite(settings, pool) as s:
        code = await s.code(scope="read")
        fields = {
            "grant_type": CODE,
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
        }
        first = await s.token("web", **fields)
        runtime = await s.verifier("api")
        try:
            claims = await runtime.verifier.verify(first.access_token)
            _, error, description = await oauth_error(s.token("web", **fields))
            assert error == "invalid_grant" and "already used" in description
            # The family's revocation is durable, with its event in the outbox...
            rev = await pool.fetchrow(
                "SELECT * FROM revocations WHERE kind = 'grant' AND value = $1", claims["gid"]
            )
            assert rev is not None
            started = time.perf_counter()
            await asyncio.wait_for(runtime.state.wait_for_seq(rev["seq"]), timeout=10)
            print(
                f"\ncode reuse → family revocation applied: {time.perf_counter() - started:.3f} s"
            )
            # ...so a running verifier rejects the access token issued from the code,
            with pytest.raises(RevokedError):
                await runtime.verifier.verify(first.access_token)
        finally:
            await runtime.close()
        # and the refresh token issued from it is dead.
        _, error, _ = await oauth_error(
            s.token("web", grant_type="refresh_token", refresh_token=first.refresh_token)
        )
        assert error == "invalid_grant"


async def test_code_expiry(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        code = await s.code(scope="read")
        row = await pool.fetchrow("SELECT expires_at FROM auth_codes")
        assert row["expires_at"] - int(time.time()) <= 60  # docs/spec.md §2: at most 60 s
        # Age the code past its 60 s instead of sleeping through them.
        await pool.execute("UPDATE auth_codes SET expires_at = $1", int(time.time()) - 1)
        _, error, description = await oauth_error(
            s.token(
                "web", grant_type=CODE, code=code, redirect_uri=REDIRECT, code_verifier=VERIFIER
            )
        )
        assert error == "invalid_grant" and "expired" in description
        assert await pool.fetchval("SELECT count(*) FROM grants") == 0


async def test_front_channel_rules(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        started = await s.authorize()
        # Only a login provider (tokenry:login) or an admin may assert who the user is.
        code, error, _ = await oauth_error(s.complete(started.login_challenge, caller="demo"))
        assert (code, error) == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
        # Granting more than was requested is refused, and the challenge survives the refusal.
        _, error, _ = await oauth_error(
            s.complete(started.login_challenge, granted_scope="openid read write")
        )
        assert error == "invalid_scope"
        done = await s.complete(started.login_challenge, granted_scope="read")
        assert query(done.redirect_to)["code"]
        # The challenge is single-use.
        _, error, _ = await oauth_error(s.complete(started.login_challenge, "read"))
        assert error == "invalid_request"
        # A refusal by the user goes back to the client as access_denied, with state.
        again = await s.authorize()
        denied = await s.complete(again.login_challenge, deny=True)
        params = query(denied.redirect_to)
        assert (params["error"], params["state"]) == ("access_denied", STATE)
        assert "code" not in params
        # Unknown client: an error, never a redirect.
        _, error, _ = await oauth_error(s.authorize(client_id="nobody"))
        assert error == "invalid_client"


# --- the standards gaps of docs/flows.md §6 ------------------------------------------------------


async def test_an_empty_grant_grants_nothing(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool, services=("keyrotator", "issuer")) as s:
        started = await s.authorize()
        # RFC 9700 §4.15: a user's subject is never a client id; the challenge survives.
        _, error, description = await oauth_error(
            s.complete(started.login_challenge, "read", subject="demo")
        )
        assert error == "invalid_request" and "client id" in description
        # Nothing granted is a refusal: access_denied with state and iss, and no code.
        denied = await s.complete(started.login_challenge, "")
        assert denied.error == "access_denied"
        params = query(denied.redirect_to)
        assert (params["error"], params["state"]) == ("access_denied", STATE)
        assert params["iss"] == settings.issuer_url and "code" not in params
        assert await pool.fetchval("SELECT count(*) FROM auth_codes") == 0
        # The challenge was spent by the refusal.
        _, error, _ = await oauth_error(s.complete(started.login_challenge, "read"))
        assert error == "invalid_request"
        # Whitespace is no grant either.
        again = await s.authorize()
        assert (await s.complete(again.login_challenge, "  ")).error == "access_denied"


async def test_loopback_redirect_uris_ignore_only_the_port(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """RFC 8252 §7.3: registered http://127.0.0.1:8123/cb?x=1 and http://[::1]/native match on
    any port; §8.3: registered http://localhost:8123/cb is matched exactly."""
    async with issuer_suite(settings, pool) as s:
        for uri in (
            "http://127.0.0.1:53123/cb?x=1",
            "http://127.0.0.1/cb?x=1",
            "http://[::1]:40000/native",
            "http://localhost:8123/cb",
        ):
            ok = await s.authorize(redirect_uri=uri)
            assert ok.login_challenge, uri
        for uri in (
            "http://127.0.0.1:53123/cb",  # query
            "http://127.0.0.1:53123/cb?x=1&y=2",
            "http://127.0.0.1:53123/CB?x=1",  # path
            "https://127.0.0.1:53123/cb?x=1",  # scheme
            "http://localhost:53123/cb?x=1",  # host literal
            "http://[::1]:53123/cb?x=1",
            "http://127.0.0.1:53123@evil.test/cb?x=1",
            "http://127.0.0.1:0/cb?x=1",
            "http://[::1]:40000/native/",
            "http://localhost:9999/cb",  # §8.3: localhost is exact
        ):
            _, error, _ = await oauth_error(s.authorize(redirect_uri=uri))
            assert error == "invalid_request", uri
        # The token request repeats the authorization request's URI, port included.
        uri = "http://127.0.0.1:53123/cb?x=1"
        started = await s.authorize(redirect_uri=uri)
        done = await s.complete(started.login_challenge, "read")
        code = query(done.redirect_to)["code"]
        assert done.redirect_to.startswith("http://127.0.0.1:53123/cb?x=1&")
        fields = {"grant_type": CODE, "code": code, "code_verifier": VERIFIER}
        _, error, _ = await oauth_error(
            s.token("web", redirect_uri="http://127.0.0.1:53124/cb?x=1", **fields)
        )
        assert error == "invalid_grant"
        resp = await until_available(lambda: s.token("web", redirect_uri=uri, **fields))
        assert resp.access_token


async def test_resource_narrows_the_code_grant_audience(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """RFC 8707 §2.2 on the authorization-code token request (portal: api, svc-a, svc-b)."""
    async with issuer_suite(settings, pool) as s:
        fields = {"grant_type": CODE, "redirect_uri": REDIRECT, "code_verifier": VERIFIER}
        code = await s.code("portal", scope="read")
        _, error, _ = await oauth_error(
            s.token("portal", code=code, resource=["https://evil.test"], **fields)
        )
        assert error == "invalid_target"
        resp = await until_available(
            lambda: s.token("portal", code=code, resource=["svc-a"], **fields)
        )
        assert jwt.decode(resp.access_token, options={"verify_signature": False})["aud"] == "svc-a"
        # The refresh token keeps the grant's audiences.
        again = await s.token(
            "portal", grant_type="refresh_token", refresh_token=resp.refresh_token
        )
        aud = jwt.decode(again.access_token, options={"verify_signature": False})["aud"]
        assert sorted(aud) == ["api", "svc-a", "svc-b"]


async def test_a_code_presented_by_the_wrong_client_is_burnt(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Policy (RFC 6749 §4.1.3, §10.5; docs/flows.md §6)."""
    async with issuer_suite(settings, pool) as s:
        code = await s.code(scope="read")
        fields = {
            "grant_type": CODE,
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
        }
        _, error, description = await oauth_error(s.token("web-opaque", **fields))
        assert error == "invalid_grant" and "another client" in description
        assert await pool.fetchval("SELECT used_at FROM auth_codes") is not None
        _, error, description = await oauth_error(s.token("web", **fields))
        assert error == "invalid_grant" and "already used" in description
        assert await pool.fetchval("SELECT count(*) FROM grants") == 0
