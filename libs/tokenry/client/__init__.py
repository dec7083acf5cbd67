"""The caller side: obtain Tokenry access tokens and attach them to every gRPC call.

::

    source = TokenSource(IssuerTokenFetcher(issuer_channel, ClientSecretBasic(ID, SECRET),
                                            scope="demo.read", audience=["demo-api"]))
    channel = bearer_channel(BACKEND, source, grpc.ssl_channel_credentials(ca_pem))
    # or: grpc.aio.secure_channel(BACKEND, creds, interceptors=bearer_interceptors(source))

    # sync grpc
    source = SyncTokenSource(SyncIssuerTokenFetcher(grpc.insecure_channel(ISSUER), auth, ...))
    channel = grpc.intercept_channel(grpc.insecure_channel(BACKEND), SyncBearerInterceptor(source))

- Tokens come from the RFC 6749 §4.4 client-credentials grant (``Issuer.Token``), or from RFC
  8693 token exchange on behalf of a caller (:class:`TokenExchangeFetcher`); client
  authentication is the :class:`ClientAuth` port (:class:`ClientSecretBasic` is RFC 6749
  §2.3.1; ``private_key_jwt``, RFC 7523 §2.2, plugs in as another ``ClientAuth``).
- One sans-I/O :class:`RefreshMachine` decides for both token sources when to refresh (early,
  by one caller) and when callers must wait; never more than one fetch in flight.
- ``authorization: Bearer <token>`` is attached to every call (RFC 6750 §2.1) unless the caller
  set one; a unary-request call refused with UNAUTHENTICATED is retried once with a fresh token.
"""

from tokenry.client._auth import ClientAuth, ClientSecretBasic
from tokenry.client._fetchers import (
    IssuerTokenFetcher,
    SyncIssuerTokenFetcher,
    SyncTokenFetcher,
    TokenExchangeFetcher,
    TokenFetcher,
)
from tokenry.client._interceptors import (
    SyncBearerInterceptor,
    bearer_channel,
    bearer_interceptors,
    sync_bearer_channel,
)
from tokenry.client._refresh import IssuedToken, RefreshMachine, RefreshPolicy, Step
from tokenry.client._sources import SyncTokenSource, TokenSource

__all__ = [
    # authentication and fetching
    "ClientAuth",
    "ClientSecretBasic",
    "IssuedToken",
    "IssuerTokenFetcher",
    "SyncIssuerTokenFetcher",
    "SyncTokenFetcher",
    "TokenExchangeFetcher",
    "TokenFetcher",
    # caching and refreshing
    "RefreshMachine",
    "RefreshPolicy",
    "Step",
    "SyncTokenSource",
    "TokenSource",
    # interceptors
    "SyncBearerInterceptor",
    "bearer_channel",
    "bearer_interceptors",
    "sync_bearer_channel",
]
