"""Opportunistic batching of database calls (group commit, and its read-side twin).

The first call goes out at once; calls that arrive while a batch is in flight wait for it and
then go out together as the next batch. There is no timer: an idle service pays nothing, a busy
one pays one round trip (and one pool checkout) per batch instead of per call, and no call waits
longer than the batch in flight plus its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

DEFAULT_MAX_BATCH = 256


class Coalescer(Generic[In, Out]):
    """``await coalescer(item)`` → ``run(batch)[i]`` for this item's place in its batch.

    ``run`` gets the batch in arrival order and returns one result per item, in the same order.
    If it raises, every call in that batch raises the same exception; later batches still run.
    """

    def __init__(
        self,
        run: Callable[[list[In]], Awaitable[Sequence[Out]]],
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, item: In) -> Out:
        return await self.submit(item)

    def submit(self, item: In) -> asyncio.Future[Out]:
        """``__call__`` without its coroutine: the future of this item's result (a hot path
        awaits it directly, one coroutine frame fewer to suspend and resume)."""
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._run([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError("a batch returned the wrong number of results")
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # its caller may have been cancelled
                        future.set_result(result)

    async def close(self) -> None:
        """Wait for the batch in flight (if any) to finish."""
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
