"""Feeds a verifier from NATS: the event stream (ordered consumer) and the heartbeats.

Bootstrap (walking skeleton): replay the stream from its first message. The stream keeps
events at least as long as the maximum token lifetime plus leeway (ARCHITECTURE §4), so events
that have aged out of it can no longer matter: the first event the stream still holds sets the
base of the contiguous sequence, and an empty stream means everything up to the head seq of the
first heartbeat is irrelevant. Snapshots (ListRevocations) replace this with the revocation
issue. Each verifier instance has its own ordered consumer: never a shared durable or a queue
group, since every instance must see every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.verifier.jwks import JwksCache
from tokenry.verifier.state import RevocationState

log = logging.getLogger(__name__)

IDLE_HEARTBEAT = 0.5  # the 5 s default delays redelivery after a server restart by ~18 s


class EventSubscriber:
    def __init__(
        self,
        *,
        nc: NatsClient,
        subjects: Subjects,
        stream: str,
        state: RevocationState,
        jwks: JwksCache,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subjects = subjects
        self._stream = stream
        self._state = state
        self._jwks = jwks
        self._based = False
        self._base_from_heartbeat = False
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Subscribe; waits (retrying) until the stream exists."""
        self._subs.append(await self._nc.subscribe(self._subjects.heartbeat, cb=self._on_heartbeat))
        delay = 0.1
        while True:
            try:
                info = await self._js.stream_info(self._stream)
                if not info.state.messages:
                    self._base_from_heartbeat = True
                sub = await self._js.subscribe(
                    self._subjects.events,
                    stream=self._stream,
                    cb=self._on_event,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.ALL,
                    idle_heartbeat=IDLE_HEARTBEAT,
                )
                self._subs.append(sub)
                return
            except (NotFoundError, TimeoutError) as exc:
                if stop is not None and stop.is_set():
                    return
                log.info("event stream not ready (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            head, _sent_at = codec.decode_heartbeat(msg.data)
        except codec.UndecodableEvent:
            return
        if self._base_from_heartbeat and not self._based:
            self._state.reset(head)
            self._based = True
        self._state.on_heartbeat(head)

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = codec.decode(msg.data)
        except codec.UndecodableEvent:
            log.warning("ignored an undecodable message on %s", msg.subject)
            return
        if not self._based:
            self._state.reset(event.seq - 1)
            self._based = True
        if event.key is not None:
            self._on_key(event.key)
        self._state.apply(event.seq, event.revocation)

    def _on_key(self, hint: codec.KeyHint) -> None:
        if hint.state == "revoked":
            self._jwks.revoke(hint.kid)  # rejected at once; no fetch needed
            return
        # Refetch off the event path so revocations behind this event are not held up.
        task = asyncio.create_task(self._jwks.refresh(force=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
