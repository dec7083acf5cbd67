"""The gateway's browser features over the real gateway (docs/gateway.md): per-client CORS,
first-party clients, the login session with prompt and max_age (OIDC Core §3.1.2.1),
TOKENRY_LOGIN_URL (an external login app) and RP-initiated logout."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import jwt
import pytest
from typer.testing import CliRunner

from tokenry.cli.main import app as cli_app
from tokenry.core.clients import AUTHORIZATION_CODE, PUBLIC, Client, validate_registration
from tokenry.core.errors import InvalidRequest
from tokenry.servicekit.config import Settings
from tokenry.v1 import clients_pb2, clients_pb2_grpc, issuer_pb2, issuer_pb2_grpc

from gateway_support import (
    LOGGED_OUT,
    PASSWORD,
    SPA_ORIGIN,
    USER,
    GatewaySuite,
    authorize_url,
    browser_login,
    gateway_suite,
    hidden_fields,
    query,
    redeem,
)
from suite import basic

pytestmark = pytest.mark.integration

EVIL = "https://evil.test"
LOGIN_COOKIE = "tkr_login"


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "authorization, content-type",
    }


async def sign_in(g: GatewaySuite, client_id: str = "web", **params: str) -> dict[str, str]:
    """Through login and consent: the redirect's query."""
    resp = await browser_login(g.http, authorize_url(client_id=client_id, **params))
    assert resp.status_code == 303, resp.text
    return query(resp.headers["location"])


# --- CORS ------------------------------------------------------------------------------------


async def test_cors_answers_only_the_clients_own_origins(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        # Preflights: a registered origin gets its own name back (never '*', never credentials)
        pre = await g.http.options("/oauth2/token", headers=preflight(SPA_ORIGIN))
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == SPA_ORIGIN
        assert pre.headers["vary"] == "Origin"
        assert "content-type" in pre.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in pre.headers
        pre = await g.http.options("/oauth2/token", headers=preflight(EVIL))
        assert "access-control-allow-origin" not in pre.headers
        # introspection is for resource servers: no CORS at all
        pre = await g.http.options("/oauth2/introspect", headers=preflight(SPA_ORIGIN))
        assert pre.status_code == 405 and "access-control-allow-origin" not in pre.headers

        # the SPA's code redeemed from its origin: readable there
        q = await sign_in(g, "spa")
        tokens = await redeem(g, q["code"], "spa", headers={"origin": SPA_ORIGIN})
        assert tokens.status_code == 200, tokens.text
        assert tokens.headers["access-control-allow-origin"] == SPA_ORIGIN
        assert tokens.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in tokens.headers
        access, refresh = tokens.json()["access_token"], tokens.json()["refresh_token"]
        # an error for the SPA is readable by the SPA; the same request from another origin not
        bogus = {"grant_type": "refresh_token", "refresh_token": "nope", "client_id": "spa"}
        err = await g.http.post("/oauth2/token", data=bogus, headers={"origin": SPA_ORIGIN})
        assert err.status_code == 400
        assert err.headers["access-control-allow-origin"] == SPA_ORIGIN
        err = await g.http.post("/oauth2/token", data=bogus, headers={"origin": EVIL})
        assert "access-control-allow-origin" not in err.headers
        assert err.headers["vary"] == "Origin"
        # per client: another client's answer is not readable at the SPA's origin
        cc = await g.http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=g.basic("demo"),
            headers={"origin": SPA_ORIGIN},
        )
        assert cc.status_code == 200 and "access-control-allow-origin" not in cc.headers
        # introspection never answers a browser origin
        seen = await g.http.post(
            "/oauth2/introspect",
            data={"token": access},
            auth=g.basic("api"),
            headers={"origin": SPA_ORIGIN},
        )
        assert seen.json()["active"] is True
        assert "access-control-allow-origin" not in seen.headers

        # userinfo: by the token's client; the RFC 6750 challenge is exposed
        pre = await g.http.options("/oauth2/userinfo", headers=preflight(SPA_ORIGIN, "GET"))
        assert pre.headers["access-control-allow-origin"] == SPA_ORIGIN
        bearer = {"authorization": f"Bearer {access}"}
        info = await g.http.get("/oauth2/userinfo", headers={**bearer, "origin": SPA_ORIGIN})
        assert info.status_code == 200
        assert info.headers["access-control-allow-origin"] == SPA_ORIGIN
        assert info.headers["access-control-expose-headers"] == "WWW-Authenticate"
        info = await g.http.get("/oauth2/userinfo", headers={**bearer, "origin": EVIL})
        assert info.status_code == 200 and "access-control-allow-origin" not in info.headers
        # a web client's token read from the SPA's origin: not that client's origin
        web = await redeem(g, (await sign_in(g))["code"])
        other = {"authorization": f"Bearer {web.json()['access_token']}", "origin": SPA_ORIGIN}
        info = await g.http.get("/oauth2/userinfo", headers=other)
        assert info.status_code == 200 and "access-control-allow-origin" not in info.headers

        # revocation from the SPA
        gone = await g.http.post(
            "/oauth2/revoke",
            data={"token": refresh, "client_id": "spa"},
            headers={"origin": SPA_ORIGIN},
        )
        assert gone.status_code == 200, gone.text
        assert gone.headers["access-control-allow-origin"] == SPA_ORIGIN

        # the JWKS and discovery are public: '*', no credentials, for any origin
        for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration"):
            doc = await g.http.get(path, headers={"origin": EVIL})
            assert doc.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in doc.headers
            pre = await g.http.options(path, headers=preflight(EVIL, "GET"))
            assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"


