"""gRPC server interceptor (grpc.aio): authenticate every call with the local verifier.

Reads only the ``authorization`` metadata (RFC 6750 §2.1: never a query or body parameter),
applies the per-method policy the service declares, and puts the verified claims in a
ContextVar for the handler (:func:`current_claims`). Failures abort with UNAUTHENTICATED
(bad or missing token), PERMISSION_DENIED (scope) or UNAVAILABLE (verifier stale, fail closed),
with an OAuth error code in the status details.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import grpc

from tokenry.servicekit.status import oauth_status
from tokenry.verifier.errors import VerificationError, VerifierUnavailableError
from tokenry.verifier.verifier import Claims, Verifier

_claims: contextvars.ContextVar[Claims | None] = contextvars.ContextVar(
    "tokenry_claims", default=None
)

# Probes and tooling must work without a token.
PUBLIC_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


def current_claims() -> Claims:
    """The verified claims of the call being handled.

    Raises:
        LookupError: called outside an authenticated call.
    """
    claims = _claims.get()
    if claims is None:
        raise LookupError("no authenticated call in this context")
    return claims


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """What a method requires: every scope in ``scopes``; ``public`` skips authentication."""

    scopes: frozenset[str] = frozenset()
    public: bool = False


def _bearer(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        verifier: Verifier,
        policies: Mapping[str, MethodPolicy] | None = None,
        default: MethodPolicy | None = None,
    ) -> None:
        self._verifier = verifier
        self._policies = dict(policies or {})
        self._default = default or MethodPolicy()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        policy = self._policies.get(method, self._default)
        handler = await continuation(handler_call_details)
        if handler is None or policy.public or method in PUBLIC_METHODS:
            return handler
        status = await self._authenticate(handler_call_details, policy)
        if isinstance(status, grpc.Status):
            return _reject(handler, status)
        return _with_claims(handler, status)

    async def _authenticate(
        self, details: grpc.HandlerCallDetails, policy: MethodPolicy
    ) -> Claims | grpc.Status:
        token = _bearer(details)
        if token is None:
            return oauth_status(
                "invalid_token", "a bearer token is required in the authorization metadata"
            )
        try:
            claims = await self._verifier.verify(token)
        except VerifierUnavailableError as exc:
            return oauth_status("temporarily_unavailable", exc.description)
        except VerificationError as exc:
            return oauth_status("invalid_token", f"{exc.reason}: {exc.description}")
        if policy.scopes:
            granted = set(str(claims.get("scope", "")).split())
            if not policy.scopes <= granted:
                return oauth_status("insufficient_scope", "the token lacks a required scope")
        return claims


def _reject(
    handler: grpc.RpcMethodHandler[Any, Any], status: grpc.Status
) -> grpc.RpcMethodHandler[Any, Any] | None:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort_with_status(status)

    return _replace(handler, abort)


def _with_claims(
    handler: grpc.RpcMethodHandler[Any, Any], claims: Claims
) -> grpc.RpcMethodHandler[Any, Any] | None:
    inner = cast(Callable[..., Awaitable[Any]], handler.unary_unary)

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        token = _claims.set(claims)
        try:
            return await inner(request, context)
        finally:
            _claims.reset(token)

    if handler.unary_unary is None:
        # Streaming handlers: the claims are set for the task that runs them.
        _claims.set(claims)
        return handler
    return _replace(handler, call)


def _replace(
    handler: grpc.RpcMethodHandler[Any, Any], behavior: Callable[..., Any]
) -> grpc.RpcMethodHandler[Any, Any] | None:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(behavior, **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(behavior, **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(behavior, **kwargs)
    return grpc.stream_stream_rpc_method_handler(behavior, **kwargs)
