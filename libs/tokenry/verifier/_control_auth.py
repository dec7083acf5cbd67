"""The verifier's credentials towards the control plane (issue 13 item 3).

``ListRevocations``, ``GetHead`` and ``GetJwks`` are readable by authenticated verifiers only:
either the verifier's mTLS client certificate (``channel_credentials`` of ``start_verifier``,
nothing to do here), or client authentication by a client holding ``tokenry:verifier``, which
these interceptors attach to every control-plane call through the ``ControlPlaneAuth`` port
(structurally :class:`tokenry.client.ClientAuth`: ``tokenry.client.ClientSecretBasic``, or a
private_key_jwt one: request fields it sets are sent as ``client-assertion-type`` /
``client-assertion`` metadata).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc

from tokenry.v1 import issuer_pb2

__all__ = ["ControlPlaneAuth", "control_plane_interceptors"]


class ControlPlaneAuth(Protocol):
    """Structurally :class:`tokenry.client.ClientAuth` (the verifier does not import the client
    package): sets request fields a method needs and returns the metadata to send."""

    def apply(self, request: issuer_pb2.TokenRequest) -> Sequence[tuple[str, str]]: ...


def _metadata(auth: ControlPlaneAuth) -> list[tuple[str, str]]:
    scratch = issuer_pb2.TokenRequest()
    pairs = list(auth.apply(scratch))  # called per call: an assertion is fresh each time
    if scratch.client_assertion:
        pairs.append(("client-assertion-type", scratch.client_assertion_type))
        pairs.append(("client-assertion", scratch.client_assertion))
    return pairs


def _details(
    details: grpc.aio.ClientCallDetails, auth: ControlPlaneAuth
) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in _metadata(auth):
        metadata.add(key, value)
    return details._replace(metadata=metadata)  # type: ignore[attr-defined,no-any-return]


Continuation = Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]]


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, auth: ControlPlaneAuth) -> None:
        self._auth = auth

    async def intercept_unary_unary(
        self,
        continuation: Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_details(client_call_details, self._auth), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, auth: ControlPlaneAuth) -> None:
        self._auth = auth

    async def intercept_unary_stream(
        self,
        continuation: Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_details(client_call_details, self._auth), request)


def control_plane_interceptors(auth: ControlPlaneAuth | None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that authenticate every call of a control-plane channel as ``auth``."""
    return [] if auth is None else [_UnaryUnary(auth), _UnaryStream(auth)]
