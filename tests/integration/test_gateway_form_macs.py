"""A posted MAC that is not ASCII is a refused form, never a 500: hmac.compare_digest raises
TypeError on a non-ASCII str, and every form of the login app carries one (CSRF token, pending
and subject MACs, the logout confirmation). The fuzz test sends no cookies, so it never reached
the comparisons; this one signs in first, so it does."""

from __future__ import annotations

import asyncpg
import pytest

from tokenry.servicekit.config import Settings

from gateway_support import PASSWORD, USER, authorize_url, gateway_suite, hidden_fields

pytestmark = pytest.mark.integration

NOT_ASCII = "\u00e9" * 8


async def test_non_ascii_macs_are_refused_without_a_server_error(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        page = await g.http.get(authorize_url())
        assert page.status_code == 200, page.text
        login_form = hidden_fields(page.text)
        for field in ("csrf", "pending_mac"):
            resp = await g.http.post(
                "/oauth2/login",
                data={**login_form, field: NOT_ASCII, "username": "u", "password": "p"},
            )
            assert 400 <= resp.status_code < 500, (field, resp.status_code)
        login = await g.http.post(
            "/oauth2/login",
            data={**login_form, "username": USER, "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
        consent_form = hidden_fields(login.text)
        assert "subject_mac" in consent_form, consent_form
        for field in ("csrf", "pending_mac", "subject_mac"):
            resp = await g.http.post(
                "/oauth2/consent",
                data={**consent_form, field: NOT_ASCII, "decision": "allow", "grant_scope": "read"},
            )
            assert 400 <= resp.status_code < 500, (field, resp.status_code)
        resp = await g.http.post("/oauth2/logout", data={"logout_csrf": NOT_ASCII})
        assert resp.status_code < 500, resp.status_code
