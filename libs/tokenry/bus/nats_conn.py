"""NATS connection and stream setup shared by publishers and subscribers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from tokenry.bus.codec import Subjects
from tokenry.core.clients import MAX_ACCESS_TOKEN_TTL

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    name: str = "TOKENRY_EVENTS"
    replicas: int = 1  # 3 in production (deploy/nats)
    # ≥ the maximum access-token lifetime + leeway (ARCHITECTURE §4): a verifier that was away
    # for less than that can always resume from the stream instead of a fresh snapshot.
    max_age: float = 2 * MAX_ACCESS_TOKEN_TTL
    duplicate_window: float = 120.0


Callback = Callable[[], Awaitable[None]]


async def connect(
    url: str,
    *,
    name: str,
    attempts: int = 0,
    reconnected: Callback | None = None,
    disconnected: Callback | None = None,
) -> NatsClient:
    """Connect, retrying with capped backoff (``attempts=0``: forever); then reconnect forever.

    ``reconnected``/``disconnected`` are awaited on those transitions (the verifier checks
    the stream after a reconnect: it may have been reset while we were away).
    """
    delay = 0.1
    attempt = 0

    async def on_error(exc: Exception) -> None:
        # nats-py's default logs a traceback for every failed reconnect attempt; one line is
        # enough (the client keeps reconnecting by itself).
        log.info("NATS %s: %s", name, type(exc).__name__)

    callbacks: dict[str, Callable[..., Awaitable[None]]] = {"error_cb": on_error}
    if reconnected is not None:
        callbacks["reconnected_cb"] = reconnected
    if disconnected is not None:
        callbacks["disconnected_cb"] = disconnected
    while True:
        attempt += 1
        try:
            return await nats.connect(
                url,
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                connect_timeout=2,
                ping_interval=5,
                max_outstanding_pings=2,
                **callbacks,
            )
        except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
            if attempts and attempt >= attempts:
                raise
            log.warning("NATS not reachable yet (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def stream_config(subjects: Subjects, settings: StreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.name,
        subjects=[subjects.events],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        max_age=settings.max_age,
        duplicate_window=settings.duplicate_window,
    )


async def ensure_stream(js: JetStreamContext, subjects: Subjects, settings: StreamSettings) -> None:
    """Create the stream, or update it when its config drifted (add with a different config
    fails with err_code 10058, so read first)."""
    wanted = stream_config(subjects, settings)
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        await js.add_stream(wanted)
        log.info("created stream %s", settings.name)
        return
    current = info.config
    if (
        current.subjects != wanted.subjects
        or current.max_age != wanted.max_age
        or current.duplicate_window != wanted.duplicate_window
        or current.num_replicas != wanted.num_replicas
    ):
        await js.update_stream(wanted)
        log.info("updated stream %s", settings.name)
