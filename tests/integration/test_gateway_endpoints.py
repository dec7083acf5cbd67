"""The HTTP gateway's endpoints against the real PostgreSQL and NATS: token (every client
authentication method, RFC 6749 §5 answers), JWKS, discovery, introspection and revocation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses

import asyncpg
import jwt
import pytest

from tokenry.servicekit.config import Settings

from gateway_support import CLIENT_ASSERTION_TYPE, GatewaySuite, client_assertion, gateway_suite

pytestmark = pytest.mark.integration
CC = "client_credentials"


def no_store(resp: object) -> None:
    assert resp.headers["cache-control"] == "no-store"  # type: ignore[attr-defined]


async def verify_with_jwks(g: GatewaySuite, token: str, audience: str) -> dict[str, object]:
    jwks = (await g.http.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    return jwt.decode(
        token,
        key.key,
        algorithms=[key.algorithm_name],
        audience=audience,
        issuer=g.settings.issuer_url,
    )


async def test_client_credentials_basic_post_and_assertion(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        resp = await g.token("demo", scope="demo.read")
        assert resp.status_code == 200, resp.text
        no_store(resp)
        assert resp.headers["content-type"] == "application/json"
        body = resp.json()
        assert (body["token_type"], body["expires_in"], body["scope"]) == (
            "Bearer",
            600,
            "demo.read",
        )
        assert "refresh_token" not in body  # RFC 6749 §4.4.3
        claims = await verify_with_jwks(g, body["access_token"], "demo-api")
        assert claims["client_id"] == claims["sub"] == "demo"

        # client_secret_post
        resp = await g.http.post(
            "/oauth2/token",
            data={"grant_type": CC, "client_id": "demo", "client_secret": g.secrets["demo"]},
        )
        assert resp.status_code == 200, resp.text

        # private_key_jwt, aud = the issuer, then aud = this endpoint's URL
        for aud in (settings.issuer_url, settings.issuer_url + "/oauth2/token"):
            resp = await g.http.post(
                "/oauth2/token",
                data={
                    "grant_type": CC,
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": client_assertion("jwtsvc", aud),
                },
            )
            assert resp.status_code == 200, resp.text
        # the same assertion twice: replay refused (RFC 7523 §3)
        once = client_assertion("jwtsvc", settings.issuer_url)
        form = {
            "grant_type": CC,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": once,
        }
        assert (await g.http.post("/oauth2/token", data=form)).status_code == 200
        again = await g.http.post("/oauth2/token", data=form)
        assert again.status_code == 401 and again.json()["error"] == "invalid_client"


async def test_token_errors(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        secret = g.secrets["demo"]
        # wrong secret: 401 with WWW-Authenticate (RFC 6749 §5.2)
        resp = await g.http.post("/oauth2/token", data={"grant_type": CC}, auth=("demo", "nope"))
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Basic")
        assert resp.json()["error"] == "invalid_client"
        no_store(resp)
        # two methods at once: invalid_request (RFC 6749 §2.3)
        resp = await g.http.post(
            "/oauth2/token",
            data={"grant_type": CC, "client_id": "demo", "client_secret": secret},
            auth=("demo", secret),
        )
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
        # Basic credentials are form-decoded (RFC 6749 §2.3.1): "%64emo" is "demo"
        raw = base64.b64encode(f"%64emo:{secret}".encode()).decode()
        resp = await g.http.post(
            "/oauth2/token", data={"grant_type": CC}, headers={"authorization": f"Basic {raw}"}
        )
        assert resp.status_code == 200, resp.text
        # no password grant, ever; unknown grants
        for grant in ("password", "implicit", "urn:x"):
            resp = await g.token("demo", grant_type=grant)
            assert (resp.status_code, resp.json()["error"]) == (400, "unsupported_grant_type")
        # a scope the client does not have
        resp = await g.token("demo", scope="tokenry:admin")
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_scope")
        # malformed bodies
        resp = await g.http.post(
            "/oauth2/token",
            content=b'{"grant_type":"client_credentials"}',
            headers={"content-type": "application/json"},
            auth=("demo", secret),
        )
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
        resp = await g.http.post(
            "/oauth2/token",
            content=b"grant_type=client_credentials&grant_type=x",
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=("demo", secret),
        )
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
        resp = await g.http.post(
            "/oauth2/token",
            content=b"grant_type=%ff%fe",
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=("demo", secret),
        )
        assert resp.status_code == 400
        resp = await g.http.post(
            "/oauth2/token",
            content=b"a=" + b"x" * 70_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=("demo", secret),
        )
        assert resp.status_code == 400
        # a bearer token in the query string is refused
        resp = await g.http.post(
            "/oauth2/introspect?access_token=abc", data={"token": "x"}, auth=("demo", secret)
        )
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
        # wrong method
        assert (await g.http.get("/oauth2/token")).status_code == 405


async def test_jwks_and_discovery(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        resp = await g.http.get("/.well-known/jwks.json")
        assert resp.status_code == 200
        keys = resp.json()["keys"]
        assert keys and all("d" not in k and "kid" in k and "alg" in k for k in keys)
        cache = resp.headers["cache-control"]
        max_age = int(cache.split("max-age=")[1])
        assert 0 < max_age < 3600  # below the key publish lead (1 h by default)
        etag = resp.headers["etag"]
        again = await g.http.get("/.well-known/jwks.json", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.content == b""

        for path in (
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ):
            doc = (await g.http.get(path)).json()
            assert doc["issuer"] == settings.issuer_url
            assert doc["token_endpoint"] == settings.issuer_url + "/oauth2/token"
            assert doc["code_challenge_methods_supported"] == ["S256"]
            assert doc["response_types_supported"] == ["code"]
            assert "password" not in doc["grant_types_supported"]
            assert "implicit" not in doc["grant_types_supported"]
            assert set(doc["token_endpoint_auth_methods_supported"]) == {
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            }
            assert "ES256" in doc["token_endpoint_auth_signing_alg_values_supported"]
            assert doc["authorization_response_iss_parameter_supported"] is True
        oidc = (await g.http.get("/.well-known/openid-configuration")).json()
        assert "RS256" in oidc["id_token_signing_alg_values_supported"]


async def test_introspection_and_revocation(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        opaque = (await g.token("opaque-svc", scope="demo.read")).json()["access_token"]
        assert opaque.startswith("tkr_at_")
        resp = await g.introspect(opaque, caller="demo-api")
        assert resp.status_code == 200
        no_store(resp)
        body = resp.json()
        assert body["active"] is True and body["client_id"] == "opaque-svc"
        assert body["token_type"] == "Bearer" and body["aud"] == ["demo-api"]
        # not for you, garbage, unknown: {"active": false} and nothing else (no oracle)
        assert (await g.introspect(opaque, caller="api")).json() == {"active": False}
        assert (await g.introspect("garbage", caller="demo-api")).json() == {"active": False}
        assert (await g.introspect("", caller="demo-api")).json() == {"active": False}
        # a caller without tokenry:introspect is refused
        resp = await g.introspect(opaque, caller="demo")
        assert (resp.status_code, resp.json()["error"]) == (403, "insufficient_scope")

        # revocation: another client may not revoke it (RFC 7009 §2.1)
        resp = await g.revoke(opaque, caller="demo")
        assert (resp.status_code, resp.json()["error"]) == (400, "unauthorized_client")
        # unknown or garbage tokens: 200 (RFC 7009 §2.2)
        assert (await g.revoke("tkr_at_nothing", caller="demo")).status_code == 200
        assert (await g.revoke("a.b.c", caller="demo")).status_code == 200
        resp = await g.revoke(opaque, caller="opaque-svc", token_type_hint="refresh_token")
        assert resp.status_code == 200 and resp.content == b""
        seq = await pool.fetchval("SELECT max(seq) FROM outbox")
        await asyncio.wait_for(g.applied.reached(seq), 10)
        assert (await g.introspect(opaque, caller="demo-api")).json() == {"active": False}

        # a JWT: introspected by its audience, revoked by its client, then inactive
        token = (await g.token("demo", scope="demo.read")).json()["access_token"]
        assert (await g.introspect(token, caller="demo-api")).json()["active"] is True
        assert (await g.revoke(token, caller="demo")).status_code == 200
        seq = await pool.fetchval("SELECT max(seq) FROM outbox")
        await asyncio.wait_for(g.applied.reached(seq), 10)
        assert (await g.introspect(token, caller="demo-api")).json() == {"active": False}
        # a revocation request without a token
        resp = await g.http.post("/oauth2/revoke", data={}, auth=g.basic("demo"))
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")


async def test_issuer_with_a_path_serves_path_inserted_metadata(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """RFC 8414 §3.1 (inserted) and OIDC Discovery §4 (appended) for https://issuer.test/t1."""
    tenant = dataclasses.replace(settings, issuer_url="https://issuer.test/t1")
    async with gateway_suite(tenant, pool) as g:
        for path in (
            "/.well-known/oauth-authorization-server/t1",
            "/t1/.well-known/openid-configuration",
        ):
            resp = await g.http.get(path)
            assert resp.status_code == 200, path
            doc = resp.json()
            assert doc["issuer"] == "https://issuer.test/t1"
            assert doc["token_endpoint"] == "https://issuer.test/t1/oauth2/token"
