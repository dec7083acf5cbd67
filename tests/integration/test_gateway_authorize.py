"""/oauth2/authorize → login → consent → redirect with code, state and iss (RFC 9207), over the
real gateway: security headers, CSRF, error redirects, throttling, and the code redeemed."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tokenry.servicekit.config import Settings

from gateway_support import (
    REDIRECT,
    authorize_url,
    browser_login,
    gateway_suite,
    hidden_fields,
    query,
    redeem,
)

pytestmark = pytest.mark.integration


async def test_code_flow_through_the_pages(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        page = await g.http.get(authorize_url())
        assert page.status_code == 200
        for name, value in {
            "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "cache-control": "no-store",
        }.items():
            assert page.headers[name] == value
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert "Web Portal" in page.text and '<label for="password">' in page.text

        resp = await browser_login(g.http, authorize_url())
        assert resp.status_code == 303
        location = resp.headers["location"]
        assert location.startswith(REDIRECT + "?")
        q = query(location)
        assert q["state"] == "st&=/ é" and q["iss"] == settings.issuer_url and q["code"]
        tokens = await redeem(g, q["code"])
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        assert body["refresh_token"] and body["id_token"] and body["scope"] == "openid read"
        # refresh rotates
        refreshed = await g.http.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            auth=g.basic("web"),
        )
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["refresh_token"] != body["refresh_token"]
        # the code is single-use, and its reuse revokes the family (RFC 6749 §4.1.2)
        again = await redeem(g, q["code"])
        assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_errors_deny_csrf_and_throttling(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        # an unregistered redirect URI or an unknown client: an error page, never a redirect
        for bad in (
            authorize_url(redirect_uri="https://evil.test/cb"),
            authorize_url(client_id="nobody"),
        ):
            resp = await g.http.get(bad)
            assert resp.status_code == 400 and "location" not in resp.headers
        # a redirectable error carries state and iss (RFC 6749 §4.1.2.1, RFC 9207 §2)
        resp = await g.http.get(authorize_url(code_challenge_method="plain"))
        assert resp.status_code == 303
        q = query(resp.headers["location"])
        assert q["error"] == "invalid_request" and q["iss"] == settings.issuer_url
        assert q["state"] == "st&=/ é"
        # a bearer token in the query string is refused
        resp = await g.http.get(authorize_url(access_token="x"))
        assert resp.status_code == 400 and "location" not in resp.headers
        # deny, and an empty grant (nothing ticked) grants nothing
        for kwargs in ({"decision": "deny"}, {"scopes": []}):
            resp = await browser_login(g.http, authorize_url(), **kwargs)
            assert resp.status_code == 303
            assert query(resp.headers["location"])["error"] == "access_denied"
        # CSRF: the login form posted without the session cookie is refused
        page = await g.http.get(authorize_url())
        fields = hidden_fields(page.text)
        g.http.cookies.clear()
        resp = await g.http.post(
            "/oauth2/login", data={**fields, "username": "alice", "password": "x"}
        )
        assert resp.status_code == 400
        # wrong password: inline error; then throttled
        page = await g.http.get(authorize_url())
        fields = hidden_fields(page.text)
        statuses = []
        for _ in range(6):
            resp = await g.http.post(
                "/oauth2/login", data={**fields, "username": "alice", "password": "wrong-one"}
            )
            statuses.append(resp.status_code)
        assert statuses[:5] == [401] * 5 and statuses[5] == 429
        assert "Wrong username or password" in resp.text or "Too many attempts" in resp.text


async def test_userinfo(settings: Settings, pool: asyncpg.Pool) -> None:
    """OIDC Core §5.3 with RFC 6750 errors; a revoked token is refused at once."""
    async with gateway_suite(settings, pool) as g:
        q = query((await browser_login(g.http, authorize_url())).headers["location"])
        tokens = await redeem(g, q["code"])
        access = tokens.json()["access_token"]
        bearer = {"authorization": f"Bearer {access}"}
        for method in ("GET", "POST"):
            resp = await g.http.request(method, "/oauth2/userinfo", headers=bearer)
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"sub": "alice"}
            assert resp.headers["cache-control"] == "no-store"
        # no token: a bare challenge; a token in the query string: invalid_request
        resp = await g.http.get("/oauth2/userinfo")
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")
        resp = await g.http.get(f"/oauth2/userinfo?access_token={access}")
        assert resp.status_code == 400
        # a client-credentials token has no openid scope
        cc = (await g.token("demo", scope="demo.read")).json()["access_token"]
        resp = await g.http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {cc}"})
        assert (
            resp.status_code == 403
            and 'error="insufficient_scope"' in resp.headers["www-authenticate"]
        )
        # revoked: refused at once
        assert (await g.revoke(access, caller="web")).status_code == 200
        seq = await pool.fetchval("SELECT max(seq) FROM outbox")
        await asyncio.wait_for(g.applied.reached(seq), 10)
        resp = await g.http.get("/oauth2/userinfo", headers=bearer)
        assert (
            resp.status_code == 401 and 'error="invalid_token"' in resp.headers["www-authenticate"]
        )
