"""The login-challenge RPC is unauthenticated (RFC 6749 §4.1.1), so it must not be a way to fill
the database (issue 13 item 8): nothing is written for an unknown client or an unregistered
redirect URI, and the live challenges of one client are bounded (expired ones stop counting and
are swept). Run against the in-memory adapter and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from flows_support import REDIRECT, VERIFIER, clients, endpoint

from contract.adapters import Adapter
from tokenry.core import pkce
from tokenry.core.authorize import AuthorizationRequest
from tokenry.core.errors import InvalidClient, InvalidRequest, TemporarilyUnavailable
from tokenry.store.records import MAX_PENDING_REQUESTS_PER_CLIENT, AuthRequestRecord


def _request(client_id: str, now: int, ttl: int = 600) -> AuthRequestRecord:
    return AuthRequestRecord(
        challenge_hash=secrets.token_bytes(32),
        client_id=client_id,
        redirect_uri="https://app.test/cb",
        scopes=("read",),
        audiences=("api",),
        state="",
        code_challenge="c" * 43,
        nonce="",
        expires_at=now + ttl,
    )


def _authorize(client_id: str, redirect_uri: str = REDIRECT) -> AuthorizationRequest:
    return AuthorizationRequest(
        response_type="code",
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope="read",
        state="st",
        code_challenge=pkce.s256_challenge(VERIFIER),
        code_challenge_method="S256",
        nonce="",
    )


class CountingRequests:
    """Wraps the adapter's request storage and counts writes (a real adapter underneath)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.saved = 0

    async def save_request(self, req: AuthRequestRecord) -> None:
        self.saved += 1
        await self.inner.save_request(req)  # type: ignore[attr-defined]


async def test_authorize_writes_nothing_for_unknown_client_or_unregistered_redirect(
    adapter: Adapter,
) -> None:
    for client in clients():
        await adapter.register(client)
    counting = CountingRequests(adapter.ports.requests)
    ports = dataclasses.replace(adapter.ports, requests=counting)
    flows = endpoint(ports, adapter.clock)
    with pytest.raises(InvalidClient):
        await flows.code_flow.authorize(_authorize("no-such-client"))
    with pytest.raises(InvalidRequest):
        await flows.code_flow.authorize(_authorize("web", "https://evil.test/cb"))
    assert counting.saved == 0
    out = await flows.code_flow.authorize(_authorize("web"))  # control: a valid one is saved
    assert out.login_challenge
    assert counting.saved == 1


async def test_pending_login_challenges_are_bounded_per_client(adapter: Adapter) -> None:
    now = int(adapter.clock.now())
    store = adapter.ports.requests
    for _ in range(MAX_PENDING_REQUESTS_PER_CLIENT):
        await store.save_request(_request("flood", now))
    with pytest.raises(TemporarilyUnavailable):
        await store.save_request(_request("flood", now))
    await store.save_request(_request("other", now))  # another client is not affected


async def test_expired_login_challenges_do_not_count_against_the_bound(adapter: Adapter) -> None:
    now = int(adapter.clock.now())
    store = adapter.ports.requests
    for _ in range(MAX_PENDING_REQUESTS_PER_CLIENT):
        await store.save_request(_request("old", now - 3600, ttl=60))  # long expired
    await store.save_request(_request("old", now))
