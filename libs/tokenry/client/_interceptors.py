"""Client interceptors: ``authorization: Bearer <token>`` on every call (RFC 6750 §2.1).

A unary-request call refused with UNAUTHENTICATED is retried once with a freshly fetched token
(the server may have seen a revoked or rotated-out token); a streaming-request call cannot be
replayed, so it only drops the refused token.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from typing import Any

import grpc

from tokenry.client._sources import SyncTokenSource, TokenSource
from tokenry.tls import ClientTls

__all__ = ["SyncBearerInterceptor", "bearer_channel", "bearer_interceptors", "sync_bearer_channel"]


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


def bearer_channel(
    target: str,
    source: TokenSource,
    credentials: grpc.ChannelCredentials | ClientTls | None = None,
    *,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target`` that attaches ``source``'s token to every call.

    ``credentials``: TLS towards the server (``grpc.ssl_channel_credentials(...)``, with the
    caller's certificate for mTLS); None is plaintext, for loopback and tests only — a bearer
    token on a plaintext channel can be read by anyone on the path (docs/spec.md §3 "Transport").
    A :class:`tokenry.tls.ClientTls` (files) gives a channel that takes up a rotated
    certificate without a restart (:meth:`~tokenry.tls.ClientTls.reloading_channel`).
    """
    interceptors = bearer_interceptors(source)
    if isinstance(credentials, ClientTls):
        return credentials.reloading_channel(target, options=options, interceptors=interceptors)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def sync_bearer_channel(
    target: str,
    source: SyncTokenSource,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """The sync-grpc :func:`bearer_channel`: ``credentials`` None is plaintext."""
    if credentials is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    return grpc.intercept_channel(channel, SyncBearerInterceptor(source))


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
