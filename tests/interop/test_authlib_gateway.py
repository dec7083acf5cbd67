"""Interop: Authlib's OAuth 2 client (a library nobody here wrote, used unchanged) against the
real gateway: client credentials with client_secret_basic and private_key_jwt, introspection,
revocation, the authorization code flow with PKCE driven through the login form, and refresh;
pyjwt's PyJWKClient verifies an issued token from the JWKS URL."""

from __future__ import annotations

import asyncio
import time
import warnings

import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tokenry.servicekit.config import Settings

from gateway_support import ASSERTION_KEY, REDIRECT, browser_login, gateway_suite

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Authlib's note about its httpx integration's future
    from authlib.common.security import generate_token
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import ECKey

pytestmark = pytest.mark.integration


async def test_authlib_client_credentials_introspect_revoke(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        token_url = g.url + "/oauth2/token"
        async with AsyncOAuth2Client(
            "demo", g.secrets["demo"], token_endpoint_auth_method="client_secret_basic"
        ) as demo:
            token = await demo.fetch_token(
                token_url, grant_type="client_credentials", scope="demo.read"
            )
        assert token["token_type"] == "Bearer" and token["scope"] == "demo.read"
        access = token["access_token"]

        # pyjwt's JWKS client, from the published URL (blocking: run it off the loop)
        jwks = jwt.PyJWKClient(g.url + "/.well-known/jwks.json")
        key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, access)
        claims = jwt.decode(
            access, key.key, algorithms=["ES256"], audience="demo-api", issuer=settings.issuer_url
        )
        assert claims["client_id"] == "demo"

        # introspection by the audience, with Authlib's introspect_token (RFC 7662)
        async with AsyncOAuth2Client("demo-api", g.secrets["demo-api"]) as rs:
            resp = await rs.introspect_token(g.url + "/oauth2/introspect", token=access)
            assert resp.status_code == 200 and resp.json()["active"] is True
        # revocation by its client (RFC 7009), then inactive
        async with AsyncOAuth2Client("demo", g.secrets["demo"]) as demo:
            resp = await demo.revoke_token(g.url + "/oauth2/revoke", token=access)
            assert resp.status_code == 200
        seq = await pool.fetchval("SELECT max(seq) FROM outbox")
        await asyncio.wait_for(g.applied.reached(seq), 10)
        async with AsyncOAuth2Client("demo-api", g.secrets["demo-api"]) as rs:
            resp = await rs.introspect_token(g.url + "/oauth2/introspect", token=access)
            assert resp.json() == {"active": False}

        # private_key_jwt (RFC 7523): the assertion's aud is the token endpoint's external URL
        pem = ASSERTION_KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Authlib's assertions live 1 h by default; Tokenry takes at most 5 min (docs/spec.md §3),
        # so the client sets exp (Authlib merges these claims into its own).
        auth = PrivateKeyJWT(
            claims={"exp": int(time.time()) + 120},
            token_endpoint=settings.issuer_url + "/oauth2/token",
            headers={"kid": "k1"},
            alg="ES256",
        )
        key = ECKey.import_key(pem)  # Authlib's own key type (its default would read RSA)
        async with AsyncOAuth2Client(
            "jwtsvc", key, token_endpoint_auth_method="private_key_jwt"
        ) as svc:
            svc.register_client_auth_method(auth)
            token = await svc.fetch_token(token_url, grant_type="client_credentials", scope="read")
        assert token["access_token"]


async def test_authlib_code_flow_with_pkce_and_refresh(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        gateway_suite(settings, pool) as g,
        AsyncOAuth2Client(
            "web",
            g.secrets["web"],
            redirect_uri=REDIRECT,
            scope="openid read",
            code_challenge_method="S256",
        ) as web,
    ):
        verifier = generate_token(48)
        url, state = web.create_authorization_url(
            g.url + "/oauth2/authorize", code_verifier=verifier, nonce=generate_token(16)
        )
        final = await browser_login(g.http, url)
        assert final.status_code == 303
        location = final.headers["location"]
        assert f"state={state}" in location and "iss=" in location
        token = await web.fetch_token(
            g.url + "/oauth2/token",
            authorization_response=location,
            code_verifier=verifier,
            state=state,
        )
        assert token["id_token"] and token["refresh_token"]
        claims = jwt.decode(token["id_token"], options={"verify_signature": False})
        assert claims["sub"] == "alice" and claims["aud"] == "web"
        refreshed = await web.refresh_token(
            g.url + "/oauth2/token", refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        # revoking the refresh token revokes its family (RFC 7009 §2.1)
        resp = await web.revoke_token(
            g.url + "/oauth2/revoke",
            token=refreshed["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert resp.status_code == 200
        with pytest.raises(Exception, match="invalid_grant"):
            await web.refresh_token(
                g.url + "/oauth2/token", refresh_token=refreshed["refresh_token"]
            )
