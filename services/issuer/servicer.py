"""Issuer gRPC servicer: protobuf <-> handlers only."""

from __future__ import annotations

from typing import Any

import grpc

from tokenry.core.clientauth import credentials_from
from tokenry.servicekit.grpcmeta import metadata_value
from tokenry.servicekit.server import Ready
from tokenry.services.issuer.handlers import IssuerHandlers, TokenRequest
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc


class IssuerServicer(issuer_pb2_grpc.IssuerServicer):
    def __init__(self, handlers: Ready[IssuerHandlers]) -> None:
        self._handlers = handlers

    async def Token(
        self,
        request: issuer_pb2.TokenRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> issuer_pb2.TokenResponse:
        handlers = self._handlers.get()
        creds = credentials_from(
            metadata_value(context, "authorization"), request.client_id, request.client_secret
        )
        result = await handlers.token(
            TokenRequest(request.grant_type, request.scope, tuple(request.audience), creds)
        )
        return issuer_pb2.TokenResponse(
            access_token=result.access_token,
            token_type=result.token_type,
            expires_in=result.expires_in,
            scope=result.scope,
            issued_token_type=result.issued_token_type,
        )
