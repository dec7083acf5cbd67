"""Issuer use cases: authenticate the client, run the grant, mint the token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import ClientCredentials, ClientLookup, authenticate
from tokenry.core.clients import CLIENT_CREDENTIALS
from tokenry.core.clock import Clock
from tokenry.core.errors import UnauthorizedClient, UnsupportedGrantType
from tokenry.core.grants import grant_audiences, grant_scopes
from tokenry.core.ids import new_gid, new_jti
from tokenry.core.signing import SigningKey
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, new_access_token

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenRequest:
    grant_type: str
    scope: str
    audiences: tuple[str, ...]
    credentials: ClientCredentials


@dataclass(frozen=True, slots=True)
class TokenResult:
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    issued_token_type: str


class SigningKeys(Protocol):
    def current(self) -> SigningKey:
        """The active signing key; raises TemporarilyUnavailable when there is none."""
        ...


class IssuerHandlers:
    def __init__(
        self,
        *,
        clients: ClientLookup,
        peppers: dict[str, Pepper],
        keys: SigningKeys,
        issuer_url: str,
        clock: Clock,
    ) -> None:
        self._clients = clients
        self._peppers = peppers
        self._keys = keys
        self._issuer = issuer_url
        self._clock = clock

    async def token(self, req: TokenRequest) -> TokenResult:
        client = await authenticate(req.credentials, self._clients, self._peppers)
        if req.grant_type != CLIENT_CREDENTIALS:
            # OAuth 2.1: implicit and password grants do not exist here, ever.
            raise UnsupportedGrantType(f"grant_type {req.grant_type!r} is not supported")
        if CLIENT_CREDENTIALS not in client.grant_types:
            raise UnauthorizedClient("the client may not use the client_credentials grant")
        scopes = grant_scopes(req.scope, client.scopes)
        audiences = grant_audiences(req.audiences, client.audiences)
        key = self._keys.current()
        # RFC 9068 §2.2: for client credentials the subject is the client itself.
        token = new_access_token(
            issuer=self._issuer,
            subject=client.client_id,
            client_id=client.client_id,
            audiences=audiences,
            scopes=scopes,
            now=self._clock.now(),
            ttl=client.access_token_ttl,
            jti=new_jti(),
            gid=new_gid(),
        )
        return TokenResult(
            access_token=key.sign(token.claims()),
            token_type="Bearer",
            expires_in=token.expires_at - token.issued_at,
            scope=" ".join(scopes),
            issued_token_type=ACCESS_TOKEN_TYPE_URN,
        )
