"""store.batching.Coalescer: opportunistic batching, pure asyncio (no database)."""

from __future__ import annotations

import asyncio

import pytest

from tokenry.store.batching import Coalescer


class Backend:
    """Records each batch; holds a batch open until released, to control what overlaps."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = False

    async def run(self, items: list[int]) -> list[str]:
        self.batches.append(items)
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database went away")
        return [f"r{i}" for i in items]


async def test_a_lone_call_goes_out_at_once_and_alone() -> None:
    backend = Backend()
    call = Coalescer(backend.run)
    assert await call(7) == "r7"
    assert backend.batches == [[7]]


async def test_calls_arriving_during_a_flight_go_together_in_order() -> None:
    backend = Backend()
    call = Coalescer(backend.run)
    backend.gate.clear()
    first = asyncio.create_task(call(0))
    await asyncio.sleep(0)  # the first batch [0] is now in flight
    rest = [asyncio.create_task(call(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    backend.gate.set()
    assert await first == "r0"
    assert [await t for t in rest] == [f"r{i}" for i in range(1, 6)]  # each gets its own answer
    assert backend.batches == [[0], [1, 2, 3, 4, 5]]


async def test_batches_are_capped() -> None:
    backend = Backend()
    call = Coalescer(backend.run, max_batch=2)
    backend.gate.clear()
    tasks = [asyncio.create_task(call(i)) for i in range(5)]
    await asyncio.sleep(0)
    backend.gate.set()
    assert [await t for t in tasks] == [f"r{i}" for i in range(5)]
    assert all(len(b) <= 2 for b in backend.batches)
    assert [i for b in backend.batches for i in b] == list(range(5))


async def test_a_failed_batch_fails_its_callers_only() -> None:
    backend = Backend()
    call = Coalescer(backend.run)
    backend.fail_next = True
    with pytest.raises(ConnectionError):
        await call(1)
    assert await call(2) == "r2"  # the next batch runs normally


async def test_a_wrong_number_of_results_is_an_error_not_a_wrong_answer() -> None:
    async def short(items: list[int]) -> list[str]:
        return ["only one"]

    call = Coalescer(short)
    tasks = [asyncio.create_task(call(i)) for i in range(3)]
    for task in tasks:
        with pytest.raises(RuntimeError, match="wrong number"):
            await task


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    backend = Backend()
    call = Coalescer(backend.run)
    backend.gate.clear()
    doomed = asyncio.create_task(call(1))
    kept = asyncio.create_task(call(2))
    await asyncio.sleep(0)
    doomed.cancel()
    backend.gate.set()
    assert await kept == "r2"
    with pytest.raises(asyncio.CancelledError):
        await doomed


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Backend().run, max_batch=0)
