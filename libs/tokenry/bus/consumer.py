"""The verifier's event source: one ordered JetStream consumer per instance, plus heartbeats.

Kept behind the small :class:`EventStream` protocol so that the fleet-scale design of
docs/design.md §6 (RePublish onto core NATS, direct gets to fill gaps) can replace it locally.
Each verifier instance gets every event: never a shared durable or a queue group.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from tokenry.bus import tracing
from tokenry.bus.codec import Subjects

log = logging.getLogger(__name__)

# The 5 s default delays the first delivery after a nats-server restart by ~18 s; 0.5 s brings
# it to ~0.13 s (docs/design.md §4, facts measured).
IDLE_HEARTBEAT = 0.5

#: (stream seq, message bytes) of one delivered event.
EventHandler = Callable[[int, bytes], None]
HeartbeatHandler = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """What the stream holds: ``first_seq``..``last_seq`` (``first_seq = last_seq + 1`` when
    empty); ``created`` changes when the stream was deleted and made again (a reset)."""

    first_seq: int
    last_seq: int
    created: datetime.datetime | None = None

    def lost_after(self, seq: int) -> bool:
        """True when messages after stream seq ``seq`` existed but are no longer held."""
        return self.last_seq > seq and self.first_seq > seq + 1


class Subscription(Protocol):
    async def close(self) -> None: ...


class EventStream(Protocol):
    async def position(self) -> StreamPosition | None:
        """The stream's current bounds, or None when the stream does not exist (yet)."""
        ...

    async def subscribe(self, start: int, on_event: EventHandler) -> Subscription:
        """Deliver every event from stream seq ``start`` on, in stream order."""
        ...

    async def subscribe_heartbeats(self, on_heartbeat: HeartbeatHandler) -> Subscription:
        """Deliver every heartbeat (core NATS, outside the stream)."""
        ...


class _NatsSubscription:
    __slots__ = ("_sub",)

    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


class JetStreamEvents:
    """:class:`EventStream` over a JetStream stream and the core-NATS heartbeat subject."""

    def __init__(
        self,
        nc: NatsClient,
        subjects: Subjects,
        stream: str,
        *,
        idle_heartbeat: float = IDLE_HEARTBEAT,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subjects = subjects
        self._stream = stream
        self._idle_heartbeat = idle_heartbeat

    async def position(self) -> StreamPosition | None:
        try:
            info = await self._js.stream_info(self._stream)
        except NotFoundError:
            return None
        state = info.state
        first = state.first_seq if state.messages else state.last_seq + 1
        return StreamPosition(first, state.last_seq, info.created)

    async def subscribe(self, start: int, on_event: EventHandler) -> Subscription:
        async def deliver(msg: Msg) -> None:
            headers = msg.headers
            if headers and "traceparent" in headers:
                # The apply span: child of the header's context (bus.tracing; none unsampled)
                with tracing.applying(msg.subject, headers):
                    on_event(_stream_seq(msg), msg.data)
                return
            on_event(_stream_seq(msg), msg.data)

        sub = await self._js.subscribe(
            self._subjects.events,
            stream=self._stream,
            cb=deliver,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=max(1, start)),
            idle_heartbeat=self._idle_heartbeat,
        )
        return _NatsSubscription(sub)

    async def subscribe_heartbeats(self, on_heartbeat: HeartbeatHandler) -> Subscription:
        async def deliver(msg: Msg) -> None:
            # A real heartbeat is a plain core-NATS publish and never has a reply subject. A
            # message that does is a stream delivery someone pointed at this subject (NATS does
            # not check a consumer's deliver subject against its creator's permissions,
            # nats-io/nats-server#8274): taking it as a heartbeat would let a holder of the
            # consumer credentials fake "current" and defeat fail-closed (docs/spec.md §4.4).
            if msg.reply:
                return
            on_heartbeat(msg.data)

        return _NatsSubscription(await self._nc.subscribe(self._subjects.heartbeat, cb=deliver))


def _stream_seq(msg: Msg) -> int:
    # v1 reply subject: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
    # <timestamp>.<pending>. Read directly (msg.metadata builds three objects per message);
    # any other shape (v2, with domain and account) goes through nats-py's parser.
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5])
    return int(msg.metadata.sequence.stream)
