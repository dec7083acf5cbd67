"""One interceptor maps domain exceptions to gRPC statuses; servicers never call abort.

``OAuthError`` → its code with an OAuthError detail; database or NATS unreachable →
UNAVAILABLE (fail fast, the client retries); anything else → INTERNAL with a generic message
(the exception is logged, never sent: it may hold secrets).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc

from tokenry.core.errors import OAuthError
from tokenry.servicekit.status import oauth_status

log = logging.getLogger(__name__)


def _status_for(exc: BaseException, unavailable: tuple[type[BaseException], ...]) -> grpc.Status:
    if isinstance(exc, OAuthError):
        return oauth_status(exc.error, exc.description)
    if isinstance(exc, unavailable):
        return oauth_status("temporarily_unavailable", "a backing service is unavailable; retry")
    log.error("unhandled %s in RPC", type(exc).__name__, exc_info=exc)
    return oauth_status("server_error", "internal error")


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, unavailable: tuple[type[BaseException], ...] = ()) -> None:
        self._unavailable = unavailable

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is not None and handler.unary_stream is not None:
            return _map_unary_stream(handler, self._unavailable)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = cast(Callable[..., Awaitable[Any]], handler.unary_unary)
        unavailable = self._unavailable

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await context.abort_with_status(_status_for(exc, unavailable))

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _map_unary_stream(
    handler: grpc.RpcMethodHandler[Any, Any], unavailable: tuple[type[BaseException], ...]
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same mapping for server-streaming methods (e.g. ListRevocations)."""
    inner = cast(Callable[..., AsyncIterator[Any]], handler.unary_stream)

    async def unary_stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for item in inner(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await context.abort_with_status(_status_for(exc, unavailable))

    return grpc.unary_stream_rpc_method_handler(
        unary_stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
