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
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

import grpc

from tokenry.core.mtls import CNF_THUMBPRINT, thumbprint_of_pem
from tokenry.verifier._policy import auth_status, behavior_of, replace_behavior, streams_responses

__all__ = ["CERTIFICATE_MISMATCH", "bound_thumbprint", "certificate_matches", "checked_aio"]

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
    values = list(context.auth_context().get("x509_pem_cert") or ())
    if not values or not expected:
        return False
    return hmac.compare_digest(thumbprint_of_pem(bytes(values[0])), expected)


def checked_aio(
    handler: grpc.RpcMethodHandler[Any, Any] | None, expected: str
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """``handler`` refusing the call unless its certificate matches ``expected``."""
    if handler is None:
        return None
    inner = behavior_of(handler)
    is_async = getattr(inner, "__code__", None) is not None and bool(
        inner.__code__.co_flags & 0x180  # CO_COROUTINE | CO_ASYNC_GENERATOR
    )
    if streams_responses(handler):
        if is_async:

            async def astream(request: Any, context: Any) -> AsyncIterator[Any]:
                if not certificate_matches(context, expected):
                    await context.abort_with_status(CERTIFICATE_MISMATCH)
                async for item in inner(request, context):
                    yield item

            return replace_behavior(handler, astream)

        def stream(request: Any, context: Any) -> Iterator[Any]:
            if not certificate_matches(context, expected):
                context.abort_with_status(CERTIFICATE_MISMATCH)
            yield from inner(request, context)

        return replace_behavior(handler, stream)
    if is_async:

        async def acall(request: Any, context: Any) -> Any:
            if not certificate_matches(context, expected):
                await context.abort_with_status(CERTIFICATE_MISMATCH)
            return await inner(request, context)

        return replace_behavior(handler, acall)

    def call(request: Any, context: Any) -> Any:
        if not certificate_matches(context, expected):
            context.abort_with_status(CERTIFICATE_MISMATCH)
        return inner(request, context)

    return replace_behavior(handler, call)
