"""Revocation gRPC servicer: protobuf <-> handlers only."""

from __future__ import annotations

from typing import Any

import grpc

from tokenry.core.clientauth import credentials_from
from tokenry.servicekit.grpcmeta import metadata_value
from tokenry.servicekit.server import Ready
from tokenry.services.revocation.handlers import RevocationHandlers, RevokeJti
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc


class RevocationServicer(revocation_pb2_grpc.RevocationServicer):
    def __init__(self, handlers: Ready[RevocationHandlers]) -> None:
        self._handlers = handlers

    async def Revoke(
        self,
        request: revocation_pb2.RevokeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> revocation_pb2.RevokeResponse:
        handlers = self._handlers.get()
        creds = credentials_from(metadata_value(context, "authorization"), "", "")
        seq = await handlers.revoke_jti(
            RevokeJti(creds, request.jti, request.reason, request.expires_at)
        )
        return revocation_pb2.RevokeResponse(seq=seq)
