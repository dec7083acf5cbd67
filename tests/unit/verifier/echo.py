"""A raw-bytes echo service for the interceptor tests: each method answers with the ``sub`` of
the claims its handler sees (``current_claims_or_none``), in all four call kinds, async and sync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from tokenry.verifier import MethodPolicy
from tokenry.verifier._verifier import StalePolicy
from tokenry.verifier.interceptor import current_claims_or_none

POLICIES = {
    "/t.Admin/*": MethodPolicy(scopes=frozenset({"demo.admin"})),
    "/t.Echo/Intro": MethodPolicy(on_stale=StalePolicy.INTROSPECT),
    "/t.Echo/Open": MethodPolicy(public=True),
}


def _who() -> bytes:
    claims = current_claims_or_none()
    return b"anonymous" if claims is None else str(claims["sub"]).encode()


async def _unary(_request: bytes, _context: Any) -> bytes:
    return _who()


async def _unary_stream(_request: bytes, _context: Any) -> AsyncIterator[bytes]:
    yield _who()
    yield _who()


async def _stream_unary(requests: AsyncIterator[bytes], _context: Any) -> bytes:
    async for _ in requests:
        pass
    return _who()


async def _stream_stream(requests: AsyncIterator[bytes], _context: Any) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield _who()


def _sync_unary(_request: bytes, _context: Any) -> bytes:
    return _who()


def _sync_unary_stream(_request: bytes, _context: Any) -> Iterator[bytes]:
    yield _who()
    yield _who()


def _sync_stream_unary(requests: Iterator[bytes], _context: Any) -> bytes:
    for _ in requests:
        pass
    return _who()


def _sync_stream_stream(requests: Iterator[bytes], _context: Any) -> Iterator[bytes]:
    for _ in requests:
        yield _who()


def aio_handlers() -> list[grpc.GenericRpcHandler]:
    echo = {
        "Who": grpc.unary_unary_rpc_method_handler(_unary),
        "Intro": grpc.unary_unary_rpc_method_handler(_unary),
        "Open": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_unary_stream),
        "Collect": grpc.stream_unary_rpc_method_handler(_stream_unary),
        "Chat": grpc.stream_stream_rpc_method_handler(_stream_stream),
        "SyncWho": grpc.unary_unary_rpc_method_handler(_sync_unary),
        "SyncStream": grpc.unary_stream_rpc_method_handler(_sync_unary_stream),
    }
    admin = {"Do": grpc.unary_unary_rpc_method_handler(_unary)}
    return [
        grpc.method_handlers_generic_handler("t.Echo", echo),
        grpc.method_handlers_generic_handler("t.Admin", admin),
    ]


def sync_handlers() -> list[grpc.GenericRpcHandler]:
    echo = {
        "Who": grpc.unary_unary_rpc_method_handler(_sync_unary),
        "Intro": grpc.unary_unary_rpc_method_handler(_sync_unary),
        "Open": grpc.unary_unary_rpc_method_handler(_sync_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_sync_unary_stream),
        "Collect": grpc.stream_unary_rpc_method_handler(_sync_stream_unary),
        "Chat": grpc.stream_stream_rpc_method_handler(_sync_stream_stream),
    }
    admin = {"Do": grpc.unary_unary_rpc_method_handler(_sync_unary)}
    return [
        grpc.method_handlers_generic_handler("t.Echo", echo),
        grpc.method_handlers_generic_handler("t.Admin", admin),
    ]


def error_reason(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, str]:
    """(code, OAuth error, verifier reason) of a failed call, from its rich status details."""
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            from tokenry.v1 import errors_pb2

            rpc = status_pb2.Status.FromString(value)
            oauth, info = errors_pb2.OAuthError(), error_details_pb2.ErrorInfo()
            rpc.details[0].Unpack(oauth)
            rpc.details[1].Unpack(info)
            return err.code(), oauth.error, info.metadata["reason"]  # type: ignore[attr-defined]
    return err.code(), "", ""  # type: ignore[attr-defined]
