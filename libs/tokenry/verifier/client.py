"""Client side: obtain access tokens by client credentials and attach them to every call.

::

    source = TokenSource(IssuerTokenFetcher(issuer_channel, ClientSecretBasic(ID, SECRET),
                                            scope="demo.read", audience=["demo-api"]))
    channel = grpc.aio.insecure_channel(BACKEND, interceptors=bearer_interceptors(source))

    # sync grpc
    source = SyncTokenSource(SyncIssuerTokenFetcher(grpc.insecure_channel(ISSUER), auth, ...))
    channel = grpc.intercept_channel(grpc.insecure_channel(BACKEND), SyncBearerInterceptor(source))

Behaviour (both flavours):

- The token is fetched with the RFC 6749 §4.4 client-credentials grant from the Tokenry issuer
  (``Issuer.Token``), cached, and refreshed *before* it expires: after ``refresh_ratio`` of its
  lifetime one caller refreshes while the others keep using the current token; past
  ``usable_until`` (``expires_in`` minus a margin for clock skew and transit) callers wait for
  the refresh. There is never more than one refresh in flight.
- Client authentication is a port (:class:`ClientAuth`). :class:`ClientSecretBasic` is
  ``client_secret_basic`` (RFC 6749 §2.3.1). ``private_key_jwt`` (RFC 7523 §2.2) plugs in as
  another ``ClientAuth`` that sets ``client_assertion_type`` and a fresh signed
  ``client_assertion`` on the request (its own ``jti`` and a short ``exp`` per fetch) and
  returns no metadata; nothing else changes.
- ``authorization: Bearer <token>`` is attached to every call (RFC 6750 §2.1) unless the caller
  set an ``authorization`` entry itself. A unary-request call refused with UNAUTHENTICATED is
  retried once with a freshly fetched token (the server may have seen a revoked or rotated-out
  token); a streaming-request call cannot be replayed, so it only drops the refused token.
- A failed fetch surfaces as the issuer's ``grpc.RpcError`` (its ``OAuthError`` detail says why,
  e.g. ``invalid_client``); a failed *early* refresh is logged and retried with backoff while
  the current token is still usable.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol
from urllib.parse import quote_plus

import grpc

from tokenry.core.clock import Clock, SystemClock
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

__all__ = [
    "ClientAuth",
    "ClientSecretBasic",
    "IssuedToken",
    "IssuerTokenFetcher",
    "RefreshPolicy",
    "SyncBearerInterceptor",
    "SyncIssuerTokenFetcher",
    "SyncTokenSource",
    "TokenFetcher",
    "TokenSource",
    "bearer_interceptors",
]

log = logging.getLogger(__name__)

CLIENT_CREDENTIALS: Final = "client_credentials"
Metadata = Sequence[tuple[str, str]]


# --- client authentication (the extension point for private_key_jwt) ----------------------------


class ClientAuth(Protocol):
    """How the client authenticates to the token endpoint (RFC 6749 §2.3)."""

    def apply(self, request: issuer_pb2.TokenRequest) -> Metadata:
        """Set request fields this method needs and return the metadata to send with it.

        Called once per token fetch, so a method that signs an assertion makes a fresh one.
        """
        ...


@dataclass(frozen=True, slots=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with form-urlencoded id and secret (RFC 6749 §2.3.1)."""

    client_id: str
    client_secret: str = field(repr=False)

    def apply(self, request: issuer_pb2.TokenRequest) -> Metadata:
        del request  # nothing in the body
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
        return (("authorization", "Basic " + base64.b64encode(pair.encode()).decode("ascii")),)


# --- fetching ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token and its lifetime in seconds (RFC 6749 §5.1 ``expires_in``)."""

    access_token: str = field(repr=False)
    expires_in: float


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


