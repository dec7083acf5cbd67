"""The login pages as a person sees them (issue 14 review): an icon instead of a 404 for the
browser's favicon probe, errors in human words with the RFC code kept small, the focus on the
password after a wrong one, titles that name the client, and on consent "Not you?" and the host
the browser goes back to."""

from __future__ import annotations

import re

import asyncpg
import pytest

from tokenry.servicekit.config import Settings

from gateway_support import PASSWORD, USER, authorize_url, gateway_suite, hidden_fields

pytestmark = pytest.mark.integration


def tag(page: str, element_id: str) -> str:
    match = re.search(rf'<input[^>]* id="{element_id}"[^>]*>', page)
    assert match, element_id
    return match.group(0)


async def test_pages_icon_errors_focus_titles_and_consent(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        for path in ("/favicon.ico", "/oauth2/assets/icon.svg"):
            icon = await g.http.get(path)
            assert icon.status_code == 200, path
            assert icon.headers["content-type"] == "image/svg+xml"
            assert icon.text.startswith("<svg") and "script" not in icon.text

        error = await g.http.get(authorize_url(client_id="nobody"))
        assert error.status_code == 400
        assert "<title>This application isn&#x27;t registered</title>" in error.text
        assert "<code>invalid_client</code>" in error.text  # the RFC code, small
        assert "https://app.test" not in error.text  # never a link back to an unknown client
        bad_uri = await g.http.get(authorize_url(redirect_uri="https://evil.test/cb"))
        assert "return address isn&#x27;t registered" in bad_uri.text

        login = await g.http.get(authorize_url())
        assert login.status_code == 200
        assert re.search(r"<title>Sign in to [^<]+</title>", login.text), login.text[:300]
        assert '<link rel="icon" href="/oauth2/assets/icon.svg"' in login.text
        assert "autofocus" in tag(login.text, "username")
        assert "aria-invalid" not in login.text
        fields = hidden_fields(login.text)

        wrong = await g.http.post(
            "/oauth2/login", data={**fields, "username": USER, "password": "nope"}
        )
        assert wrong.status_code == 401
        password = tag(wrong.text, "password")
        assert 'aria-invalid="true"' in password and "autofocus" in password
        assert "autofocus" not in tag(wrong.text, "username")

        consent = await g.http.post(
            "/oauth2/login", data={**fields, "username": USER, "password": PASSWORD}
        )
        assert consent.status_code == 200
        assert re.search(r"<title>Allow [^<]+ access</title>", consent.text)
        assert "You will be sent back to <strong>app.test</strong>" in consent.text
        assert 'value="switch"' in consent.text and "Not you?" in consent.text
        # the scope sits on its own line, under its description
        assert "Read your data<code>read</code>" in consent.text

        # "Not you?" → the sign-in page for the same request, then consent again
        cfields = hidden_fields(consent.text)
        switch = await g.http.post("/oauth2/consent", data={**cfields, "decision": "switch"})
        assert switch.status_code == 200 and 'id="password"' in switch.text
        again = await g.http.post(
            "/oauth2/login",
            data={**hidden_fields(switch.text), "username": USER, "password": PASSWORD},
        )
        assert again.status_code == 200 and "Not you?" in again.text
        # a tampered way back is refused (the host is MACed with the pending request)
        forged = {**hidden_fields(again.text), "return_to": "evil.test", "decision": "allow"}
        assert (await g.http.post("/oauth2/consent", data=forged)).status_code == 400
