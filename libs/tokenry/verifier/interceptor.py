"""gRPC server interceptor for grpc.aio: authenticate every call with the local verifier.

::

    server = grpc.aio.server(interceptors=[AuthInterceptor(verifier, {
        "/demo.Greeter/Hello": MethodPolicy(scopes={"demo.read"}),
        "/demo.Admin/*": MethodPolicy(scopes={"demo.admin"}, on_stale=StalePolicy.INTROSPECT),
    })])

    async def Hello(self, request, context):
        claims = current_claims()          # the verified, read-only claims of this call

Rules:

- The bearer token is read only from the ``authorization`` metadata (RFC 6750 §2.1; docs/spec.md §3:
  never a query or body parameter), scheme ``Bearer`` compared case-insensitively (RFC 7235
  §2.1). A call carrying several ``authorization`` entries is refused (ambiguous).
- Policies: an exact ``/pkg.Service/Method`` entry wins, then ``/pkg.Service/*``, then
  ``default`` (authenticated, no scope). Health checks and reflection are public unless the
  service says otherwise (:data:`PUBLIC_METHODS`). A non-public call is authenticated before
  the method is looked up, so an anonymous caller cannot probe which methods exist.
- Outcomes (an OAuth ``OAuthError`` detail plus a ``google.rpc.ErrorInfo`` detail whose
  ``metadata["reason"]`` is the verifier's reason code, e.g. ``expired``):

  ========================================  ===================  =========================
  missing/bad/expired/revoked token         UNAUTHENTICATED      ``invalid_token``
  token lacks a scope the method requires   PERMISSION_DENIED    ``insufficient_scope``
  verifier stale (fail closed) / no keys    UNAVAILABLE          ``temporarily_unavailable``
  ========================================  ===================  =========================

- The policy core (policies, token reader, statuses) is shared with the sync interceptor
  (:mod:`tokenry.verifier._policy`); this module is the grpc.aio adapter over it.
- Claims reach the handler through a ContextVar: set in the call's own task for coroutine
  handlers (gRPC runs the interceptor and the handler in one task per call), and around the
  call for sync handlers run in the server's migration thread pool.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from tokenry.jose.errors import VerificationError
from tokenry.verifier._binding import BoundHandlers
from tokenry.verifier._policy import (
    INSUFFICIENT_SCOPE,
    MISSING_TOKEN,
    PUBLIC_METHODS,
    MethodPolicy,
    Policies,
    ScopeCheck,
    StatusBook,
    _claims,
    auth_status,
    bearer_token,
    behavior_of,
    current_claims,
    current_claims_or_none,
    replace_behavior,
    streams_responses,
)
from tokenry.verifier._verifier import Claims, Verifier

__all__ = [
    "PUBLIC_METHODS",
    "AuthInterceptor",
    "MethodPolicy",
    "Policies",
    "auth_status",
    "StatusBook",
    "bearer_token",
    "current_claims",
    "current_claims_or_none",
]

# --- grpc.aio ------------------------------------------------------------------------------------

if TYPE_CHECKING:
    Continuation = Callable[
        [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
    ]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every non-public call of a grpc.aio server; see the module docstring.

    Args:
        verifier: shared by every interceptor of the process (aio and sync).
        policies: ``/pkg.Service/Method`` or ``/pkg.Service/*`` → :class:`MethodPolicy`.
        default: the policy of methods not listed (default: authenticated, no scope).
    """

    def __init__(
        self,
        verifier: Verifier,
        policies: Mapping[str, MethodPolicy] | None = None,
        default: MethodPolicy | None = None,
    ) -> None:
        self._verifier = verifier
        self._policies = Policies(policies, default)
        self._scopes_ok = ScopeCheck()
        self._status_for = StatusBook()
        self._is_async: dict[Callable[..., Any], bool] = {}
        self._bound = BoundHandlers()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        policy = self._policies.resolve(handler_call_details.method)
        if policy.public:
            return await continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        if token is None:
            return _aio_abort(await continuation(handler_call_details), MISSING_TOKEN)
        verifier = self._verifier
        claims = verifier.check_cached(token)
        if claims is None:
            try:
                claims = await verifier.verify(token, on_stale=policy.on_stale)
            except VerificationError as exc:
                return _aio_abort(await continuation(handler_call_details), self._status_for(exc))
        if policy.scopes and not self._scopes_ok(claims, policy.scopes):
            return _aio_abort(await continuation(handler_call_details), INSUFFICIENT_SCOPE)
        # gRPC runs this interceptor and a coroutine handler in the call's own task: the
        # handler sees the variable, and it dies with the task.
        _claims.set(claims)
        handler = await continuation(handler_call_details)
        if "cnf" in claims:  # RFC 8705 §3.2: checked against the caller's certificate
            handler = self._bound(handler)
        if handler is None or self._runs_on_loop(handler):
            return handler
        return _with_claims_in_thread(handler, claims)

    def _runs_on_loop(self, handler: grpc.RpcMethodHandler[Any, Any]) -> bool:
        behavior = behavior_of(handler)
        known = self._is_async.get(behavior)
        if known is None:
            known = inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)
            if len(self._is_async) < 4096:
                self._is_async[behavior] = known
        return known


def _aio_abort(
    handler: grpc.RpcMethodHandler[Any, Any] | None, status: grpc.Status
) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort_with_status(status)

    return replace_behavior(handler, abort)


def _with_claims_in_thread(
    handler: grpc.RpcMethodHandler[Any, Any], claims: Claims
) -> grpc.RpcMethodHandler[Any, Any]:
    """A sync handler run by grpc.aio in its thread pool: set the claims around the call."""
    inner = behavior_of(handler)
    if streams_responses(handler):

        def stream(request: Any, context: Any) -> Iterator[Any]:
            token = _claims.set(claims)
            try:
                yield from inner(request, context)
            finally:
                _claims.reset(token)

        return replace_behavior(handler, stream)

    def call(request: Any, context: Any) -> Any:
        token = _claims.set(claims)
        try:
            return inner(request, context)
        finally:
            _claims.reset(token)

    return replace_behavior(handler, call)
