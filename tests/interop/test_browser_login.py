"""Interop: a real browser (headless Chromium, Debian's ``chromium`` package, driven by the npm
package playwright-core) through the gateway's login and consent pages over HTTPS, at a desktop
width and at 360 px. The redirect must carry ``code``, ``state`` and ``iss`` (RFC 9207), the
code must redeem at /oauth2/token with its PKCE verifier, and the session cookie is Secure,
HttpOnly and SameSite=Lax.

A screenshot of each page goes to the test's temporary directory; with
``TOKENRY_SCREENSHOTS=docs/gateway/screenshots`` it goes there instead, which is how the
committed screenshots are regenerated (docs/gateway/screenshots/README.md)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tokenry.core import pkce
from tokenry.devstack.ca import dev_pki
from tokenry.servicekit.config import Settings

from gateway_support import PASSWORD, REDIRECT, USER
from interop_support import chromium_binary, interop_gateway, node_binary, run_node

pytestmark = pytest.mark.integration

# (suffix of the screenshot names, width, height, try a wrong password first)
VIEWPORTS = (("", 1280, 800, True), ("-360", 360, 740, False))


def _authorize_url(base: str, state: str, verifier: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": REDIRECT,
            "scope": "openid read write",
            "state": state,
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": pkce.s256_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{base}/oauth2/authorize?{query}"


def _spki_sha256(cert_pem: Path) -> str:
    """Chromium's pin of a certificate: base64 SHA-256 of its SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def test_chromium_signs_in_consents_and_the_code_redeems(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    node_binary()
    chromium = chromium_binary()
    shots = Path(os.environ.get("TOKENRY_SCREENSHOTS") or tmp_path).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    # HTTPS, as the pages are served outside dev: the browser accepts the gateway's test
    # certificate by its pinned key, and the session cookie must come back Secure
    pki = dev_pki(tmp_path / "tls", ["gateway"])
    async with interop_gateway(settings, pool, tls=pki) as g:
        flows = []
        for suffix, width, height, wrong_password in VIEWPORTS:
            state, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(48)
            flows.append(
                {
                    "suffix": suffix,
                    "width": width,
                    "height": height,
                    "wrong_password": wrong_password,
                    "state": state,
                    "verifier": verifier,
                    "authorize_url": _authorize_url(g.url, state, verifier),
                }
            )
        unknown_client = _authorize_url(g.url, "s", "v" * 43).replace(
            "client_id=web", "client_id=nobody"
        )
        r = await run_node(
            "browser.mjs",
            {
                "chromium": chromium,
                "screenshots": str(shots),
                "user": USER,
                "password": PASSWORD,
                "redirect": REDIRECT,
                "flows": flows,
                "error_url": unknown_client,
                "spki": _spki_sha256(pki.cert("gateway")),
            },
        )
        print(f"Chromium {r['version']}; screenshots in {shots}")
        for spec, seen in zip(flows, r["flows"], strict=True):
            print(f"  {spec['width']} px: {seen['timings']}, screenshots (ms): {seen['shots']}")
            assert seen["problems"] == [], seen["problems"]
            pages = seen["pages"]
            for name in ("login", "consent"):
                assert pages[name]["status"] == 200, pages
                assert pages[name]["labelledInputs"] is True, (name, pages[name])
                assert pages[name]["stylesheetApplied"] is True, (name, pages[name])
                assert pages[name]["horizontalOverflow"] is False, (spec["width"], name)
            # the session cookies: Secure over HTTPS, HttpOnly, SameSite=Lax (RFC 6265bis)
            assert pages["cookies"], "no session cookie"
            for cookie in pages["cookies"]:
                assert cookie["secure"] and cookie["httpOnly"], cookie
                assert cookie["sameSite"] == "Lax", cookie
            # over HTTPS the CSRF cookie is a __Host- cookie (Path=/), which Chromium accepted
            names = {c["name"]: c["path"] for c in pages["cookies"]}
            assert names.get("__Host-tkr_session") == "/", names
            if spec["wrong_password"]:
                assert pages["login_error"]["status"] == 401
                assert pages["login_error"]["alert"], "no inline error after a wrong password"
                assert pages["login_error"]["focused"] == "password", pages["login_error"]
                assert pages["login_error"]["invalid"] == ["password"], pages["login_error"]
                # "Not you?" on consent leads back to the sign-in page of the same request
                assert pages["switch"] == {"status": 200, "password": 1}, pages["switch"]
            assert pages["login"]["title"].startswith("Sign in to "), pages["login"]["title"]
            assert {s["value"] for s in pages["consent"]["scopes"]} == {"openid", "read", "write"}
            assert all(s["label"] for s in pages["consent"]["scopes"])

            # the redirect: code, state and iss (RFC 9207 §2)
            assert pages["redirect"]["status"] in (302, 303)
            assert seen["callback"] is not None, "the browser was not sent to the client"
            callback = urlsplit(seen["callback"])
            assert f"{callback.scheme}://{callback.netloc}{callback.path}" == REDIRECT
            params = {k: v[0] for k, v in parse_qs(callback.query).items()}
            assert params["state"] == spec["state"]
            assert params["iss"] == g.url
            assert params["code"]

            # the code redeems, with its verifier (RFC 7636 §4.5)
            resp = await g.http.post(
                "/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": params["code"],
                    "redirect_uri": REDIRECT,
                    "code_verifier": spec["verifier"],
                },
                auth=g.basic("web"),
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["scope"] == "openid read write" and body["id_token"]

        print(f"  error page: {r['error_page']['timings']}")
        assert r["error_page"]["status"] == 400
        assert r["error_page"]["stylesheetApplied"] is True
    written = sorted(p.name for p in shots.glob("*.png"))
    assert written == sorted(
        [
            "login.png",
            "login-error.png",
            "consent.png",
            "login-360.png",
            "consent-360.png",
            "error.png",
        ]
    ), written
