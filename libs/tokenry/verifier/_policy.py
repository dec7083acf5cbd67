"""The policy core both server interceptors share (aio :mod:`.interceptor`, sync
:mod:`.sync_interceptor`): method policies, the bearer-token reader, the status book, the scope
check and the claims of the current call. See :mod:`tokenry.verifier.interceptor` for the rules.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tokenry.jose.errors import VerificationError, VerifierUnavailableError
from tokenry.v1 import errors_pb2
from tokenry.verifier._config import Claims, StalePolicy

__all__ = [
    "AUTHENTICATED",
    "ERROR_DOMAIN",
    "INSUFFICIENT_SCOPE",
    "MISSING_TOKEN",
    "PUBLIC",
    "PUBLIC_METHODS",
    "MethodPolicy",
    "Policies",
    "ScopeCheck",
    "StatusBook",
    "auth_status",
    "behavior_of",
    "bearer_token",
    "current_claims",
    "current_claims_or_none",
    "replace_behavior",
    "set_claims",
    "streams_responses",
]

_claims: contextvars.ContextVar[Claims | None] = contextvars.ContextVar(
    "tokenry_claims", default=None
)

#: Probes and tooling work without a token (docs/spec.md §2: health and reflection on every
#: service).
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
        on_stale: what to do while the revocation state is stale (docs/spec.md §4.4).
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


def set_claims(claims: Claims) -> None:
    """Set the current call's claims (for the sync interceptor, in the call's own context)."""
    _claims.set(claims)