# --- registration ----------------------------------------------------------------------------


async def test_registration_carries_origins_first_party_and_logout_uris(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with gateway_suite(settings, pool, services=("keyrotator", "issuer")) as g:
        env = {
            "TOKENRY_HOME": str(tmp_path),
            "TOKENRY_ISSUER_ADDR": g.suite.addrs["issuer"],
            "TOKENRY_CLIENT_ID": "admin",
            "TOKENRY_CLIENT_SECRET": g.secrets["admin"],
        }

        async def cli(*args: str) -> Any:
            # The CLI is synchronous gRPC: run it off the loop that serves the issuer.
            return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=env)

        made = await cli(
            "client", "create", "console", "--grant", "authorization_code",
            "--redirect-uri", "https://console.test/cb", "--scope", "openid",
            "--audience", "api", "--web-origin", "https://console.test",
            "--web-origin", "http://127.0.0.1:5173", "--first-party",
            "--post-logout-redirect-uri", "https://console.test/bye",
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        shown = json.loads(made.stdout)
        assert shown["web_origins"] == ["https://console.test", "http://127.0.0.1:5173"]
        assert shown["first_party"] is True
        assert shown["post_logout_redirect_uris"] == ["https://console.test/bye"]
        # exact origins only: a wildcard, a path, an upper-case host, http off loopback
        for bad in ("https://*.console.test", "https://console.test/", "https://Console.test",
                    "http://console.test", "https://console.test:443", "null"):  # fmt: skip
            refused = await cli(
                "client", "create", "bad-origin", "--grant", "authorization_code",
                "--redirect-uri", "https://console.test/cb", "--audience", "api",
                "--web-origin", bad,
            )  # fmt: skip
            assert refused.exit_code == 2 and "web origin" in refused.output, (bad, refused.output)

        # update in place: the running gateway follows the clients.updated event (its cached
        # copy of the client is dropped)
        secret = shown["client_secret"]

        async def token_from(origin: str) -> httpx.Response:
            return await g.http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},  # not its grant: an error, readable
                auth=httpx.BasicAuth("console", secret),
                headers={"origin": origin},
            )

        before = await token_from("https://console.test")
        assert before.headers["access-control-allow-origin"] == "https://console.test"
        pre = await g.http.options("/oauth2/token", headers=preflight("https://new.test"))
        assert "access-control-allow-origin" not in pre.headers
        changed = await cli(
            "client", "update", "console", "--web-origin", "https://new.test", "--third-party",
            "--no-post-logout-redirect-uris",
        )  # fmt: skip
        assert changed.exit_code == 0, changed.output
        after = json.loads(changed.stdout)
        assert after["web_origins"] == ["https://new.test"] and after["first_party"] is False
        assert after["post_logout_redirect_uris"] == []
        assert after["redirect_uris"] == ["https://console.test/cb"]  # untouched
        seq = await pool.fetchval("SELECT max(seq) FROM outbox")
        await asyncio.wait_for(g.applied.reached(seq), 10)
        pre = await g.http.options("/oauth2/token", headers=preflight("https://new.test"))
        assert pre.headers["access-control-allow-origin"] == "https://new.test"
        assert (await token_from("https://new.test")).headers["access-control-allow-origin"]
        assert (
            "access-control-allow-origin" not in (await token_from("https://console.test")).headers
        )
        page = await g.http.get(
            authorize_url(client_id="console", redirect_uri="https://console.test/cb",
                          scope="openid", prompt="none")
        )  # fmt: skip
        assert query(page.headers["location"])["error"] == "login_required"
        # what an issued token depends on cannot be updated; an unknown client is not found
        stub = clients_pb2_grpc.ClientsStub(g.suite.channel("issuer"))
        admin = [("authorization", basic("admin", g.secrets["admin"]))]
        for request, code in (
            (
                clients_pb2.UpdateClientRequest(
                    client=clients_pb2.ClientInfo(client_id="console", scopes=["x"]),
                    update_mask=["scopes"],
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                clients_pb2.UpdateClientRequest(
                    client=clients_pb2.ClientInfo(client_id="nobody", first_party=True),
                    update_mask=["first_party"],
                ),
                grpc.StatusCode.NOT_FOUND,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.UpdateClient(request, metadata=admin)
            assert err.value.code() == code
        nothing = await cli("client", "update", "console")
        assert nothing.exit_code == 2
    # RFC 8252 §8.6: no consent skipped for a public client whose codes a loopback listener
    # or a custom scheme could catch
    for uri in ("http://127.0.0.1/cb", "com.example.app:/cb"):
        spec = Client(
            client_id="native",
            secret_hash=None,
            pepper_id=None,
            grant_types=frozenset({AUTHORIZATION_CODE}),
            scopes=frozenset({"openid"}),
            audiences=("api",),
            client_type=PUBLIC,
            auth_method="none",
            redirect_uris=(uri,),
            first_party=True,
        )
        with pytest.raises(InvalidRequest, match="RFC 8252"):
            validate_registration(spec, registrar_is_admin=True)


# --- first-party clients ---------------------------------------------------------------------


async def test_first_party_skips_consent_but_not_login(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        page = await g.http.get(authorize_url(client_id="first", scope="openid read"))
        assert page.status_code == 200 and 'id="password"' in page.text  # login still asked
        login = await g.http.post(
            "/oauth2/login",
            data={**hidden_fields(page.text), "username": USER, "password": PASSWORD},
        )
        assert login.status_code == 303, login.text  # no consent page
        q = query(login.headers["location"])
        tokens = await redeem(g, q["code"], "first")
        assert tokens.status_code == 200, tokens.text
        assert tokens.json()["scope"] == "openid read"  # exactly what was asked and allowed
        # prompt=consent shows the page anyway
        page = await g.http.get(authorize_url(client_id="first", prompt="consent"))
        assert 'name="grant_scope"' in page.text

        # the pending form is MACed: "consent=skip" posted for a client that is not
        # first-party is refused
        g.http.cookies.clear()
        page = await g.http.get(authorize_url())
        fields = {**hidden_fields(page.text), "consent": "skip"}
        resp = await g.http.post(
            "/oauth2/login", data={**fields, "username": USER, "password": PASSWORD}
        )
        assert resp.status_code == 400 and "location" not in resp.headers


# --- the login session, prompt and max_age -------------------------------------------------


async def test_prompt_none_without_a_session_is_login_required(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        resp = await g.http.get(authorize_url(prompt="none"))
        assert resp.status_code == 303
        q = query(resp.headers["location"])
        assert q["error"] == "login_required"
        assert q["iss"] == settings.issuer_url and q["state"] == "st&=/ é"
        # malformed prompt and max_age: redirectable invalid_request
        for bad in ({"prompt": "none login"}, {"prompt": "bogus"}, {"max_age": "-1"}):
            resp = await g.http.get(authorize_url(**bad))
            assert resp.status_code == 303, bad
            assert query(resp.headers["location"])["error"] == "invalid_request", bad


async def test_session_prompt_and_max_age(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        first = await redeem(g, (await sign_in(g))["code"])
        signed_in_at = claims(first.json()["id_token"])["auth_time"]
        cookie = g.http.cookies.get(LOGIN_COOKIE)
        assert cookie
        stored = await pool.fetchval("SELECT count(*) FROM login_sessions")
        assert stored >= 1
        # the session: no login page, straight to consent, as alice
        page = await g.http.get(authorize_url())
        assert 'id="password"' not in page.text and "Signed in as <strong>alice" in page.text
        # prompt=none: consent cannot be shown for a third-party client...
        resp = await g.http.get(authorize_url(prompt="none"))
        assert query(resp.headers["location"])["error"] == "consent_required"
        # ...but a first-party client gets its code with no page at all
        resp = await g.http.get(authorize_url(client_id="first", prompt="none"))
        assert resp.status_code == 303 and "code" in query(resp.headers["location"])
        # prompt=login and max_age=0: sign in again
        for params in ({"prompt": "login"}, {"max_age": "0"}, {"prompt": "select_account"}):
            page = await g.http.get(authorize_url(**params))
            assert page.status_code == 200 and 'id="password"' in page.text, params
        resp = await g.http.get(authorize_url(prompt="none", max_age="0"))
        assert query(resp.headers["location"])["error"] == "login_required"

        # a sign-in 100 s ago: max_age=50 asks again, max_age=1000 does not, and the ID token
        # carries the session's auth_time, not the time of this request (OIDC Core §2)
        old = int(time.time()) - 100
        await pool.execute("UPDATE login_sessions SET auth_time = $1", old)
        page = await g.http.get(authorize_url(max_age="50"))
        assert 'id="password"' in page.text
        page = await g.http.get(authorize_url(max_age="1000"))
        assert 'id="password"' not in page.text
        fields = hidden_fields(page.text)
        resp = await g.http.post(
            "/oauth2/consent",
            data={**fields, "grant_scope": fields["scope"].split(), "decision": "allow"},
        )
        tokens = await redeem(g, query(resp.headers["location"])["code"])
        assert claims(tokens.json()["id_token"])["auth_time"] == old != signed_in_at
        # the session outlives nothing it should not: an expired row is no session
        await pool.execute("UPDATE login_sessions SET expires_at = 1")
        page = await g.http.get(authorize_url())
        assert 'id="password"' in page.text


# --- TOKENRY_LOGIN_URL -----------------------------------------------------------------------


async def test_external_login_app(settings: Settings, pool: asyncpg.Pool) -> None:
    login_url = "https://login.test/signin?tenant=a"
    async with gateway_suite(
        settings, pool, services=("keyrotator", "issuer"), login_url=login_url
    ) as g:
        resp = await g.http.get(authorize_url(prompt="login", max_age="60"))
        assert resp.status_code == 303
        location = resp.headers["location"]
        assert location.startswith("https://login.test/signin?")
        q = query(location)
        assert q["tenant"] == "a" and q["client_id"] == "web" and q["scope"] == "openid read"
        assert q["prompt"] == "login" and q["max_age"] == "60"
        # the external app completes through the issuer's CompleteAuthorization
        issuer = issuer_pb2_grpc.IssuerStub(g.suite.channel("issuer"))
        login = [("authorization", basic("login", g.secrets["login"]))]
        # prompt=login and max_age demand a stated, fresh sign-in (OIDC Core §3.1.2.1): an app
        # that leaves auth_time out is refused, and the challenge stays usable.
        stale = issuer.CompleteAuthorization(
            issuer_pb2.CompleteAuthorizationRequest(
                login_challenge=q["login_challenge"], subject="bob", granted_scope="openid"
            ),
            metadata=login,
        )
        with pytest.raises(grpc.aio.AioRpcError, match="auth_time is required"):
            await stale
        signed_in = int(time.time())
        done = await issuer.CompleteAuthorization(
            issuer_pb2.CompleteAuthorizationRequest(
                login_challenge=q["login_challenge"],
                subject="bob",
                granted_scope="openid",
                auth_time=signed_in,
            ),
            metadata=login,
        )
        code = query(done.redirect_to)["code"]
        tokens = await redeem(g, code)
        assert tokens.status_code == 200 and claims(tokens.json()["id_token"])["sub"] == "bob"
        # prompt=none with no session there: the app answers login_required, with iss
        resp = await g.http.get(authorize_url(prompt="none"))
        challenge = query(resp.headers["location"])["login_challenge"]
        done = await issuer.CompleteAuthorization(
            issuer_pb2.CompleteAuthorizationRequest(
                login_challenge=challenge, deny=True, error="login_required"
            ),
            metadata=login,
        )
        q = query(done.redirect_to)
        assert q["error"] == "login_required" and q["iss"] == settings.issuer_url


# --- RP-initiated logout ---------------------------------------------------------------------


async def test_logout(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        doc = (await g.http.get("/.well-known/openid-configuration")).json()
        assert doc["end_session_endpoint"] == settings.issuer_url.rstrip("/") + "/oauth2/logout"
        assert "none" in doc["prompt_values_supported"]

        id_token = (await redeem(g, (await sign_in(g))["code"])).json()["id_token"]
        # an unregistered return address, a forged hint, a mismatched client: error pages
        for params in (
            {"id_token_hint": id_token, "post_logout_redirect_uri": "https://evil.test/"},
            {"id_token_hint": id_token[:-4] + "AAAA", "post_logout_redirect_uri": LOGGED_OUT},
            {"id_token_hint": id_token, "client_id": "spa"},
            {"client_id": "spa", "post_logout_redirect_uri": LOGGED_OUT},
            {"post_logout_redirect_uri": LOGGED_OUT},
        ):
            resp = await g.http.get("/oauth2/logout", params=params)
            assert resp.status_code == 400 and "location" not in resp.headers, params
        assert g.http.cookies.get(LOGIN_COOKIE)  # still signed in

        # no hint naming the user: ask first (a cross-site link cannot sign anyone out)
        page = await g.http.get(
            "/oauth2/logout",
            params={"client_id": "web", "post_logout_redirect_uri": LOGGED_OUT, "state": "s1"},
        )
        assert page.status_code == 200 and "Sign out?" in page.text
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 1
        fields = hidden_fields(page.text)
        stay = await g.http.post("/oauth2/logout", data={**fields, "decision": "stay"})
        assert stay.status_code == 303 and g.http.cookies.get(LOGIN_COOKIE)
        forged = await g.http.post(
            "/oauth2/logout", data={**fields, "logout_csrf": "0" * 64, "decision": "logout"}
        )
        assert forged.status_code == 200 and "Sign out?" in forged.text
        resp = await g.http.post("/oauth2/logout", data={**fields, "decision": "logout"})
        assert resp.status_code == 303 and resp.headers["location"] == LOGGED_OUT + "?state=s1"
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0
        assert not g.http.cookies.get(LOGIN_COOKIE)
        resp = await g.http.get(authorize_url(prompt="none"))
        assert query(resp.headers["location"])["error"] == "login_required"

        # with the user's own ID token as hint: no question, back to the registered URI
        id_token = (await redeem(g, (await sign_in(g))["code"])).json()["id_token"]
        stolen = dict(g.http.cookies)
        resp = await g.http.get(
            "/oauth2/logout",
            params={
                "id_token_hint": id_token,
                "post_logout_redirect_uri": LOGGED_OUT,
                "state": "s2",
            },
        )
        assert resp.status_code == 303 and resp.headers["location"] == LOGGED_OUT + "?state=s2"
        # the session is gone on the server, so a copied cookie signs nobody in
        async with httpx.AsyncClient(base_url=g.url, cookies=stolen) as copy:
            page = await copy.get(authorize_url())
            assert 'id="password"' in page.text
        # nothing to sign out of, no return address: the signed-out page
        resp = await g.http.get("/oauth2/logout")
        assert resp.status_code == 200 and "Signed out" in resp.text


# --- login session: fixation, logout vs. an open consent page -------------------------------


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def test_sign_in_replaces_the_login_session(settings: Settings, pool: asyncpg.Pool) -> None:
    """No session fixation: a sign-in while holding a tkr_login cookie (planted or old) never
    keeps it; the old row is deleted and the cookie gets a new value."""
    async with gateway_suite(settings, pool) as g:
        # plain HTTP (dev): the plain cookie name, at /oauth2 (a __Host- one needs Secure)
        first = await g.http.get(authorize_url())
        assert first.headers["set-cookie"].startswith("tkr_session=")
        assert "Path=/oauth2" in first.headers["set-cookie"]
        await sign_in(g)
        old = g.http.cookies.get(LOGIN_COOKIE)
        assert old
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 1
        page = await g.http.get(authorize_url(prompt="login"))
        assert 'id="password"' in page.text
        login = await g.http.post(
            "/oauth2/login",
            data={**hidden_fields(page.text), "username": USER, "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
        new = g.http.cookies.get(LOGIN_COOKIE)
        assert new and new != old
        gone = "SELECT count(*) FROM login_sessions WHERE token_hash = $1"
        assert await pool.fetchval(gone, token_hash(old)) == 0
        assert await pool.fetchval(gone, token_hash(new)) == 1
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 1


async def test_consent_page_left_open_after_logout_issues_no_code(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        await sign_in(g)
        page = await g.http.get(authorize_url())  # the session's consent page, as alice
        assert "Signed in as <strong>alice" in page.text
        fields = hidden_fields(page.text)
        old = g.http.cookies.get(LOGIN_COOKIE)
        # signed out in this browser (the confirmation form, no hint)
        ask = await g.http.get("/oauth2/logout")
        out = await g.http.post(
            "/oauth2/logout", data={**hidden_fields(ask.text), "decision": "logout"}
        )
        assert out.status_code == 200 and "Signed out" in out.text
        assert not g.http.cookies.get(LOGIN_COOKIE)
        allow = {**fields, "grant_scope": fields["scope"].split(), "decision": "allow"}
        resp = await g.http.post("/oauth2/consent", data=allow)
        assert resp.status_code == 400 and "location" not in resp.headers, resp.text
        # ...and a copy of the old cookie (its MAC matches) does not revive it: the row is gone
        async with httpx.AsyncClient(base_url=g.url, cookies=dict(g.http.cookies)) as copy:
            copy.cookies.set(LOGIN_COOKIE, old, path="/oauth2")
            resp = await copy.post("/oauth2/consent", data=allow)
            assert resp.status_code == 400 and "location" not in resp.headers


async def test_cross_site_logout_post_goes_through_a_same_site_get(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """RP-Initiated Logout 1.0 §2 allows POST; a cross-site POST carries no SameSite=Lax cookie
    (httpx ignores SameSite: a cookieless client stands for it), so the gateway answers with a
    303 to GET /oauth2/logout, whose top-level navigation does carry the cookie."""
    async with gateway_suite(settings, pool) as g:
        id_token = (await redeem(g, (await sign_in(g))["code"])).json()["id_token"]
        form = {"id_token_hint": id_token, "post_logout_redirect_uri": LOGGED_OUT, "state": "s3"}
        async with httpx.AsyncClient(base_url=g.url) as cross_site:
            resp = await cross_site.post("/oauth2/logout", data=form)
        assert resp.status_code == 303
        location = resp.headers["location"]
        assert location.startswith("/oauth2/logout?") and query(location) == form
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 1
        # the browser follows it with its cookie: signed out, back to the client
        resp = await g.http.get(location)
        assert resp.status_code == 303 and resp.headers["location"] == LOGGED_OUT + "?state=s3"
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0
        assert not g.http.cookies.get(LOGIN_COOKIE)
        # a bad request is still an error page, never a redirect
        async with httpx.AsyncClient(base_url=g.url) as cross_site:
            bad = {**form, "post_logout_redirect_uri": "https://evil.test/"}
            resp = await cross_site.post("/oauth2/logout", data=bad)
        assert resp.status_code == 400 and "location" not in resp.headers


async def test_an_id_token_of_an_ended_session_does_not_skip_the_question(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """RP-Initiated Logout 1.0 §2: ask when the hint "does not belong to the current OP
    session" — the same user's ID token from an earlier session is not this session's."""
    async with gateway_suite(settings, pool) as g:
        old_token = (await redeem(g, (await sign_in(g))["code"])).json()["id_token"]
        # the session it came from ends; a later one starts (same user, signed in later)
        await pool.execute("DELETE FROM login_sessions")
        await sign_in(g)
        later = claims(old_token)["auth_time"] + 10
        await pool.execute("UPDATE login_sessions SET auth_time = $1", later)
        hint = {"id_token_hint": old_token, "post_logout_redirect_uri": LOGGED_OUT}
        page = await g.http.get("/oauth2/logout", params=hint)
        assert page.status_code == 200 and "Sign out?" in page.text
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 1
        # an ID token of this session (it carries the session's auth_time): no question
        page = await g.http.get(authorize_url())
        fields = hidden_fields(page.text)
        resp = await g.http.post(
            "/oauth2/consent",
            data={**fields, "grant_scope": fields["scope"].split(), "decision": "allow"},
        )
        current = (await redeem(g, query(resp.headers["location"])["code"])).json()["id_token"]
        assert claims(current)["auth_time"] == later
        resp = await g.http.get("/oauth2/logout", params={**hint, "id_token_hint": current})
        assert resp.status_code == 303 and resp.headers["location"] == LOGGED_OUT
        assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 0


async def test_csrf_cookie_is_host_prefixed_when_secure(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Secure cookies (HTTPS, or TOKENRY_TLS_TERMINATED as here): the CSRF cookie is
    __Host-tkr_session (Secure, Path=/, no Domain), so a sibling subdomain cannot plant the value
    the forms are bound to; a plain tkr_session cookie is not read. (httpx keeps Secure cookies
    off plain HTTP, so the test sends the Cookie header itself.)"""
    tls = dataclasses.replace(settings.tls, terminated_in_front=True)
    async with gateway_suite(settings=dataclasses.replace(settings, tls=tls), pool=pool) as g:
        page = await g.http.get(authorize_url())
        set_cookie = page.headers["set-cookie"]
        name, _, rest = set_cookie.partition("=")
        attributes = {a.strip().lower() for a in rest.split(";")[1:]}
        assert name == "__Host-tkr_session", set_cookie
        assert {"path=/", "secure", "httponly", "samesite=lax"} <= attributes, set_cookie
        assert not any(a.startswith("domain") for a in attributes), set_cookie
        value = rest.split(";")[0]
        form = {**hidden_fields(page.text), "username": USER, "password": PASSWORD}
        async with httpx.AsyncClient(base_url=g.url) as browser:
            planted = await browser.post(
                "/oauth2/login", data=form, headers={"cookie": f"tkr_session={value}"}
            )
            assert planted.status_code == 400, planted.text
            login = await browser.post(
                "/oauth2/login", data=form, headers={"cookie": f"__Host-tkr_session={value}"}
            )
            assert login.status_code == 200 and "Allow" in login.text, login.text
