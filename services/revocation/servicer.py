"""Revocation gRPC servicer: protobuf <-> :mod:`tokenry.flows.revocation` only."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tokenry.bus import codec
from tokenry.core.errors import InvalidRequest
from tokenry.flows.revocation import Replayed, RevocationFlow, RevokeCommand, RevokeOutcome, Target
from tokenry.servicekit.grpcmeta import caller_credentials
from tokenry.servicekit.idempotency import idempotency_of
from tokenry.servicekit.server import Ready
from tokenry.servicekit.verifier_access import VerifierAccess
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

_TARGETS = {
    "token": Target.TOKEN,
    "jti": Target.JTI,
    "grant_id": Target.GRANT,
    "subject": Target.SUBJECT,
    "client_id": Target.CLIENT,
}


_NOT_BODY = ("client_assertion_type", "client_assertion")


def _response(outcome: RevokeOutcome) -> revocation_pb2.RevokeResponse:
    rev = outcome.revocation
    if rev is None:
        return revocation_pb2.RevokeResponse()
    return revocation_pb2.RevokeResponse(
        seq=outcome.seq,
        kind=codec.kind_to_pb(rev.kind),
        not_before=rev.not_before,
        expires_at=rev.expires_at,
    )


def _serialized(outcome: RevokeOutcome) -> bytes:
    return _response(outcome).SerializeToString()


class RevocationServicer(revocation_pb2_grpc.RevocationServicer):
    def __init__(
        self, handlers: Ready[RevocationFlow], access: VerifierAccess | None = None
    ) -> None:
        self._handlers = handlers
        self._access = access  # None: the control plane answers anyone (tests of other concerns)

    async def Revoke(
        self,
        request: revocation_pb2.RevokeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> revocation_pb2.RevokeResponse:
        handlers = self._handlers.get()
        creds = caller_credentials(
            context,
            assertion_type=request.client_assertion_type,
            assertion=request.client_assertion,
        )
        which = request.WhichOneof("target")
        if which is None:
            raise InvalidRequest("give what to revoke: token, jti, grant_id, subject or client_id")
        outcome = await handlers.revoke(
            RevokeCommand(
                credentials=creds,
                target=_TARGETS[which],
                value=getattr(request, which),
                reason=request.reason,
                expires_at=request.expires_at,
                token_type_hint=request.token_type_hint,
                # A retry may carry a freshly signed assertion: not part of the request body.
                idem=idempotency_of(request, "Revoke", ignore=_NOT_BODY),
                respond=_serialized,
            )
        )
        if isinstance(outcome, Replayed):
            return revocation_pb2.RevokeResponse.FromString(outcome.response)
        return _response(outcome)

    async def ListRevocations(
        self,
        request: revocation_pb2.ListRevocationsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[revocation_pb2.RevocationSnapshot]:
        handlers = self._handlers.get()
        if self._access is not None:
            await self._access.check(context, handlers.authenticate)
        parts = handlers.snapshot(request.batch_size)
        async with contextlib.aclosing(parts):
            async for part in parts:
                yield codec.snapshot_message(part.seq, part.batch, last=part.last, total=part.total)

    async def GetHead(
        self,
        request: revocation_pb2.GetHeadRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> revocation_pb2.GetHeadResponse:
        handlers = self._handlers.get()
        if self._access is not None:
            await self._access.check(context, handlers.authenticate)
        return revocation_pb2.GetHeadResponse(seq=await handlers.head())