# --- caching and refreshing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """When a cached token is refreshed.

    Args:
        refresh_ratio: refresh early once this fraction of the lifetime has passed.
        expiry_margin: stop using a token this many seconds before it expires (clock skew and
            transit), capped at a tenth of its lifetime.
        retry_backoff: first delay after a failed early refresh, doubling up to ``max_backoff``.
    """

    refresh_ratio: float = 0.75
    expiry_margin: float = 30.0
    retry_backoff: float = 1.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.refresh_ratio <= 1.0:
            raise ValueError("refresh_ratio must be in (0, 1]")
        if self.expiry_margin < 0 or self.retry_backoff <= 0 or self.max_backoff <= 0:
            raise ValueError("margins and backoffs must be positive")

    def plan(self, token: IssuedToken, fetched_at: float) -> _Held:
        """``fetched_at`` is when the fetch *started* (monotonic), so the plan errs early."""
        lifetime = token.expires_in
        usable = fetched_at + lifetime - min(self.expiry_margin, lifetime / 10)
        refresh = min(fetched_at + lifetime * self.refresh_ratio, usable)
        return _Held(token.access_token, refresh, usable)


class _Held(NamedTuple):
    value: str
    refresh_at: float  # monotonic
    usable_until: float  # monotonic


class TokenSource:
    """A cached client-credentials token for asyncio code; one refresh in flight at most."""

    def __init__(
        self,
        fetcher: TokenFetcher,
        *,
        policy: RefreshPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._policy = policy or RefreshPolicy()
        self._clock = clock or SystemClock()
        self._held: _Held | None = None
        self._inflight: asyncio.Task[_Held] | None = None
        self._retry_at = float("-inf")
        self._backoff = self._policy.retry_backoff
        self.fetches = 0

    async def token(self) -> str:
        """A usable access token: the cached one, or a fresh one when it is (nearly) expired."""
        held = self._held
        if held is not None:
            now = self._clock.monotonic()
            if now < held.refresh_at:
                return held.value
            if now < held.usable_until:
                if self._inflight is None and now >= self._retry_at:
                    self._start().add_done_callback(self._early_refresh_done)
                return held.value
        task = self._inflight or self._start()
        return (await asyncio.shield(task)).value

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next :meth:`token` call fetches a new one.

        A no-op if another caller already replaced it, so a burst of refusals causes one fetch.
        """
        held = self._held
        if held is not None and held.value == token:
            self._held = None

    def _start(self) -> asyncio.Task[_Held]:
        task = asyncio.create_task(self._fetch())
        self._inflight = task
        return task

    async def _fetch(self) -> _Held:
        started = self._clock.monotonic()
        try:
            self.fetches += 1
            issued = await self._fetcher.fetch()
        except BaseException:
            self._retry_at = self._clock.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._policy.max_backoff)
            raise
        finally:
            if self._inflight is asyncio.current_task():
                self._inflight = None
        self._held = held = self._policy.plan(issued, started)
        self._backoff = self._policy.retry_backoff
        self._retry_at = float("-inf")
        return held

    @staticmethod
    def _early_refresh_done(task: asyncio.Task[_Held]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "early token refresh failed (%s); using the current token",
                type(task.exception()).__name__,
            )


