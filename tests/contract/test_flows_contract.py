"""The flows themselves over each adapter: the same grants give the same answers in memory and in
PostgreSQL (opaque tokens, so every step goes through storage)."""

from __future__ import annotations

import pytest
from flows_support import (
    REDIRECT,
    VERIFIER,
    authorization_code,
    clients,
    code_request,
    creds,
    endpoint,
    refresh_request,
)

from contract.adapters import Adapter
from tokenry.core import opaque, pkce
from tokenry.core.authorize import AuthorizationRequest
from tokenry.core.clients import CLIENT_CREDENTIALS
from tokenry.core.errors import InvalidGrant, InvalidRequest
from tokenry.flows import TokenRequest
from tokenry.flows.authorization_code import Completion

pytestmark = pytest.mark.integration


async def _registered(adapter: Adapter) -> None:
    for client in clients():
        await adapter.register(client)


async def test_an_opaque_client_credentials_token_is_stored_by_hash(adapter: Adapter) -> None:
    await _registered(adapter)
    flows = endpoint(adapter.ports, adapter.clock)
    request = TokenRequest(CLIENT_CREDENTIALS, "read", (), creds("svc"), token_format="opaque")
    out = await flows.token(request)
    row = await adapter.reader.get_token(opaque.token_hash(out.access_token))
    assert row is not None
    assert (row.kind, row.client_id, row.subject, row.scopes) == ("access", "svc", "svc", ("read",))


async def test_a_reused_code_revokes_what_it_issued(adapter: Adapter) -> None:
    await _registered(adapter)
    flows = endpoint(adapter.ports, adapter.clock)
    code = await authorization_code(flows, "web-opaque", "read")
    first = await flows.token(code_request("web-opaque", code))
    assert first.refresh_token and opaque.kind_of(first.access_token) == opaque.ACCESS
    with pytest.raises(InvalidGrant, match="already used"):
        await flows.token(code_request("web-opaque", code))
    access = await adapter.reader.get_token(opaque.token_hash(first.access_token))
    assert access is not None and access.revoked
    with pytest.raises(InvalidGrant):
        await flows.token(refresh_request("web-opaque", first.refresh_token))


async def test_refresh_rotates_replays_in_the_grace_and_revokes_on_reuse(adapter: Adapter) -> None:
    await _registered(adapter)
    flows = endpoint(adapter.ports, adapter.clock)
    code = await authorization_code(flows, "web-opaque", "read")
    first = await flows.token(code_request("web-opaque", code))
    second = await flows.token(refresh_request("web-opaque", first.refresh_token))
    assert second.refresh_token != first.refresh_token
    retry = await flows.token(refresh_request("web-opaque", first.refresh_token))  # in the grace
    assert (retry.refresh_token, retry.access_token) == (second.refresh_token, second.access_token)
    adapter.clock.advance(11)  # past the grace: the spent token again is reuse
    with pytest.raises(InvalidGrant, match="already used"):
        await flows.token(refresh_request("web-opaque", first.refresh_token))
    with pytest.raises(InvalidGrant):  # the whole family is gone, the successor too
        await flows.token(refresh_request("web-opaque", second.refresh_token))
    row = await adapter.reader.get_token(opaque.token_hash(second.access_token))
    assert row is not None and row.revoked
    assert (
        await adapter.checks.revoked_kind(
            jti=None, gid=row.gid, subject=None, client_id=None, issued_at=0
        )
        == "grant"
    )


async def test_a_code_presented_by_the_wrong_client_is_burnt(adapter: Adapter) -> None:
    """docs/flows.md §6: the burn commits although the request is refused, in either store."""
    await _registered(adapter)
    flows = endpoint(adapter.ports, adapter.clock)
    code = await authorization_code(flows, "web-opaque", "read")
    with pytest.raises(InvalidGrant, match="another client"):
        await flows.token(code_request("web", code))
    with pytest.raises(InvalidGrant, match="already used"):
        await flows.token(code_request("web-opaque", code))


@pytest.mark.parametrize(
    ("demand", "stale_by"),
    [({"max_age": "60"}, 61), ({"prompt": "login"}, 1)],
    ids=["max_age", "prompt=login"],
)
async def test_a_fresh_sign_in_demand_is_checked_when_the_request_completes(
    adapter: Adapter, demand: dict[str, str], stale_by: int
) -> None:
    """OIDC Core §3.1.2.1: a request with max_age or prompt=login is completed only with a sign-in
    that recent, stated in auth_time (never assumed to be now); a refusal leaves the challenge
    usable, so the login app can sign the user in again (docs/flows.md §2)."""
    await _registered(adapter)
    flows = endpoint(adapter.ports, adapter.clock)
    out = await flows.code_flow.authorize(
        AuthorizationRequest(
            response_type="code",
            client_id="web",
            redirect_uri=REDIRECT,
            scope="read",
            state="st",
            code_challenge=pkce.s256_challenge(VERIFIER),
            code_challenge_method="S256",
            nonce="",
            **demand,
        )
    )
    assert out.login_challenge, out
    login = await flows.authenticate(creds("login"))
    now = int(adapter.clock.now())

    def completion(auth_time: int) -> Completion:
        return Completion(out.login_challenge, "alice", "read", auth_time, deny=False)

    for auth_time in (0, now - stale_by):
        with pytest.raises(InvalidRequest, match="sign"):
            await flows.code_flow.complete(login, completion(auth_time))
    done = await flows.code_flow.complete(login, completion(now))
    assert "code=" in done.redirect_to, done
