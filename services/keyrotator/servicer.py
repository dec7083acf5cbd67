"""KeyRotator gRPC servicer: protobuf <-> handlers only."""

from __future__ import annotations

from typing import Any

import grpc

from tokenry.servicekit.server import Ready
from tokenry.services.keyrotator.handlers import KeyRotatorHandlers
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc


class KeyRotatorServicer(keyrotator_pb2_grpc.KeyRotatorServicer):
    def __init__(self, handlers: Ready[KeyRotatorHandlers]) -> None:
        self._handlers = handlers

    async def GetJwks(
        self,
        request: keyrotator_pb2.GetJwksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> keyrotator_pb2.GetJwksResponse:
        jwks, seq = await self._handlers.get().jwks()
        return keyrotator_pb2.GetJwksResponse(jwks_json=jwks, seq=seq)
