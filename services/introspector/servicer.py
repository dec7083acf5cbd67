"""Introspector gRPC servicer: protobuf <-> :mod:`tokenry.flows.introspection` only."""

from __future__ import annotations

import json
from typing import Any

import grpc

from tokenry.core.clientauth import MAX_CREDENTIAL_LENGTH
from tokenry.core.introspection import Introspection
from tokenry.flows.introspection import IntrospectionFlow, IntrospectRequest
from tokenry.servicekit.errors import abort_for, maps_own_errors
from tokenry.servicekit.grpcmeta import caller_credentials, metadata_value
from tokenry.servicekit.server import Ready
from tokenry.v1 import introspector_pb2, introspector_pb2_grpc


def to_proto(answer: Introspection) -> introspector_pb2.IntrospectResponse:
    if not answer.active:
        return introspector_pb2.IntrospectResponse(active=False)
    return introspector_pb2.IntrospectResponse(
        active=True,
        scope=answer.scope,
        client_id=answer.client_id,
        token_type=answer.token_type,
        exp=answer.exp,
        iat=answer.iat,
        nbf=answer.nbf,
        sub=answer.sub,
        aud=list(answer.aud),
        iss=answer.iss,
        jti=answer.jti,
        act_json=json.dumps(dict(answer.act)) if answer.act is not None else "",
        cnf_json=json.dumps(dict(answer.cnf)) if answer.cnf is not None else "",
    )


MAX_RENDERED = 4096
_INACTIVE = introspector_pb2.IntrospectResponse(active=False)


class IntrospectorServicer(introspector_pb2_grpc.IntrospectorServicer):
    """Register with guard() like every servicer; Introspect maps its own errors (no wrapper
    coroutine on the introspection hot path)."""

    def __init__(
        self,
        handlers: Ready[IntrospectionFlow],
        unavailable: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._handlers = handlers
        self._unavailable = unavailable
        # A cached answer is one immutable Introspection object: render it once, not per call.
        # Keyed by the object itself (id plus an identity check), so an entry never outlives
        # the answer it was made from in meaning.
        self._rendered: dict[int, tuple[Introspection, introspector_pb2.IntrospectResponse]] = {}

    def _render(self, answer: Introspection) -> introspector_pb2.IntrospectResponse:
        if not answer.active:
            return _INACTIVE
        held = self._rendered.get(id(answer))
        if held is None or held[0] is not answer:
            if len(self._rendered) >= MAX_RENDERED:
                self._rendered.clear()
            held = (answer, to_proto(answer))
            self._rendered[id(answer)] = held
        return held[1]

    @maps_own_errors
    async def Introspect(
        self,
        request: introspector_pb2.IntrospectRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> introspector_pb2.IntrospectResponse:
        try:
            handlers = self._handlers.get()
            # Warm: a caller proven before and a cached token, answered without a coroutine
            # and without caller_credentials' lazy peer and certificate, which only a failed
            # or a certificate-based authentication reads (neither happens on this path).
            authorization = metadata_value(context, "authorization")
            # credentials_from would return BasicHeader(authorization) (RFC 6749 §2.3: one
            # method; the header within bounds): recalled as such, without building it.
            found = (
                handlers.answer_or_caller_basic(authorization, request.token)
                if authorization
                and len(authorization) <= MAX_CREDENTIAL_LENGTH
                and not request.client_assertion
                else None
            )
            if isinstance(found, Introspection):
                return self._render(found)
            if found is not None:  # a recalled caller, the token not cached: look it up
                answer = await handlers.introspect_as(found, request.token)
            else:
                creds = caller_credentials(
                    context,
                    assertion_type=request.client_assertion_type,
                    assertion=request.client_assertion,
                )
                answer = await handlers.introspect(
                    IntrospectRequest(creds, request.token, request.token_type_hint)
                )
        except Exception as exc:
            await abort_for(context, exc, self._unavailable)
        # A looked-up answer is a fresh object that no later call returns (a warm read builds
        # its own from the cached row): rendered, not memoized.
        return to_proto(answer) if answer.active else _INACTIVE
