"""Issuer use cases: authenticate the client, run the grant, mint the tokens.

The token endpoint dispatches on ``grant_type`` (OAuth 2.1: authorization_code with PKCE,
client_credentials, refresh_token, and RFC 8693 token exchange; implicit and password grants do
not exist here). Every refusal is a ``tokenry.core.errors`` exception carrying its RFC 6749 §5.2
code; a refused request writes nothing, except the two writes the RFCs require on abuse: a
reused authorization code or refresh token revokes its family, and a presented client assertion
is spent (RFC 7523 §3).
"""

from __future__ import annotations

from tokenry.core import opaque
from tokenry.core.clientauth import Presented, authenticate
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    GRANT_TYPES,
    REFRESH_TOKEN,
    TOKEN_EXCHANGE,
    Client,
)
from tokenry.core.errors import UnauthorizedClient, UnsupportedGrantType
from tokenry.core.grants import grant_audiences, grant_scopes
from tokenry.core.ids import new_jti_and_gid
from tokenry.core.tokens import new_access_token
from tokenry.services.issuer.code_flow import CodeFlow
from tokenry.services.issuer.deps import IssuerDeps, TokenRequest, token_format
from tokenry.services.issuer.exchange_flow import ExchangeFlow
from tokenry.services.issuer.minting import JWT, SigningKeys, TokenResult, opaque_record
from tokenry.services.issuer.refresh_flow import RefreshFlow

__all__ = ["IssuerDeps", "IssuerHandlers", "SigningKeys", "TokenRequest", "TokenResult"]


class IssuerHandlers:
    def __init__(self, deps: IssuerDeps, exchange: ExchangeFlow) -> None:
        self._d = deps
        self.code_flow = CodeFlow(deps)
        self._refresh = RefreshFlow(deps)
        self._exchange = exchange

    async def authenticate(self, credentials: Presented) -> Client:
        d = self._d
        return await authenticate(credentials, d.clients, d.peppers, d.assertions, d.proven)

    async def token(self, req: TokenRequest) -> TokenResult:
        if self._d.mint_gate is not None:
            # Before anything else: a token stamped by a clock too far ahead could outlive a
            # subject or client revocation (servicekit.clockskew).
            self._d.mint_gate()
        client = await self.authenticate(req.credentials)
        grant = req.grant_type
        if grant not in GRANT_TYPES:
            # OAuth 2.1: implicit and password grants do not exist here, ever.
            raise UnsupportedGrantType(f"grant_type {grant[:64]!r} is not supported")
        if client.is_public and grant not in (AUTHORIZATION_CODE, REFRESH_TOKEN):
            raise UnauthorizedClient("a public client may not use this grant")
        if grant not in client.grant_types:
            raise UnauthorizedClient(f"the client may not use the {grant} grant")
        if grant == CLIENT_CREDENTIALS:
            return await self._client_credentials(client, req)
        if grant == AUTHORIZATION_CODE:
            return await self.code_flow.redeem(client, req)
        if grant == REFRESH_TOKEN:
            return await self._refresh.refresh(client, req)
        if grant == TOKEN_EXCHANGE:
            return await self._exchange.exchange(client, req)
        raise UnsupportedGrantType(f"grant_type {grant!r} is not supported")  # unreachable

    async def _client_credentials(self, client: Client, req: TokenRequest) -> TokenResult:
        """RFC 6749 §4.4: the hot path — no database round trip for a JWT (ARCHITECTURE §7)."""
        d = self._d
        scopes = grant_scopes(req.scope, client.scopes)
        audiences = grant_audiences(req.audiences, client.audiences)
        fmt = token_format(req.token_format, client)
        now = d.clock.now()
        # RFC 9068 §2.2: for client credentials the subject is the client itself.
        d.watermarks.check(client.client_id, client.client_id, now)
        jti, gid = new_jti_and_gid()
        token = new_access_token(
            issuer=d.minter.issuer,
            subject=client.client_id,
            client_id=client.client_id,
            audiences=audiences,
            scopes=scopes,
            now=now,
            ttl=client.access_token_ttl,
            jti=jti,
            gid=gid,
        )
        if fmt == JWT:
            value = d.minter.sign_access(token)
        else:
            value = opaque.new_token(opaque.ACCESS)
            await d.opaque_writer.write(opaque_record(token, value))
        # RFC 6749 §4.4.3: no refresh token for client credentials.
        return TokenResult(
            access_token=value,
            token_type="Bearer",
            expires_in=token.expires_at - token.issued_at,
            scope=" ".join(scopes),
        )
