"""gRPC server interceptor for grpc.aio: authenticate every call with the local verifier.

::

    server = grpc.aio.server(interceptors=[AuthInterceptor(verifier, {
        "/demo.Greeter/Hello": MethodPolicy(scopes={"demo.read"}),
        "/demo.Admin/*": MethodPolicy(scopes={"demo.admin"}, on_stale=StalePolicy.INTROSPECT),
    })])

    async def Hello(self, request, context):
        claims = current_claims()          # the verified, read-only claims of this call

Rules:

- The bearer token is read only from the ``authorization`` metadata (RFC 6750 §2.1; SPEC §3:
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

- Claims reach the handler through a ContextVar: set in the call's own task for coroutine
  handlers (gRPC runs the interceptor and the handler in one task per call), and around the
  call for sync handlers run in the server's migration thread pool.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tokenry.v1 import errors_pb2
from tokenry.verifier.errors import VerificationError, VerifierUnavailableError
from tokenry.verifier.verifier import Claims, StalePolicy, Verifier

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

_claims: contextvars.ContextVar[Claims | None] = contextvars.ContextVar(
    "tokenry_claims", default=None
)

#: Probes and tooling work without a token (SPEC §2: health and reflection on every service).
PUBLIC_METHODS: Final = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
ERROR_DOMAIN: Final = "tokenry.verifier"


def current_claims() -> Claims:
    """The verified claims of the call being handled (read-only).

    Raises:
        LookupError: called outside an authenticated call (or in a public method).
    """
    claims = _claims.get()
    if claims is None:
        raise LookupError("no authenticated call in this context")
    return claims


def current_claims_or_none() -> Claims | None:
    """Like :func:`current_claims`, None outside an authenticated call."""
    return _claims.get()


# --- policies ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """What a method requires.

    Args:
        scopes: every one of these scopes must be in the token's ``scope`` (RFC 6749 §3.3).
        public: no authentication at all (health, reflection, a public API).
        on_stale: what to do while the revocation state is stale (SPEC §4.4).
    """

    scopes: Set[str] = field(default_factory=frozenset)  # any set; stored as a frozenset
    public: bool = False
    on_stale: StalePolicy = StalePolicy.FAIL_CLOSED

    def __post_init__(self) -> None:
        scopes = self.scopes
        if isinstance(scopes, str):
            raise TypeError("scopes must be a collection of scope names, not one string")
        scopes = frozenset(scopes)
        if any(not s or " " in s for s in scopes):
            raise ValueError("a scope name is a non-empty string without spaces")
        if self.public and scopes:
            raise ValueError("a public method cannot require scopes")
        object.__setattr__(self, "scopes", scopes)


PUBLIC: Final = MethodPolicy(public=True)
AUTHENTICATED: Final = MethodPolicy()


class Policies:
    """Method → :class:`MethodPolicy`: exact name, then ``/pkg.Service/*``, then the default."""

    __slots__ = ("_default", "_exact", "_services")

    def __init__(
        self,
        policies: Mapping[str, MethodPolicy] | None = None,
        default: MethodPolicy | None = None,
    ) -> None:
        self._exact: dict[str, MethodPolicy] = dict.fromkeys(PUBLIC_METHODS, PUBLIC)
        self._services: dict[str, MethodPolicy] = {}
        for name, policy in (policies or {}).items():
            if not isinstance(policy, MethodPolicy):
                raise TypeError(f"policy for {name!r} must be a MethodPolicy")
            if not name.startswith("/") or name.count("/") != 2 or name.endswith("/"):
                raise ValueError(f"{name!r} is not /package.Service/Method or /package.Service/*")
            if name.endswith("/*"):
                self._services[name[:-2]] = policy
            else:
                self._exact[name] = policy
        self._default = default if default is not None else AUTHENTICATED

    def resolve(self, method: str) -> MethodPolicy:
        policy = self._exact.get(method)
        if policy is not None:
            return policy
        if self._services:
            policy = self._services.get(method.rpartition("/")[0])
            if policy is not None:
                return policy
        return self._default


# --- the pieces both server interceptors share ---------------------------------------------------


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The bearer token of the single ``authorization`` entry, or None (missing or malformed).

    RFC 6750 §2.1: ``Bearer`` SP b64token; the scheme is case-insensitive (RFC 7235 §2.1).
    """
    found: str | bytes | None = None
    for key, value in metadata or ():
        if key == "authorization":
            if found is not None:
                return None  # several credentials: refuse rather than pick one
            found = value
    if type(found) is not str:
        return None
    if found.startswith("Bearer "):  # the common spelling: no copies but the token's
        token = found[7:]
        if token and " " not in token:
            return token
    scheme, _, token = found.partition(" ")
    token = token.strip(" ")
    if len(scheme) != 6 or scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def auth_status(error: str, description: str, reason: str) -> grpc.Status:
    """A gRPC status with an ``OAuthError`` and a ``google.rpc.ErrorInfo`` detail."""
    code = {
        "invalid_token": grpc.StatusCode.UNAUTHENTICATED,
        "insufficient_scope": grpc.StatusCode.PERMISSION_DENIED,
        "temporarily_unavailable": grpc.StatusCode.UNAVAILABLE,
    }.get(error, grpc.StatusCode.INTERNAL)
    oauth = any_pb2.Any()
    oauth.Pack(errors_pb2.OAuthError(error=error, error_description=description))
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=reason.upper(), domain=ERROR_DOMAIN, metadata={"reason": reason}
        )
    )
    message = f"{error}: {description}"
    status = status_pb2.Status(code=code.value[0], message=message, details=[oauth, info])
    result: grpc.Status = rpc_status.to_status(status)
    return result


MISSING_TOKEN: Final = auth_status(
    "invalid_token", "a bearer token is required in the authorization metadata", "missing_token"
)
INSUFFICIENT_SCOPE: Final = auth_status(
    "insufficient_scope", "the token lacks a scope this method requires", "insufficient_scope"
)


class StatusBook:
    """The status for a :class:`VerificationError`, built once per distinct error.

    UNAVAILABLE for the verifier's own state, UNAUTHENTICATED for anything about the token.
    Descriptions are fixed texts of this package (never token content), so there are few
    distinct statuses; the book is bounded all the same.
    """

    __slots__ = ("_statuses",)

    def __init__(self) -> None:
        self._statuses: dict[tuple[type[VerificationError], str, str], grpc.Status] = {}

    def __call__(self, exc: VerificationError) -> grpc.Status:
        key = (type(exc), exc.reason, exc.description)
        status = self._statuses.get(key)
        if status is None:
            if isinstance(exc, VerifierUnavailableError):
                status = auth_status("temporarily_unavailable", exc.description, exc.reason)
            else:
                status = auth_status(
                    "invalid_token", f"{exc.reason}: {exc.description}", exc.reason
                )
            if len(self._statuses) < 1024:
                self._statuses[key] = status
        return status


class ScopeCheck:
    """``required <= set(scope.split())`` with the split memoised per distinct scope string."""

    __slots__ = ("_sets",)

    def __init__(self) -> None:
        self._sets: dict[str, frozenset[str]] = {}

    def __call__(self, claims: Claims, required: Set[str]) -> bool:
        scope = claims.get("scope")
        if type(scope) is not str:
            return False
        granted = self._sets.get(scope)
        if granted is None:
            granted = frozenset(scope.split())
            if len(self._sets) >= 4096:
                self._sets.clear()  # bounded: scope strings are few; this never happens in practice
            self._sets[scope] = granted
        return required <= granted


def behavior_of(handler: grpc.RpcMethodHandler[Any, Any]) -> Callable[..., Any]:
    behavior = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    if behavior is None:  # pragma: no cover - grpc never builds such a handler
        raise ValueError("RPC method handler without a behavior")
    return behavior


def replace_behavior(
    handler: grpc.RpcMethodHandler[Any, Any] | None, behavior: Callable[..., Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with another behavior of the same kind (unary-unary when None)."""
    if handler is None:
        return grpc.unary_unary_rpc_method_handler(behavior)
    kwargs: dict[str, Any] = {
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


def streams_responses(handler: grpc.RpcMethodHandler[Any, Any]) -> bool:
    return handler.unary_stream is not None or handler.stream_stream is not None


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


def set_claims(claims: Claims) -> None:
    """Set the current call's claims (for the sync interceptor, in the call's own context)."""
    _claims.set(claims)
