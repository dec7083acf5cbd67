"""Fetching access tokens from the Tokenry issuer (``Issuer.Token``), aio and sync."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import grpc

from tokenry.client._auth import ClientAuth, Metadata
from tokenry.client._refresh import IssuedToken
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "CLIENT_CREDENTIALS",
    "TOKEN_EXCHANGE",
    "IssuedToken",
    "IssuerTokenFetcher",
    "SyncIssuerTokenFetcher",
    "SyncTokenFetcher",
    "TokenExchangeFetcher",
    "TokenFetcher",
    "exchange_request",
]

CLIENT_CREDENTIALS: Final = "client_credentials"
TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # RFC 8693 §2.1
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"  # RFC 8693 §3


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


# --- token exchange (RFC 8693) -------------------------------------------------------------------


def exchange_request(
    auth: ClientAuth, subject_token: str, scope: str = "", audience: Sequence[str] = ()
) -> tuple[issuer_pb2.TokenRequest, Metadata]:
    """The RFC 8693 §2.1 request: ``subject_token`` (an access token meant for this client)
    exchanged for one on behalf of its subject, narrowed to ``scope`` and ``audience``. The
    authenticated client is the actor; no ``actor_token`` is sent."""
    if not subject_token:
        raise ValueError("a subject token is required (RFC 8693 §2.1)")
    request = issuer_pb2.TokenRequest(
        grant_type=TOKEN_EXCHANGE,
        subject_token=subject_token,
        subject_token_type=ACCESS_TOKEN_TYPE,
        scope=scope,
        audience=list(audience),
    )
    return request, auth.apply(request)


class TokenExchangeFetcher:
    """Token exchange against the Tokenry issuer over a grpc.aio channel: a token to call a
    downstream service on behalf of the subject of ``subject_token`` (e.g. the caller's token
    of the request being handled). A :class:`~tokenry.client.TokenSource` over it caches and
    refreshes the exchanged token like any other; the result never outlives the subject token
    (RFC 8693 §2.2, enforced by the issuer).

    The subject token's ``aud`` must name this client or one of its registered audiences, and
    the client must be allowed to exchange tokens of the subject token's client.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        auth: ClientAuth,
        subject_token: str,
        *,
        scope: str = "",
        audience: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> None:
        self._stub = issuer_pb2_grpc.IssuerStub(channel)
        self._auth = auth
        self._subject_token = subject_token
        self._scope = scope
        self._audience = tuple(audience)
        self._timeout = timeout

    def __repr__(self) -> str:  # never print the subject token
        return f"TokenExchangeFetcher(scope={self._scope!r}, audience={self._audience!r})"

    async def fetch(self) -> IssuedToken:
        request, metadata = exchange_request(
            self._auth, self._subject_token, self._scope, self._audience
        )
        return _issued(
            await self._stub.Token(request, metadata=tuple(metadata), timeout=self._timeout)
        )
