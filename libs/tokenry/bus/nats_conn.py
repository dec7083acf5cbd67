"""NATS connection and stream setup shared by publishers and subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from tokenry.bus.codec import Subjects
from tokenry.core.backoff import Backoff, BackoffPolicy
from tokenry.core.clients import MAX_ACCESS_TOKEN_TTL

log = logging.getLogger(__name__)

#: Retries of an unreachable NATS at start-up: 0.1 s doubling to 2 s, jittered.
CONNECT_BACKOFF = BackoffPolicy(initial=0.1, maximum=2.0)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    name: str = "TOKENRY_EVENTS"
    replicas: int = 1  # 3 in production (deploy/nats)
    # ≥ the maximum access-token lifetime + leeway (docs/design.md §4): a verifier that was away
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
    tls: ssl.SSLContext | None = None,
) -> NatsClient:
    """Connect, retrying with capped backoff (``attempts=0``: forever); then reconnect forever.

    ``reconnected``/``disconnected`` are awaited on those transitions (the verifier checks
    the stream after a reconnect: it may have been reset while we were away). ``tls`` is the
    context of a TLS connection (CA bundle, client certificate for mTLS): nats-py upgrades to
    TLS when the server asks for it; without a context it would use the system's roots. A
    refused handshake is retried like an unreachable server (its error is logged each time).
    """
    backoff = Backoff(CONNECT_BACKOFF)
    attempt = 0

    async def on_error(exc: Exception) -> None:
        # nats-py's default logs a traceback for every failed reconnect attempt; one line is
        # enough (the client keeps reconnecting by itself).
        log.info("NATS %s: %s", name, type(exc).__name__)

    callbacks: dict[str, Any] = {"error_cb": on_error}
    if tls is not None:
        callbacks["tls"] = tls
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
            delay = backoff.next_delay()
            log.warning("NATS not reachable yet (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)


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


class PipelinedPublisher:
    """JetStream publishes that do not wait for each other: :meth:`publish` sends and returns
    a future of the PubAck, resolved by one reply subscription.

    nats-py's ``JetStreamContext.publish_async`` is not used: its reply handler calls
    ``APIError.from_error``, which raises instead of returning, so a publish JetStream refuses
    (a failed ``Nats-Expected-Last-Msg-Id``, a message too large) never resolves its future
    and looks like a timeout. Here the future fails with that same nats-py error
    (``BadRequestError`` with its ``err_code``), or ``NoStreamResponseError`` when no stream
    holds the subject. The caller bounds the wait; nothing is retried here.
    """

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._pending: dict[str, asyncio.Future[PubAck]] = {}
        self._next = 0

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, Any] | None = None
    ) -> asyncio.Future[PubAck]:
        if self._sub is None:
            # Replies come to <inbox>.<n>; nats-py resubscribes after a reconnect.
            self._prefix = self._nc.new_inbox() + "."
            self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)
        token = str(self._next)
        self._next += 1
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        future.add_done_callback(lambda _: self._pending.pop(token, None))
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except BaseException:
            future.cancel()
            raise
        return future

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject[len(self._prefix) :])
        if future is None or future.done():
            return  # answered late, after the caller gave up
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        try:
            resp = json.loads(msg.data)
            if "error" in resp:
                APIError.from_error(resp["error"])  # always raises the matching subclass
            future.set_result(PubAck.from_response(resp))
        except APIError as exc:
            future.set_exception(exc)
        except ValueError as exc:  # not JSON, or not a PubAck
            future.set_exception(APIError(description=f"bad PubAck: {exc}"))

    async def close(self) -> None:
        for future in list(self._pending.values()):
            future.cancel()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
