"""Fetching access tokens from the Tokenry issuer (``Issuer.Token``), aio and sync."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import grpc

from tokenry.client._auth import ClientAuth, Metadata
from tokenry.client._refresh import IssuedToken
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

__all__ = [
    "CLIENT_CREDENTIALS",
    "IssuedToken",
    "IssuerTokenFetcher",
    "SyncIssuerTokenFetcher",
    "SyncTokenFetcher",
    "TokenFetcher",
]

CLIENT_CREDENTIALS: Final = "client_credentials"


# --- fetching ------------------------------------------------------------------------------------


class TokenFetcher(Protocol):
    async def fetch(self) -> IssuedToken:
        """A new access token.

        Raises:
            Exception: it could not be obtained (``grpc.RpcError`` from the issuer).
        """
        ...


class SyncTokenFetcher(Protocol):
    def fetch(self) -> IssuedToken:
        """A new access token (blocking)."""
        ...


def _token_request(
    auth: ClientAuth, scope: str, audience: Sequence[str]
) -> tuple[issuer_pb2.TokenRequest, Metadata]:
    request = issuer_pb2.TokenRequest(
        grant_type=CLIENT_CREDENTIALS, scope=scope, audience=list(audience)
    )
    return request, auth.apply(request)


def _issued(response: issuer_pb2.TokenResponse) -> IssuedToken:
    if not response.access_token or response.expires_in <= 0:
        raise ValueError("the issuer answered without a usable access token")
    return IssuedToken(response.access_token, float(response.expires_in))


class IssuerTokenFetcher:
    """Client credentials against the Tokenry issuer over a grpc.aio channel."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        auth: ClientAuth,
        *,
        scope: str = "",
        audience: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> None:
        self._stub = issuer_pb2_grpc.IssuerStub(channel)
        self._auth = auth
        self._scope = scope
        self._audience = tuple(audience)
        self._timeout = timeout

    async def fetch(self) -> IssuedToken:
        request, metadata = _token_request(self._auth, self._scope, self._audience)
        return _issued(
            await self._stub.Token(request, metadata=tuple(metadata), timeout=self._timeout)
        )


class SyncIssuerTokenFetcher:
    """Client credentials against the Tokenry issuer over a sync grpc channel."""

    def __init__(
        self,
        channel: grpc.Channel,
        auth: ClientAuth,
        *,
        scope: str = "",
        audience: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> None:
        self._stub = issuer_pb2_grpc.IssuerStub(channel)
        self._auth = auth
        self._scope = scope
        self._audience = tuple(audience)
        self._timeout = timeout

    def fetch(self) -> IssuedToken:
        request, metadata = _token_request(self._auth, self._scope, self._audience)
        return _issued(self._stub.Token(request, metadata=tuple(metadata), timeout=self._timeout))
