"""Waiting and reading the stream, for the pipeline and relay tests (no tests here). Imports
only the bus: the relay's tests use it without pipeline_support, which pulls in every service
and the verifier."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import nats

from tokenry.bus import codec
from tokenry.servicekit.config import Settings


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> float:
    """Poll a condition that has no event of its own; returns the seconds it took."""
    started = time.perf_counter()
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.02)


async def stream_outbox_seqs(nats_url: str, settings: Settings) -> list[int]:
    """Every event in the stream, in stream order, as outbox seqs (what a verifier reads)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.stream.name)
        seqs = []
        for stream_seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(settings.stream.name, stream_seq)
            assert msg.data is not None
            seqs.append(codec.decode(msg.data).seq)
        return seqs
    finally:
        await nc.close()
