"""The token flows over the in-memory store, with no server: the key cases of each grant."""

from __future__ import annotations

import jwt
import pytest
from flows_support import (
    access_claims,
    authorization_code,
    code_request,
    creds,
    memory_rig,
    refresh_request,
)

from tokenry.core.clients import CLIENT_CREDENTIALS
from tokenry.core.errors import InvalidGrant
from tokenry.core.revocations import RevocationKind
from tokenry.flows import TokenRequest


async def test_client_credentials_mints_a_jwt_without_touching_storage() -> None:
    flows, store, keys = await memory_rig()
    out = await flows.token(TokenRequest(CLIENT_CREDENTIALS, "read", (), creds("svc")))
    claims = access_claims(out.access_token, keys)
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("svc", "svc", "read")
    assert out.refresh_token == "" and out.expires_in > 0  # RFC 6749 §4.4.3
    assert store.tokens == {} and store.grants == {} and store.events == []


async def test_code_with_pkce_issues_access_refresh_and_id_tokens() -> None:
    flows, store, keys = await memory_rig()
    code = await authorization_code(flows, "web", "openid read")
    with pytest.raises(InvalidGrant):  # RFC 7636 §4.6: the wrong verifier
        await flows.token(code_request("web", code, verifier="x" * 43))
    # A failed check writes nothing: the code is still unused and redeems with the right verifier.
    out = await flows.token(code_request("web", code))
    claims = access_claims(out.access_token, keys)
    assert (claims["sub"], claims["client_id"]) == ("alice", "web")
    assert out.refresh_token and out.id_token
    id_claims = jwt.decode(
        out.id_token,
        keys.current("id").private_key.public_key(),
        algorithms=["RS256"],
        audience="web",
    )
    assert (id_claims["sub"], id_claims["nonce"]) == ("alice", "n1")
    assert len(store.grants) == 1 and store.events == []


async def test_a_reused_refresh_token_revokes_the_family() -> None:
    flows, store, _ = await memory_rig()
    code = await authorization_code(flows, "web", "read")
    first = await flows.token(code_request("web", code))
    second = await flows.token(refresh_request("web", first.refresh_token))
    await flows.token(refresh_request("web", second.refresh_token))  # the successor is used
    # OAuth 2.1 §4.3.1: the spent token again, its successor used: the whole family goes.
    with pytest.raises(InvalidGrant, match="already used"):
        await flows.token(refresh_request("web", first.refresh_token))
    ((gid, grant),) = store.grants.items()
    assert grant.revoked
    assert [(rev.kind, rev.value, actor) for _, rev, actor in store.events] == [
        (RevocationKind.GRANT, gid, "web")
    ]
    assert all(t.revoked for t in store.tokens.values())
