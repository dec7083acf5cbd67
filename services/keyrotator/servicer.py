"""KeyRotator gRPC servicer: protobuf <-> handlers only."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from tokenry.servicekit.grpcmeta import caller_credentials
from tokenry.servicekit.idempotency import idempotency_of
from tokenry.servicekit.server import Ready
from tokenry.servicekit.verifier_access import VerifierAccess
from tokenry.services.keyrotator.handlers import (
    KeyRotatorHandlers,
    RevokeKey,
    RotateKeys,
    WriteResult,
)
from tokenry.store.idempotency import Replay
from tokenry.store.keys import KeyRow
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc


def _ts(unix: float | None) -> Timestamp | None:
    if unix is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(unix * 1e9))
    return ts


def _key_info(row: KeyRow, next_at: float | None) -> keyrotator_pb2.SigningKeyInfo:
    return keyrotator_pb2.SigningKeyInfo(
        kid=row.kid,
        alg=row.alg,
        use=row.use,
        state=row.state.value,
        public_jwk_json=json.dumps(row.public_jwk, separators=(",", ":")),
        kek_id=row.kek_id,
        has_private_key=row.has_private_key,
        created_at=_ts(row.created_at),
        activated_at=_ts(row.activated_at),
        retiring_at=_ts(row.retiring_at),
        retired_at=_ts(row.retired_at),
        revoked_at=_ts(row.revoked_at),
        revoke_reason=row.revoke_reason or "",
        revoked_by=row.revoked_by or "",
        next_transition_at=_ts(next_at),
    )


class KeyRotatorServicer(keyrotator_pb2_grpc.KeyRotatorServicer):
    def __init__(
        self, handlers: Ready[KeyRotatorHandlers], access: VerifierAccess | None = None
    ) -> None:
        self._handlers = handlers
        self._access = access  # None: GetJwks answers anyone (tests of other concerns)

    async def GetJwks(
        self,
        request: keyrotator_pb2.GetJwksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> keyrotator_pb2.GetJwksResponse:
        handlers = self._handlers.get()
        if self._access is not None:
            await self._access.check(context, handlers.authenticate)
        jwks, seq = await handlers.jwks()
        return keyrotator_pb2.GetJwksResponse(jwks_json=jwks, seq=seq)

    async def ListKeys(
        self,
        request: keyrotator_pb2.ListKeysRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> keyrotator_pb2.ListKeysResponse:
        handlers = self._handlers.get()
        rows, seq = await handlers.list_keys(include_ended=request.include_ended)
        return keyrotator_pb2.ListKeysResponse(
            keys=[_key_info(r, handlers.next_transition_at(r)) for r in rows], seq=seq
        )

    async def Rotate(
        self,
        request: keyrotator_pb2.RotateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> keyrotator_pb2.RotateResponse:
        handlers = self._handlers.get()
        creds = caller_credentials(context)
        result = await handlers.rotate(
            RotateKeys(
                creds,
                use=request.use,
                alg=request.alg,
                force=request.force,
                idem=idempotency_of(request, "Rotate"),
                respond=lambda r: _rotated(r).SerializeToString(),
            )
        )
        if isinstance(result, Replay):
            return keyrotator_pb2.RotateResponse.FromString(result.response)
        return _rotated(result)

    async def RevokeKey(
        self,
        request: keyrotator_pb2.RevokeKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> keyrotator_pb2.RevokeKeyResponse:
        handlers = self._handlers.get()
        creds = caller_credentials(context)
        result = await handlers.revoke(
            RevokeKey(
                creds,
                kid=request.kid,
                reason=request.reason,
                idem=idempotency_of(request, "RevokeKey"),
                respond=lambda r: _key_revoked(r).SerializeToString(),
            )
        )
        if isinstance(result, Replay):
            return keyrotator_pb2.RevokeKeyResponse.FromString(result.response)
        return _key_revoked(result)


def _rotated(result: WriteResult) -> keyrotator_pb2.RotateResponse:
    return keyrotator_pb2.RotateResponse(
        active_kid=result.kid("active"),
        retiring_kid=result.kid("retiring"),
        pending_kid=result.kid("pending"),
        seq=result.seq,
    )


def _key_revoked(result: WriteResult) -> keyrotator_pb2.RevokeKeyResponse:
    return keyrotator_pb2.RevokeKeyResponse(
        revoked_kid=result.kid("revoked"),
        active_kid=result.kid("active"),
        pending_kid=result.kid("pending"),
        seq=result.seq,
    )
