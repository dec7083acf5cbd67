"""Interop: panva's openid-client v6 and jose (Node.js libraries nobody here wrote, used
unchanged, installed by ``make interop-deps`` from tests/interop/node/package-lock.json) against
the real gateway. One node run does every step (node/openid_client.mjs); the clients make their
own checks (issuer, state, iss, nonce, PKCE, ID token signature and claims, JWT typ) and this
test asserts on the JSON they report."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from jwt.algorithms import ECAlgorithm

from tokenry.core.clients import AUTHORIZATION_CODE, NO_AUTH, PUBLIC, REFRESH_TOKEN, Client
from tokenry.devstack.ca import dev_pki
from tokenry.servicekit.config import Settings

from gateway_support import ASSERTION_KEY, PASSWORD, REDIRECT, USER
from interop_support import interop_gateway, node_binary, run_node

pytestmark = pytest.mark.integration

LOGGED_OUT = "https://app.test/logged-out"
# A first-party client: the consent page is skipped (a public one needs https redirect URIs).
FIRST_PARTY = Client(
    client_id="first-party",
    secret_hash=None,
    pepper_id=None,
    grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
    scopes=frozenset({"openid", "read"}),
    audiences=("api",),
    redirect_uris=(REDIRECT,),
    client_type=PUBLIC,
    auth_method=NO_AUTH,
    first_party=True,
    post_logout_redirect_uris=(LOGGED_OUT,),
    description="Tokenry Console",
)


def _assertion_jwk() -> dict[str, str]:
    """The private key jwtsvc signs its client assertions with (registered by gateway_support)."""
    jwk: dict[str, str] = json.loads(ECAlgorithm.to_jwk(ASSERTION_KEY))
    jwk.update(kid="k1", alg="ES256")
    return jwk


async def test_openid_client_and_jose_against_the_gateway(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    node_binary()  # skip or fail before starting anything when node is missing
    # HTTPS, as openid-client expects outside tests: node trusts the dev CA through
    # NODE_EXTRA_CA_CERTS, like the clients of `tokenry dev` (docs/gateway.md)
    pki = dev_pki(tmp_path / "tls", ["gateway"])
    async with interop_gateway(settings, pool, clients=[FIRST_PARTY], tls=pki) as g:
        r = await run_node(
            "openid_client.mjs",
            {
                "issuer": g.url,
                "secrets": g.secrets,
                "user": USER,
                "password": PASSWORD,
                "redirect": REDIRECT,
                "assertion_jwk": _assertion_jwk(),
                "logout_redirect": LOGGED_OUT,
            },
            env={"NODE_EXTRA_CA_CERTS": str(pki.ca)},
        )
    print(f"inactive after revocation (introspection polled): {r['introspection']}")

    # discovery over HTTPS: openid-client checked issuer == the URL it fetched from
    assert g.url.startswith("https://") and r["discovery"]["issuer"] == g.url
    assert r["discovery"]["supportsPKCE"] is True
    assert r["discovery"]["code_challenge_methods"] == ["S256"]
    assert r["discovery"]["iss_parameter"] is True
    assert "password" not in r["discovery"]["grant_types"]
    assert "implicit" not in r["discovery"]["grant_types"]

    # client credentials; jose verified the JWT (issuer, audience, typ) from the remote JWKS
    assert r["client_credentials"]["token_type"].lower() == "bearer"
    assert r["client_credentials"]["scope"] == "demo.read"
    assert 0 < r["client_credentials"]["expires_in"] <= 600
    assert r["jose"]["header"]["typ"] == "at+jwt" and r["jose"]["header"]["alg"] == "ES256"
    assert r["jose"]["client_id"] == "demo" and r["jose"]["scope"] == "demo.read"
    assert r["jose"]["wrong_audience"]["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"
    assert r["jose"]["wrong_issuer"]["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"
    assert r["jose"]["wrong_typ"]["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"

    # introspection (RFC 7662) then revocation (RFC 7009): inactive once the event applied
    assert r["introspection"]["active"] is True
    assert r["introspection"]["client_id"] == "demo"
    assert r["introspection"]["scope"] == "demo.read"
    assert r["wrong_secret"]["status"] == 401

    # private_key_jwt, openid-client's assertion (aud = the issuer)
    assert r["private_key_jwt"]["scope"] == "read"

    # authorization code + PKCE through the login and consent pages; openid-client checked
    # state, iss (RFC 9207), the PKCE verifier, the nonce and the ID token
    flow = r["code_flow"]
    assert flow["steps"] == ["login", "consent"]
    assert flow["callback_iss_matches"] is True
    assert flow["has_refresh_token"] is True
    assert flow["scope"] == "openid read"
    assert flow["id_token"]["sub"] == USER and flow["id_token"]["aud"] == "web"
    assert flow["id_token"]["iss"] == g.url
    assert r["userinfo"]["sub"] == USER

    # refresh: rotated, and the ID token keeps iss/sub/aud/auth_time without nonce (OIDC §12.2)
    refresh = r["refresh"]
    assert refresh["rotated"] is True and refresh["new_access_token"] is True
    # OIDC Core §12.2 allows no ID token on refresh (Tokenry sends none today; issue 14 asks
    # for one): when there is one, openid-client validated it and its claims must match
    refreshed_id = refresh.get("id_token")
    print(f"ID token on refresh: {refreshed_id}")
    if refreshed_id is not None:
        assert refreshed_id["sub"] == USER and refreshed_id["aud"] == "web"
        assert refreshed_id["iss"] == g.url
        assert refreshed_id["auth_time"] == flow["id_token"]["auth_time"]
        assert refreshed_id["nonce"] is None
    assert r["refresh_after_revocation"]["error"] == "invalid_grant"

    # a public client (auth method none)
    assert r["public_code_flow"]["sub"] == USER and r["public_code_flow"]["aud"] == "spa"

    # first party: no consent page; single sign-on with prompt=none (auth_time kept, max_age
    # checked by openid-client); prompt=login signs in again; no session is login_required;
    # RP-initiated logout returns to the registered URI with state and ends the session
    fp = r["first_party"]
    print(f"first party: {fp}")
    assert fp["first"]["steps"] == ["login"] and fp["first"]["sub"] == USER
    assert fp["sso"]["steps"] == [] and fp["sso"]["auth_time_kept"] is True
    assert fp["prompt_login"]["steps"] == ["login"]
    assert fp["no_session"]["error"] == "login_required" and fp["no_session"]["iss"] == g.url
    assert fp["logout"]["status"] in (302, 303) and fp["logout"]["to"] == LOGGED_OUT
    assert fp["logout"]["state_ok"] is True
    assert fp["after_logout"]["error"] == "login_required"

    # a denial redirects with error and iss; openid-client surfaces access_denied
    assert r["denied"]["iss"] == g.url
    assert r["denied"]["error"] == "access_denied"
