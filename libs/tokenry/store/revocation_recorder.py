"""PostgreSQL side of :class:`tokenry.flows.revocation.RevocationRecorder`: group commit of
revocations with their outbox events and idempotency records.

Revocations that arrive while a batch is committing go out together as the next batch, one
statement and one WAL flush for all of them, each keeping its own dedupe, seq, outbox row and
idempotency record (:meth:`RevocationStore.revoke_many`). The outbox counter lock serialises
revocation commits, so one commit per revocation capped throughput at one fsync each. The event
encoder is passed in (``tokenry.bus.codec.revocation_event`` bound to the subjects), so the flow
above loads no protobuf.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import replace

from tokenry.core.clock import Clock
from tokenry.core.events import OutboxEvent
from tokenry.core.revocations import Revocation
from tokenry.flows.revocation import Recorded, RevocationWrite
from tokenry.store.batching import Coalescer
from tokenry.store.revocations import (
    ActorCheck,
    RevocationStore,
    RevokeItem,
    RevokeResult,
    SnapshotPart,
)

__all__ = ["EncodeEvent", "PgRevocationRecorder"]

#: (revocation, now, traceparent, actor) -> its outbox event
EncodeEvent = Callable[[Revocation, float, str | None, str], OutboxEvent]


def _recorded(r: RevokeResult) -> Recorded:
    return Recorded(r.seq, r.recorded, r.replay, r.mismatch, r.stale)


class PgRevocationRecorder:
    def __init__(self, store: RevocationStore, encode: EncodeEvent, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._encode = encode
        self._writes: Coalescer[RevokeItem, RevokeResult] = Coalescer(self._write_batch)
        # A read that starts after every request it answers (the batch in flight when one
        # arrives cannot answer it): one query serves a fleet of verifiers asking at once.
        self._heads: Coalescer[None, int] = Coalescer(self._read_heads)

    async def record(self, write: RevocationWrite) -> Recorded:
        event = self._encode(write.rev, write.now, write.traceparent, write.actor)
        check = ActorCheck(write.actor_secret_hash, write.actor_jwks_json, admin=write.actor_admin)
        item = RevokeItem(write.rev, write.actor, event, write.expiry_given, actor_check=check)
        if write.idem is not None:
            respond = write.respond
            if respond is None:
                raise ValueError("an idempotent revocation needs respond()")
            item = replace(item, idem=write.idem, respond=lambda r: respond(_recorded(r)))
        return _recorded(await self._writes(item))

    def snapshot(self, now: int, batch_size: int) -> AsyncGenerator[SnapshotPart, None]:
        return self._store.snapshot(now, batch_size)

    async def head(self) -> int:
        return await self._heads(None)

    async def _write_batch(self, items: list[RevokeItem]) -> list[RevokeResult]:
        return await self._store.revoke_many(items, now=int(self._clock.now()))

    async def _read_heads(self, batch: list[None]) -> list[int]:
        seq = await self._store.head_seq()
        return [seq] * len(batch)
