"""Token exchange refuses a subject token that was not meant for the exchanging client.

RFC 8693 §2.1 and RFC 8725 §3.9: the subject token's ``aud`` must contain the exchanging
client's id or one of its registered audiences. Before issue 12 the issuer verified the JWT
against its own first audience (``audience=audiences[0]``), so any client allowed to exchange a
client's tokens could exchange one addressed to somebody else.
"""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from tokenry.client import ClientSecretBasic, TokenExchangeFetcher
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN
from tokenry.servicekit.config import Settings

from issuer_support import issuer_suite, oauth_error

pytestmark = pytest.mark.integration
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


@pytest.mark.parametrize("app", ["web", "web-opaque"])
async def test_a_subject_token_for_another_audience_is_refused(
    settings: Settings, pool: asyncpg.Pool, app: str
) -> None:
    async with issuer_suite(settings, pool) as s:
        # web's tokens are for "api" only; svc-a (may exchange web's tokens) is neither.
        user = await s.code_tokens(app, scope="read")
        _, error, description = await oauth_error(
            s.token(
                "svc-a",
                grant_type=EXCHANGE,
                subject_token=user.access_token,
                subject_token_type=ACCESS_TOKEN_TYPE_URN,
            )
        )
        assert error == "invalid_grant" and "bad_audience" in description

        # The same exchange with a token whose aud names svc-a is granted.
        ok = await s.code_tokens("portal" if app == "web" else "portal-opaque", scope="read")
        resp = await s.token(
            "svc-a",
            grant_type=EXCHANGE,
            subject_token=ok.access_token,
            subject_token_type=ACCESS_TOKEN_TYPE_URN,
        )
        assert resp.access_token


async def test_the_client_exchange_helper(settings: Settings, pool: asyncpg.Pool) -> None:
    async with issuer_suite(settings, pool) as s:
        auth = ClientSecretBasic("svc-a", s.secret("svc-a"))
        channel = s.suite.channel("issuer")
        user = await s.code_tokens("portal", scope="read")
        issued = await TokenExchangeFetcher(
            channel, auth, user.access_token, scope="read", audience=["svc-b"]
        ).fetch()
        assert issued.access_token and issued.expires_in > 0
        assert "access_token" not in repr(issued) and user.access_token not in repr(
            TokenExchangeFetcher(channel, auth, user.access_token)
        )
        # Not meant for svc-a: the issuer's refusal surfaces as its RpcError.
        other = await s.code_tokens("web", scope="read")
        with pytest.raises(grpc.RpcError):
            await TokenExchangeFetcher(channel, auth, other.access_token).fetch()
