"""Domain exceptions become gRPC statuses in one place; servicers never call abort.

:func:`guard` wraps a servicer's methods once, at registration (no cost per call beyond a
try/except; an aio interceptor would cost ≈ 20 µs per call, docs/design.md §7); a hot method that
catches its own exceptions calls :func:`abort_for` and is marked :func:`maps_own_errors`. Every
servicer is registered through ``guard(servicer, unavailable)``: ``unavailable`` lists the
exceptions that mean a backing service is down.

``OAuthError`` → its code with an OAuthError detail; database or NATS unreachable →
UNAVAILABLE (fail fast, the client retries); anything else → INTERNAL with a generic message
(the exception is logged, never sent: it may hold secrets).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc

from tokenry.core.errors import OAuthError
from tokenry.servicekit.status import oauth_status

log = logging.getLogger(__name__)
T = TypeVar("T")


def _status_for(exc: BaseException, unavailable: tuple[type[BaseException], ...]) -> grpc.Status:
    if isinstance(exc, OAuthError):
        return oauth_status(exc.error, exc.description)
    if isinstance(exc, unavailable):
        return oauth_status("temporarily_unavailable", "a backing service is unavailable; retry")
    log.error("unhandled %s in RPC", type(exc).__name__, exc_info=exc)
    return oauth_status("server_error", "internal error")


def _mapped_unary(
    inner: Callable[..., Awaitable[Any]], unavailable: tuple[type[BaseException], ...]
) -> Callable[..., Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await inner(request, context)
        except Exception as exc:
            await abort_for(context, exc, unavailable)

    return unary


def _mapped_stream(
    inner: Callable[..., AsyncIterator[Any]], unavailable: tuple[type[BaseException], ...]
) -> Callable[..., AsyncIterator[Any]]:
    """The same mapping for server-streaming methods (e.g. ListRevocations)."""

    async def stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for item in inner(request, context):
                yield item
        except Exception as exc:
            await abort_for(context, exc, unavailable)

    return stream


async def abort_for(
    context: grpc.aio.ServicerContext[Any, Any],
    exc: Exception,
    unavailable: tuple[type[BaseException], ...] = (),
) -> NoReturn:
    """What :func:`guard` does, for a hot method that catches its own exceptions: one
    ``try``/``except`` in the method costs nothing until something is raised, while guard's
    wrapper is one more coroutine on every call (the issuer's and introspector's hot paths).
    Mark such a method with :func:`maps_own_errors` so that :func:`guard` leaves it alone."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    await context.abort_with_status(_status_for(exc, unavailable))
    raise AssertionError("abort_with_status returned")  # pragma: no cover - it always raises


_OWN_ERRORS = "__tokenry_maps_own_errors__"
F = TypeVar("F", bound=Callable[..., Any])


def maps_own_errors(method: F) -> F:
    """Mark an RPC method that maps its exceptions itself (with :func:`abort_for`)."""
    setattr(method, _OWN_ERRORS, True)
    return method


def guard(servicer: T, unavailable: tuple[type[BaseException], ...] = ()) -> T:
    """The servicer with each RPC method wrapped to map exceptions to statuses."""
    return cast(T, _Guarded(servicer, unavailable))


class _Guarded:
    __slots__ = ("_servicer", "_unavailable", "_wrapped")

    def __init__(self, servicer: object, unavailable: tuple[type[BaseException], ...]) -> None:
        self._servicer = servicer
        self._unavailable = unavailable
        self._wrapped: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name in self._wrapped:
            return self._wrapped[name]
        attr = getattr(self._servicer, name)
        if getattr(attr, _OWN_ERRORS, False):
            return attr
        if inspect.isasyncgenfunction(attr):
            wrapped: Any = _mapped_stream(attr, self._unavailable)
        elif inspect.iscoroutinefunction(attr):
            wrapped = _mapped_unary(attr, self._unavailable)
        else:
            return attr
        self._wrapped[name] = wrapped
        return wrapped
