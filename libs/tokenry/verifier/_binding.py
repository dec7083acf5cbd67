"""Certificate-bound access tokens at the resource server (RFC 8705 §3.2; issue 13 item 4).

A token whose claims carry ``cnf: {"x5t#S256": ...}`` is accepted only over a connection whose
verified mTLS client certificate has that thumbprint: no certificate, or another one, is
refused (no Bearer downgrade). An unbound token costs one dict lookup (``"cnf" in claims``) in
the interceptor and never reaches this module.

Per bound call (profiled under callgrind, docs/benchmarks/bound_tokens.md): grpc's
``auth_context()`` is the only API exposing the peer certificate and builds a dict of every
connection property on each call — most of the cost, and out of this module's reach. What is
ours is kept to one function call: the thumbprint of a certificate is computed once per
distinct certificate (:func:`tokenry.core.mtls.thumbprint_of_pem`, cached by its bytes), and a
:class:`Matches` map remembers, per expected thumbprint, the certificate bytes already proven
to have it, so the hot path is one ``bytes ==`` (a memcmp) instead of hashing the 664-byte PEM
again. Nothing is keyed by peer address: grpc has no connection id, and behind a sidecar
every peer is 127.0.0.1.
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

__all__ = [
    "CERTIFICATE_MISMATCH",
    "BoundHandlers",
    "Matches",
    "bound_thumbprint",
    "certificate_matches",
]

CERTIFICATE_MISMATCH: Final = auth_status(
    "invalid_token",
    "the token is bound to a client certificate this connection does not present",
    "certificate_mismatch",
)
_PEM_PROPERTY: Final = "x509_pem_cert"  # grpc's auth-context name of the verified peer cert
_MATCHES_SIZE: Final = 1024

#: Expected thumbprint → the PEM bytes of a certificate proven to have it (bounded).
Matches = dict[str, bytes]


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


def certificate_matches(context: Any, expected: str, matches: Matches | None = None) -> bool:
    """Whether the call's verified client certificate has the thumbprint ``expected``."""
    values = context.auth_context().get(_PEM_PROPERTY)
    if not values or not expected:
        return False
    pem = values[0]
    if matches is not None and matches.get(expected) == pem:
        return True  # these very bytes were proven to have this thumbprint
    return _first_sight(pem, expected, matches)


def _first_sight(pem: bytes, expected: str, matches: Matches | None) -> bool:
    if not hmac.compare_digest(thumbprint_of_pem(pem), expected):
        return False
    if matches is not None:
        if len(matches) >= _MATCHES_SIZE:
            matches.clear()
        matches[expected] = pem
    return True


def _current_call_matches(context: Any, matches: Matches) -> bool:
    """The aio hot path: :func:`bound_thumbprint` and :func:`certificate_matches` in one frame,
    for the current call's claims (set by the interceptor before the handler runs)."""
    claims = _claims.get()
    cnf = None if claims is None else claims.get("cnf")
    expected = cnf.get(CNF_THUMBPRINT) if isinstance(cnf, dict) else None
    if not isinstance(expected, str) or not expected:
        return False  # the wrapper runs only for tokens with a cnf: a bad one is refused
    values = context.auth_context().get(_PEM_PROPERTY)
    if not values:
        return False
    pem = values[0]
    return matches.get(expected) == pem or _first_sight(pem, expected, matches)


class BoundHandlers:
    """Handlers that check the current call's bound token against its certificate, built once
    per original handler (so the interceptor's per-behavior caches keep hitting): the expected
    thumbprint is read from the call's claims, set by the interceptor before the handler runs.
    """

    __slots__ = ("_matches", "_wrapped")

    def __init__(self) -> None:
        self._wrapped: dict[
            int, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}
        self._matches: Matches = {}

    def __call__(
        self, handler: grpc.RpcMethodHandler[Any, Any] | None
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler is None:
            return None
        cached = self._wrapped.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _checked(handler, self._matches)
        if len(self._wrapped) >= 4096:
            self._wrapped.clear()
        self._wrapped[id(handler)] = (handler, wrapped)
        return wrapped


def _checked(
    handler: grpc.RpcMethodHandler[Any, Any], matches: Matches
) -> grpc.RpcMethodHandler[Any, Any]:
    inner = behavior_of(handler)
    is_async = inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)
    ok = _current_call_matches
    if streams_responses(handler):
        if is_async:

            async def astream(request: Any, context: Any) -> AsyncIterator[Any]:
                if not ok(context, matches):
                    await context.abort_with_status(CERTIFICATE_MISMATCH)
                async for item in inner(request, context):
                    yield item

            return replace_behavior(handler, astream)

        def stream(request: Any, context: Any) -> Iterator[Any]:
            if not ok(context, matches):
                context.abort_with_status(CERTIFICATE_MISMATCH)
            yield from inner(request, context)

        return replace_behavior(handler, stream)
    if is_async:

        async def acall(request: Any, context: Any) -> Any:
            if not ok(context, matches):
                await context.abort_with_status(CERTIFICATE_MISMATCH)
            return await inner(request, context)

        return replace_behavior(handler, acall)

    def call(request: Any, context: Any) -> Any:
        if not ok(context, matches):
            context.abort_with_status(CERTIFICATE_MISMATCH)
        return inner(request, context)

    return replace_behavior(handler, call)
