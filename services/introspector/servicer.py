"""Introspector gRPC servicer: protobuf <-> handlers only."""

from __future__ import annotations

import json
from typing import Any

import grpc

from tokenry.core.introspection import Introspection
from tokenry.servicekit.grpcmeta import caller_credentials
from tokenry.servicekit.server import Ready
from tokenry.services.introspector.handlers import IntrospectorHandlers, IntrospectRequest
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


class IntrospectorServicer(introspector_pb2_grpc.IntrospectorServicer):
    def __init__(self, handlers: Ready[IntrospectorHandlers]) -> None:
        self._handlers = handlers

    async def Introspect(
        self,
        request: introspector_pb2.IntrospectRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> introspector_pb2.IntrospectResponse:
        handlers = self._handlers.get()
        creds = caller_credentials(
            context,
            assertion_type=request.client_assertion_type,
            assertion=request.client_assertion,
        )
        answer = await handlers.introspect(
            IntrospectRequest(creds, request.token, request.token_type_hint)
        )
        return to_proto(answer)
