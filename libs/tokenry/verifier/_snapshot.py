"""Revocation snapshots: the :class:`SnapshotSource` port and its gRPC adapter
(``Revocation.ListRevocations`` in batches, and ``GetHead`` for the proof of currency)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from tokenry.bus import codec
from tokenry.bus.errors import MalformedSnapshot
from tokenry.core.errors import TokenryError
from tokenry.core.revocations import RevocationSet
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

__all__ = ["FeedError", "GrpcSnapshotSource", "Snapshot", "SnapshotError", "SnapshotSource"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    revocations: RevocationSet
    count: int


class SnapshotSource(Protocol):
    async def snapshot(self) -> Snapshot:
        """Every live revocation and the outbox seq it is current to.

        Raises:
            SnapshotError: the snapshot was incomplete or inconsistent.
        """
        ...

    async def head(self) -> int:
        """The last outbox seq committed, read after this call began.

        Raises:
            SnapshotError: the source could not answer.
        """
        ...


class FeedError(TokenryError):
    """The event feed could not do one step; it retries (never raised to verifier users)."""


class SnapshotError(FeedError):
    """A snapshot could not be taken completely; nothing of it was applied."""


class GrpcSnapshotSource:
    """Snapshots from the revocation service's ``ListRevocations``."""

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout: float = 120.0, batch_size: int = 0
    ) -> None:
        self._stub = revocation_pb2_grpc.RevocationStub(channel)
        self._timeout = timeout
        self._batch = batch_size

    async def snapshot(self) -> Snapshot:
        revs = RevocationSet()
        seq: int | None = None
        count = 0
        complete = False
        call = self._stub.ListRevocations(
            revocation_pb2.ListRevocationsRequest(batch_size=self._batch), timeout=self._timeout
        )
        try:
            async for msg in call:
                if seq is None:
                    seq = msg.seq
                elif msg.seq != seq:
                    raise SnapshotError("snapshot messages disagree on their seq")
                try:
                    batch = codec.snapshot_batch(msg)
                except MalformedSnapshot as exc:
                    raise SnapshotError(str(exc)) from None
                batch.load_into(revs)
                count += len(batch)
                if msg.last:
                    complete = msg.total == count
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            raise SnapshotError(f"ListRevocations failed ({code})") from None
        if seq is None or not complete:
            raise SnapshotError("snapshot stream ended before its last message")
        return Snapshot(seq, revs, count)

    async def head(self) -> int:
        try:
            reply = await self._stub.GetHead(revocation_pb2.GetHeadRequest(), timeout=5.0)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            raise SnapshotError(f"GetHead failed ({code})") from None
        return int(reply.seq)
