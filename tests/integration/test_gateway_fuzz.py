"""Generated forms and headers posted to every gateway endpoint never make a 5xx (issue 14:
a clear 4xx for every malformed body, header or form field). Hypothesis drives a synchronous
client from a worker thread while the real gateway serves on the test's event loop."""

from __future__ import annotations

import asyncio
import base64

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenry.servicekit.config import Settings

from gateway_support import gateway_suite

pytestmark = pytest.mark.integration

PATHS = (
    "/oauth2/token",
    "/oauth2/introspect",
    "/oauth2/revoke",
    "/oauth2/authorize",
    "/oauth2/login",
    "/oauth2/consent",
    "/oauth2/userinfo",
    "/oauth2/logout",
    "/.well-known/jwks.json",
)
NAMES = st.sampled_from(
    [
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "scope",
        "resource",
        "audience",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "token",
        "token_type_hint",
        "subject_token",
        "subject_token_type",
        "response_type",
        "state",
        "code_challenge",
        "code_challenge_method",
        "login_challenge",
        "csrf",
        "username",
        "password",
        "grant_scope",
        "decision",
        "subject",
        "auth_time",
        "subject_mac",
        "access_token",
        "prompt",
        "max_age",
        "consent",
        "pending_mac",
        "id_token_hint",
        "post_logout_redirect_uri",
        "logout_csrf",
    ]
) | st.text(max_size=12)
VALUES = st.text(max_size=80) | st.sampled_from(
    [
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "password",
        "S256",
        "tkr_at_x",
        "a.b.c",
        "demo",
        "%",
        "%zz",
        "\x00",
        "é",
    ]
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/json",
        "text/plain",
        "multipart/form-data",
        "",
    ]
)
AUTHORIZATION = st.one_of(
    st.none(),
    st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map(
        lambda p: "Basic " + base64.b64encode(f"{p[0]}:{p[1]}".encode()).decode()
    ),
)


def _fuzz(url: str) -> None:
    with httpx.Client(base_url=url, timeout=20) as http:

        @settings(
            max_examples=250,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(
            path=st.sampled_from(PATHS),
            method=st.sampled_from(["POST", "POST", "GET", "OPTIONS"]),
            origin=st.sampled_from(["", "https://spa.test", "null", "https://evil.test"]),
            form=st.lists(st.tuples(NAMES, VALUES), max_size=8),
            raw=st.one_of(st.none(), st.binary(max_size=200)),
            content_type=CONTENT_TYPES,
            authorization=AUTHORIZATION,
            query=st.lists(st.tuples(NAMES, VALUES), max_size=4),
        )
        def one(path, method, origin, form, raw, content_type, authorization, query) -> None:  # type: ignore[no-untyped-def]
            headers: dict[str, str | bytes] = {"origin": origin} if origin else {}
            if content_type:
                headers["content-type"] = content_type
            if authorization is not None:
                headers["authorization"] = authorization
            body = raw if raw is not None else str(httpx.QueryParams(form)).encode()
            try:
                resp = http.request(
                    method, path, content=body, headers=headers, params=httpx.QueryParams(query)
                )
            except (httpx.LocalProtocolError, UnicodeEncodeError):
                return  # a header httpx itself refuses to send
            assert resp.status_code < 500, (path, resp.status_code, resp.text[:300])

        one()


async def test_generated_requests_never_5xx(settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_suite(settings, pool) as g:
        await asyncio.to_thread(_fuzz, g.url)
