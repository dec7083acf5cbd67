"""What the issuer learns from the event stream (core NATS subscription on the event subjects).

- ``clients.*``: drop the cached client at once;
- ``revocation.subject`` / ``revocation.client``: raise the in-memory watermark, so no token is
  minted that would be born revoked (docs/spec.md §4);
- ``keys.*``: re-read the active signing keys now instead of at the next periodic check
  (docs/spec.md §5).

Events are hints here: a missed one is covered by the client cache's TTL, the periodic
watermark reload and the periodic key check, and every decision that needs certainty (refresh,
exchange) asks PostgreSQL (docs/spec.md §4.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.core.client_cache import CachedClients
from tokenry.core.revocations import RevocationKind
from tokenry.services.issuer.caches import Watermarks

log = logging.getLogger(__name__)


class IssuerListener:
    def __init__(
        self,
        *,
        subjects: Subjects,
        clients: CachedClients,
        watermarks: Watermarks,
        on_key_event: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._subjects = subjects
        self._clients = clients
        self._watermarks = watermarks
        self._on_key_event = on_key_event
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.seen = 0

    async def start(self, nc: NatsClient) -> None:
        self._subs.append(await nc.subscribe(self._subjects.events, cb=self.on_message))

    async def on_message(self, msg: Msg) -> None:
        self.handle(msg.subject, msg.data)

    def handle(self, subject: str, data: bytes) -> None:  # noqa: ARG002 - the payload decides
        self.seen += 1
        try:
            event = codec.decode(data)
        except codec.UndecodableEvent:
            return
        if event.client is not None:
            self._clients.invalidate(event.client.client_id)
            return
        if event.key is not None:
            task = asyncio.create_task(self._key_event(event.key.kid, event.key.state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        rev = event.revocation
        if rev is not None and rev.kind in (RevocationKind.SUBJECT, RevocationKind.CLIENT):
            self._watermarks.raise_to(rev.kind.value, rev.value, rev.not_before)
            if rev.kind is RevocationKind.CLIENT:
                self._clients.invalidate(rev.value)

    async def _key_event(self, kid: str, state: str) -> None:
        try:
            await self._on_key_event(kid, state)
        except Exception as exc:
            log.warning("key refresh after a key event failed: %s", type(exc).__name__)

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
