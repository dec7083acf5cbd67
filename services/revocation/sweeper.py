"""The sweeper: deletes what can no longer matter (docs/design.md §3, docs/spec.md §4.7).

- revocations past their ``expires_at`` (the last exp they can matter for);
- outbox rows published longer ago than the stream keeps events: nobody can ask for them by
  seq any more (a verifier that far behind takes a snapshot instead);
- idempotency records of admin writes older than 24 h (store/idempotency.py), every
  service's: they share one table.

Deletes run in bounded batches so no transaction grows large; every replica may sweep (the
deletes are idempotent), so no lease is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tokenry.core.clock import Clock

log = logging.getLogger(__name__)

BATCH = 10_000


class ExpiredRevocations(Protocol):
    async def sweep(self, now: int, limit: int = BATCH) -> int: ...


class PublishedOutbox(Protocol):
    async def sweep_published(self, max_age: float, limit: int = BATCH) -> int: ...


class ExpiredRecords(Protocol):
    async def sweep(self, limit: int = BATCH) -> int: ...


@dataclass(frozen=True, slots=True)
class SweepResult:
    revocations: int
    outbox: int
    idempotency: int = 0


class Sweeper:
    def __init__(
        self,
        *,
        revocations: ExpiredRevocations,
        outbox: PublishedOutbox,
        clock: Clock,
        outbox_max_age: float,
        interval: float = 60.0,
        idempotency: ExpiredRecords | None = None,
    ) -> None:
        self._revocations = revocations
        self._idempotency = idempotency
        self._outbox = outbox
        self._clock = clock
        self._max_age = outbox_max_age
        self._interval = interval

    async def sweep_once(self) -> SweepResult:
        revs = await _drain(lambda: self._revocations.sweep(int(self._clock.now()), BATCH))
        rows = await _drain(lambda: self._outbox.sweep_published(self._max_age, BATCH))
        records = 0
        if (idempotency := self._idempotency) is not None:
            records = await _drain(lambda: idempotency.sweep(BATCH))
        if revs or rows or records:
            log.info(
                "swept %d expired revocations, %d published outbox rows and %d idempotency records",
                revs,
                rows,
                records,
            )
        return SweepResult(revs, rows, records)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception as exc:  # the database may be down: try again next round
                log.warning("sweep failed (%s); retrying later", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)


async def _drain(step: Callable[[], Awaitable[int]]) -> int:
    total = 0
    while True:
        n = await step()
        total += n
        if n < BATCH:
            return total
