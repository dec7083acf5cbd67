"""What an outbox event changes in the gateway's in-process state.

The gateway follows the outbox straight from PostgreSQL (``tokenry.store.outbox_feed``: a NOTIFY
at commit, then a read of the new rows), as the introspector does, so it needs no NATS at all:

- a client change drops the cached client (token, introspection and revocation authenticate
  from that cache);
- a subject or client revocation raises the issuance watermark (no token born revoked,
  docs/spec.md §4) and drops the introspection answers it revokes; a jti or grant revocation drops
  those too;
- a key event re-reads the signing keys and the published JWKS, and a dead key's cached
  introspection answers go at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from tokenry.bus import codec
from tokenry.core.client_cache import CachedClients
from tokenry.core.revocations import RevocationKind
from tokenry.flows import Watermarks
from tokenry.flows.introspection_cache import PositiveCache
from tokenry.jose import JwksCache
from tokenry.store.outbox import OutboxRow

log = logging.getLogger(__name__)

_DEAD_KEY_STATES: Final = frozenset({"revoked", "retired"})
_LIVE_KEY_STATES: Final = frozenset({"pending", "active", "retiring"})


class GatewayEvents:
    """A ``tokenry.store.outbox_feed.FeedHandler``."""

    def __init__(
        self,
        *,
        clients: CachedClients,
        watermarks: Watermarks,
        cache: PositiveCache,
        jwks: JwksCache,
        on_key_event: Callable[[], Awaitable[None]],
    ) -> None:
        self._clients = clients
        self._watermarks = watermarks
        self._cache = cache
        self._jwks = jwks
        self._on_key_event = on_key_event
        self._tasks: set[asyncio.Task[None]] = set()

    def event(self, payload: bytes) -> None:
        try:
            event = codec.decode(payload)
        except codec.UndecodableEvent:
            return
        if event.client is not None:
            self._clients.invalidate(event.client.client_id)
        elif event.revocation is not None:
            rev = event.revocation
            self._cache.invalidate(rev.kind.value, rev.value, rev.not_before)
            if rev.kind in (RevocationKind.SUBJECT, RevocationKind.CLIENT):
                self._watermarks.raise_to(rev.kind.value, rev.value, rev.not_before)
            if rev.kind is RevocationKind.CLIENT:
                self._clients.invalidate(rev.value)
        elif event.key is not None:
            key = event.key
            if key.state == "revoked":
                self._jwks.revoke(key.kid)
            if key.state in _DEAD_KEY_STATES:
                self._cache.invalidate_kid(key.kid)
            elif key.state not in _LIVE_KEY_STATES:
                self._cache.clear()
            task = asyncio.create_task(self._keys_changed())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _keys_changed(self) -> None:
        try:
            await self._on_key_event()
        except Exception as exc:
            log.warning("gateway: key refresh after a key event failed: %s", type(exc).__name__)

    # --- FeedHandler ----------------------------------------------------------------------

    def notified(self) -> None:
        self._cache.hold()

    def caught_up(self) -> None:
        self._cache.release()

    def apply(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            self.event(row.payload)

    def reset(self) -> None:
        self._cache.clear()
        self._clients.invalidate_all()
