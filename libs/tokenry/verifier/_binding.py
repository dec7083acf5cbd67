"""Certificate-bound access tokens at the resource server (RFC 8705 §3.2; issue 13 item 4).

A token whose claims carry ``cnf: {"x5t#S256": ...}`` is accepted only over a connection whose
verified mTLS client certificate has that thumbprint: no certificate, or another one, is
refused (no Bearer downgrade). An unbound token costs one dict lookup (``"cnf" in claims``).
The thumbprint is computed once per distinct certificate, keyed by the certificate's bytes
(never by peer address: grpc has no connection id, and behind a sidecar every peer is
127.0.0.1).
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

import grpc

from tokenry.core.mtls import CNF_THUMBPRINT, thumbprint_of_pem
from tokenry.verifier._policy import (
    _claims,
    auth_status,
    behavior_of,
    replace_behavior,
    streams_responses,
)

__all__ = ["CERTIFICATE_MISMATCH", "BoundHandlers", "bound_thumbprint", "certificate_matches"]

CERTIFICATE_MISMATCH: Final = auth_status(
    "invalid_token",
    "the token is bound to a client certificate this connection does not present",
    "certificate_mismatch",
)


def bound_thumbprint(claims: Mapping[str, Any]) -> str | None:
    """The certificate thumbprint a token is bound to; None for an unbound token.

    A ``cnf`` that is present but not a well-formed x5t#S256 confirmation yields "" (which no
    certificate matches): a token with a confirmation the verifier cannot check is refused.
    """
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, dict):
        return ""
    value = cnf.get(CNF_THUMBPRINT)
    return value if isinstance(value, str) else ""


def certificate_matches(context: Any, expected: str) -> bool:
    """Whether the call's verified client certificate has the thumbprint ``expected``."""
    values = context.auth_context().get("x509_pem_cert")
    if not values or not expected:
        return False
    return hmac.compare_digest(thumbprint_of_pem(values[0]), expected)


def _expected() -> str | None:
    claims = _claims.get()
    return None if claims is None else bound_thumbprint(claims)


class BoundHandlers:
    """Handlers that check the current call's bound token against its certificate, built once
    per original handler (so the interceptor's per-behavior caches keep hitting): the expected
    thumbprint is read from the call's claims, set by the interceptor before the handler runs.
    """

    __slots__ = ("_wrapped",)

    def __init__(self) -> None:
        self._wrapped: dict[
            int, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

    def __call__(
        self, handler: grpc.RpcMethodHandler[Any, Any] | None
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler is None:
            return None
        cached = self._wrapped.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _checked(handler)
        if len(self._wrapped) >= 4096:
            self._wrapped.clear()
        self._wrapped[id(handler)] = (handler, wrapped)
        return wrapped


def _checked(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    inner = behavior_of(handler)
    is_async = inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)
    if streams_responses(handler):
        if is_async:

            async def astream(request: Any, context: Any) -> AsyncIterator[Any]:
                expected = _expected()
                if expected is not None and not certificate_matches(context, expected):
                    await context.abort_with_status(CERTIFICATE_MISMATCH)
                async for item in inner(request, context):
                    yield item

            return replace_behavior(handler, astream)

        def stream(request: Any, context: Any) -> Iterator[Any]:
            expected = _expected()
            if expected is not None and not certificate_matches(context, expected):
                context.abort_with_status(CERTIFICATE_MISMATCH)
            yield from inner(request, context)

        return replace_behavior(handler, stream)
    if is_async:

        async def acall(request: Any, context: Any) -> Any:
            expected = _expected()
            if expected is not None and not certificate_matches(context, expected):
                await context.abort_with_status(CERTIFICATE_MISMATCH)
            return await inner(request, context)

        return replace_behavior(handler, acall)

    def call(request: Any, context: Any) -> Any:
        expected = _expected()
        if expected is not None and not certificate_matches(context, expected):
            context.abort_with_status(CERTIFICATE_MISMATCH)
        return inner(request, context)

    return replace_behavior(handler, call)