class SyncTokenSource:
    """A cached client-credentials token for threads; one refresh in flight at most."""

    def __init__(
        self,
        fetcher: SyncTokenFetcher,
        *,
        policy: RefreshPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._policy = policy or RefreshPolicy()
        self._clock = clock or SystemClock()
        self._held: _Held | None = None
        self._lock = threading.Lock()
        self._retry_at = float("-inf")
        self._backoff = self._policy.retry_backoff
        self.fetches = 0

    def token(self) -> str:
        """A usable access token; blocks only when there is none (or it is nearly expired)."""
        held = self._held
        if held is not None:
            now = self._clock.monotonic()
            if now < held.refresh_at:
                return held.value
            if now < held.usable_until:
                # One thread refreshes early; the others keep using the current token.
                if now >= self._retry_at and self._lock.acquire(blocking=False):
                    try:
                        if self._held is held:
                            return self._fetch_locked().value
                    except Exception as exc:
                        log.warning(
                            "early token refresh failed (%s); using the current token",
                            type(exc).__name__,
                        )
                    finally:
                        self._lock.release()
                return self._held.value if self._held is not None else held.value
        with self._lock:
            held = self._held
            if held is not None and self._clock.monotonic() < held.usable_until:
                return held.value  # another thread refreshed while this one waited
            return self._fetch_locked().value

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next :meth:`token` call fetches a new one."""
        with self._lock:
            held = self._held
            if held is not None and held.value == token:
                self._held = None

    def _fetch_locked(self) -> _Held:
        started = self._clock.monotonic()
        self.fetches += 1
        try:
            issued = self._fetcher.fetch()
        except BaseException:
            self._retry_at = self._clock.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._policy.max_backoff)
            raise
        self._held = held = self._policy.plan(issued, started)
        self._backoff = self._policy.retry_backoff
        self._retry_at = float("-inf")
        return held


# --- metadata ------------------------------------------------------------------------------------


def _has_authorization(metadata: Any) -> bool:
    return metadata is not None and any(key == "authorization" for key, _ in metadata)


def _aio_details(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add("authorization", f"Bearer {token}")
    return details._replace(metadata=metadata)  # type: ignore[attr-defined,no-any-return]


class _SyncDetails(
    collections.namedtuple(  # the shape of grpc._interceptor._ClientCallDetails
        "_SyncDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


def _sync_details(details: grpc.ClientCallDetails, token: str) -> grpc.ClientCallDetails:
    metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
    return _SyncDetails(
        details.method,
        details.timeout,
        metadata,
        details.credentials,
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


# --- grpc.aio client interceptors ----------------------------------------------------------------

AioContinuation = Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]]


class _AioBearer:
    def __init__(self, source: TokenSource) -> None:
        self._source = source
        self._checks: set[asyncio.Future[None]] = set()

    async def _unary_request(
        self, continuation: AioContinuation, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        if _has_authorization(details.metadata):
            return await continuation(details, request)
        source = self._source
        token = await source.token()
        call = await continuation(_aio_details(details, token), request)
        if await call.code() != grpc.StatusCode.UNAUTHENTICATED:
            return call
        # Refused (revoked, or its key rotated out): one retry with a freshly fetched token.
        source.invalidate(token)
        return await continuation(_aio_details(details, await source.token()), request)

    async def _stream_request(
        self, continuation: AioContinuation, details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        if _has_authorization(details.metadata):
            return await continuation(details, requests)
        source = self._source
        token = await source.token()
        call = await continuation(_aio_details(details, token), requests)

        async def check(finished: Any) -> None:
            if await finished.code() == grpc.StatusCode.UNAUTHENTICATED:
                source.invalidate(token)  # cannot replay a request stream; next call refetches

        def done(finished: Any) -> None:
            task = asyncio.ensure_future(check(finished))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

        call.add_done_callback(done)
        return call


class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: AioContinuation, client_call_details: Any, request: Any
    ) -> Any:
        return await self._unary_request(continuation, client_call_details, request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: AioContinuation, client_call_details: Any, request: Any
    ) -> Any:
        # A response stream cannot be awaited for its status before it is read: attach only.
        return await self._stream_request(continuation, client_call_details, request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: AioContinuation,
        client_call_details: Any,
        request_iterator: AsyncIterable[Any] | Any,
    ) -> Any:
        return await self._stream_request(continuation, client_call_details, request_iterator)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: AioContinuation,
        client_call_details: Any,
        request_iterator: AsyncIterable[Any] | Any,
    ) -> Any:
        return await self._stream_request(continuation, client_call_details, request_iterator)


def bearer_interceptors(source: TokenSource) -> list[grpc.aio.ClientInterceptor]:
    """The four grpc.aio client interceptors (one per call kind) sharing ``source``.

    grpc.aio files an interceptor under the first call kind it implements, hence four objects.
    """
    return [
        _AioUnaryUnary(source),
        _AioUnaryStream(source),
        _AioStreamUnary(source),
        _AioStreamStream(source),
    ]


# --- sync grpc client interceptor ----------------------------------------------------------------

SyncContinuation = Callable[[grpc.ClientCallDetails, Any], Any]


class SyncBearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Attaches (and refreshes) the bearer token on a sync channel; see the module docstring.

    Use with ``grpc.intercept_channel(channel, SyncBearerInterceptor(source))``. A unary-request
    call refused with UNAUTHENTICATED is retried once (for ``.future()`` calls this waits for the
    first attempt to finish).
    """

    def __init__(self, source: SyncTokenSource) -> None:
        self._source = source

    def intercept_unary_unary(
        self,
        continuation: SyncContinuation,
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        if _has_authorization(client_call_details.metadata):
            return continuation(client_call_details, request)
        source = self._source
        token = source.token()
        outcome = continuation(_sync_details(client_call_details, token), request)
        if outcome.code() != grpc.StatusCode.UNAUTHENTICATED:
            return outcome
        source.invalidate(token)
        return continuation(_sync_details(client_call_details, source.token()), request)

    def intercept_unary_stream(
        self,
        continuation: SyncContinuation,
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        return self._attach(continuation, client_call_details, request)

    def intercept_stream_unary(
        self,
        continuation: SyncContinuation,
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        return self._attach(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(
        self,
        continuation: SyncContinuation,
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[Any],
    ) -> Any:
        return self._attach(continuation, client_call_details, request_iterator)

    def _attach(
        self, continuation: SyncContinuation, details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        if _has_authorization(details.metadata):
            return continuation(details, request)
        source = self._source
        token = source.token()
        call = continuation(_sync_details(details, token), request)

        def done(finished: Any) -> None:
            if finished.code() == grpc.StatusCode.UNAUTHENTICATED:
                source.invalidate(token)

        call.add_done_callback(done)
        return call
