"""The token endpoint (RFC 6749 §3.2): authenticate the client, run its grant, mint the tokens.

It dispatches on ``grant_type`` (OAuth 2.1: authorization_code with PKCE, client_credentials,
refresh_token, and RFC 8693 token exchange; implicit and password grants do not exist here).
Every refusal is a ``tokenry.core.errors`` exception carrying its RFC 6749 §5.2 code; a refused
request writes nothing, except the two writes the RFCs require on abuse: a reused authorization
code or refresh token revokes its family, and a presented client assertion is spent (RFC 7523
§3).
"""

from __future__ import annotations

from typing import Protocol

from tokenry.core.clientauth import FailureLimiter, Presented, authenticate
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    GRANT_TYPES,
    PUBLIC,
    REFRESH_TOKEN,
    TOKEN_EXCHANGE,
    Client,
)
from tokenry.core.errors import UnauthorizedClient, UnsupportedGrantType
from tokenry.flows.authorization_code import CodeFlow
from tokenry.flows.client_credentials import ClientCredentialsFlow
from tokenry.flows.deps import IssuerDeps, TokenRequest
from tokenry.flows.minting import TokenResult
from tokenry.flows.refresh import RefreshFlow

__all__ = ["TokenEndpoint", "TokenExchange"]


class TokenExchange(Protocol):
    """The RFC 8693 grant: verifies the subject token and mints the exchanged JWT."""

    async def exchange(self, client: Client, req: TokenRequest) -> TokenResult:
        """Raises the RFC 6749 §5.2 / RFC 8693 §2.2.2 errors of ``tokenry.core.errors``."""
        ...


class TokenEndpoint:
    """The grants behind one token endpoint, and the front channel of the code grant
    (:attr:`code_flow`: authorize, complete)."""

    def __init__(self, deps: IssuerDeps, exchange: TokenExchange) -> None:
        self._d = deps
        self.code_flow = CodeFlow(deps)
        self.refresh_flow = RefreshFlow(deps)
        self.client_credentials = ClientCredentialsFlow(deps)
        self._exchange = exchange
        # Failed client authentications are held back (issue 13 item 8); per process.
        self._limiter = FailureLimiter(deps.clock)

    async def authenticate(self, credentials: Presented) -> Client:
        d = self._d
        return await authenticate(
            credentials, d.clients, d.peppers, d.assertions, d.proven, limiter=self._limiter
        )

    async def token(self, req: TokenRequest) -> TokenResult:
        d = self._d
        if d.mint_gate is not None:
            # Before anything else: a token stamped by a clock too far ahead could outlive a
            # subject or client revocation (servicekit.clockskew).
            d.mint_gate()
        # authenticate() inlined: one coroutine frame less on every token request.
        client = await authenticate(
            req.credentials, d.clients, d.peppers, d.assertions, d.proven, limiter=self._limiter
        )
        grant = req.grant_type
        if grant not in GRANT_TYPES:
            # OAuth 2.1: implicit and password grants do not exist here, ever.
            raise UnsupportedGrantType(f"grant_type {grant[:64]!r} is not supported")
        # Client.is_public read directly: a property is one more frame per token.
        if client.client_type == PUBLIC and grant not in (AUTHORIZATION_CODE, REFRESH_TOKEN):
            raise UnauthorizedClient("a public client may not use this grant")
        if grant not in client.grant_types:
            raise UnauthorizedClient(f"the client may not use the {grant} grant")
        if grant == CLIENT_CREDENTIALS:
            return await self.client_credentials.issue(client, req)
        if grant == AUTHORIZATION_CODE:
            return await self.code_flow.redeem(client, req)
        if grant == REFRESH_TOKEN:
            return await self.refresh_flow.refresh(client, req)
        if grant == TOKEN_EXCHANGE:
            return await self._exchange.exchange(client, req)
        raise UnsupportedGrantType(f"grant_type {grant!r} is not supported")  # unreachable
