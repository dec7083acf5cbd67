"""OAuth errors as rich gRPC statuses: the code plus a ``tokenry.v1.OAuthError`` detail.

A gRPC client reads the same RFC 6749 §5.2 error code an HTTP client gets in its JSON body.
"""

from __future__ import annotations

from typing import Final

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from tokenry.v1 import errors_pb2

DETAILS_KEY = "grpc-status-details-bin"

# RFC 6749 §5.2 / RFC 6750 §3.1 code -> gRPC status code.
GRPC_CODES: Final = {
    "invalid_request": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_client": grpc.StatusCode.UNAUTHENTICATED,
    "invalid_token": grpc.StatusCode.UNAUTHENTICATED,
    "invalid_grant": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthorized_client": grpc.StatusCode.PERMISSION_DENIED,
    "unsupported_grant_type": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_scope": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_target": grpc.StatusCode.INVALID_ARGUMENT,
    "insufficient_scope": grpc.StatusCode.PERMISSION_DENIED,
    "access_denied": grpc.StatusCode.PERMISSION_DENIED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "temporarily_unavailable": grpc.StatusCode.UNAVAILABLE,
    "server_error": grpc.StatusCode.INTERNAL,
}


def oauth_status(error: str, description: str) -> grpc.Status:
    code = GRPC_CODES.get(error, grpc.StatusCode.INTERNAL)
    detail = any_pb2.Any()
    detail.Pack(errors_pb2.OAuthError(error=error, error_description=description))
    status = status_pb2.Status(
        code=code.value[0], message=f"{error}: {description}", details=[detail]
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def oauth_error_of(exc: grpc.RpcError) -> errors_pb2.OAuthError | None:
    """The OAuthError detail of a failed call (sync or aio), if the server sent one."""
    trailing = getattr(exc, "trailing_metadata", None)
    if trailing is None:
        return None
    for key, value in trailing() or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(errors_pb2.OAuthError.DESCRIPTOR):
                err = errors_pb2.OAuthError()
                detail.Unpack(err)
                return err
    return None
