"""The client-authentication failure limiter behind the HTTP gateway (issue 13 item 8): failures
are held back per (client_id, peer) and per peer, the peer being the TCP client or, only when
TOKENRY_TRUSTED_PROXY_HEADER is set, the address the trusted proxy appended; a correct
credential is never delayed."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from tokenry.servicekit.config import Settings
from tokenry.services.gateway.routes import peer_of

from gateway_support import gateway_suite

pytestmark = pytest.mark.integration
CC = {"grant_type": "client_credentials"}


def test_peer_of_trusts_the_header_only_when_configured() -> None:
    scope = {
        "client": ("10.0.0.7", 5123),
        "headers": [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7")],
    }
    assert peer_of(scope) == "10.0.0.7"  # not configured: the header is the client's claim
    assert peer_of(scope, b"x-forwarded-for") == "198.51.100.7"  # the proxy's entry, rightmost
    assert peer_of({"client": ("10.0.0.7", 1), "headers": []}, b"x-forwarded-for") == "10.0.0.7"
    assert peer_of({"headers": []}) == ""


async def test_a_flood_of_wrong_secrets_is_held_a_correct_one_never(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENRY_TRUSTED_PROXY_HEADER", "x-forwarded-for")
    async with gateway_suite(settings, pool) as g:

        async def wrong(peer: str) -> httpx.Response:
            return await g.http.post(
                "/oauth2/token",
                data=CC,
                auth=httpx.BasicAuth("demo", "not-the-secret"),
                # the client's own claim first, the trusted proxy's entry last
                headers={"x-forwarded-for": f"203.0.113.9, {peer}"},
            )

        attacker = "198.51.100.7"
        flood = [asyncio.create_task(wrong(attacker)) for _ in range(24)]
        # Wait (generously) until the burst of 10 is answered: the rest are being held.
        async with asyncio.timeout(30):
            for n, answered in enumerate(asyncio.as_completed(flood), 1):
                await answered
                if n == 10:
                    break
        started = time.monotonic()
        good = await g.token("demo")
        print(f"correct credential during the flood: {time.monotonic() - started:.3f} s")
        assert good.status_code == 200, good.text
        assert "retry-after" not in good.headers
        # A failure from another address is keyed apart: not held behind the attacker's.
        other = await wrong("198.51.100.8")
        assert other.status_code == 401
        assert "retry-after" not in other.headers, other.text
        assert not all(t.done() for t in flood), "the flood was not held at all"

        answers = await asyncio.gather(*flood)
        assert {r.status_code for r in answers} == {401}
        assert {r.json()["error"] for r in answers} == {"invalid_client"}
        held = [r for r in answers if "retry-after" in r.headers]
        print(f"{len(held)} of {len(answers)} failures held, the first 10 answered at once")
        assert len(held) >= 10
        assert all("retry after" in r.json()["error_description"] for r in held)
        again = await g.token("demo")
        assert again.status_code == 200 and "retry-after" not in again.headers
