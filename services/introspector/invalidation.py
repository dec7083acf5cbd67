"""What an event changes in the introspector's caches, whichever way the event arrived.

Two sources carry the same events: PostgreSQL, through the outbox feed (a NOTIFY at commit,
then a read of the new rows: ``tokenry.store.outbox_feed``), and the NATS stream. The first
makes the introspector drop a revoked token's answer within a millisecond or so of the commit
without depending on NATS (docs/spec.md §4.5); the second is the backstop when the feed's connection
is down. Applying an event twice changes nothing, so both may deliver it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

from tokenry.bus import codec
from tokenry.core.client_cache import CachedClients
from tokenry.jose import JwksCache
from tokenry.services.introspector.cache import PositiveCache
from tokenry.store.outbox import OutboxRow

log = logging.getLogger(__name__)

#: key states after which no token signed by the key may be answered active
_DEAD_KEY_STATES: Final = frozenset({"revoked", "retired"})
#: key states that leave every cached answer as true as it was
_LIVE_KEY_STATES: Final = frozenset({"pending", "active", "retiring"})


class CacheInvalidator:
    """Applies events to the positive cache, the client cache and the key cache.

    Implements ``tokenry.store.outbox_feed.FeedHandler`` (rows from PostgreSQL) and takes NATS
    messages through :meth:`event`.
    """

    def __init__(
        self,
        prefix: str,  # noqa: ARG002 - kept for callers; the payload names the event (one envelope)
        cache: PositiveCache,
        clients: CachedClients,
        jwks: JwksCache,
    ) -> None:
        self._cache = cache
        self._clients = clients
        self._jwks = jwks
        self._refreshes: set[asyncio.Task[None]] = set()

    def event(self, subject: str, payload: bytes) -> None:  # noqa: ARG002 - see below
        """Apply one event (a NATS message's subject and data, or an outbox row's).

        Every event is one ``tokenry.v1.Event`` envelope, so the payload alone says what it is;
        the subject is taken for the callers' convenience.
        """
        try:
            event = codec.decode(payload)
        except codec.UndecodableEvent:
            return
        if event.client is not None:
            self._clients.invalidate(event.client.client_id)
        elif event.revocation is not None:
            rev = event.revocation
            # Subject/client: iat < not_before is revoked (docs/spec.md §4); jti/grant ignore it.
            self._cache.invalidate(rev.kind.value, rev.value, rev.not_before)
        elif event.key is not None:
            key = event.key
            if key.state == "revoked":
                self._jwks.revoke(key.kid)  # at once, not at the next periodic refresh
            if key.state in _DEAD_KEY_STATES:
                self._cache.invalidate_kid(key.kid)
            elif key.state not in _LIVE_KEY_STATES:
                self._cache.clear()  # a state this version does not know: re-verify all
            if key.state != "revoked":
                # Key events are hints to refetch (docs/spec.md §4.6): a key published since the
                # last fetch must be known before its first token arrives, not at the next periodic
                # refresh (an unknown kid is answered inactive).
                self._refresh_keys()

    def _refresh_keys(self) -> None:
        task = asyncio.get_running_loop().create_task(self._jwks.refresh(force=True))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    # --- FeedHandler ----------------------------------------------------------------------

    def notified(self) -> None:
        # The commit is in PostgreSQL already: answer from there until its rows are applied.
        self._cache.hold()

    def caught_up(self) -> None:
        self._cache.release()

    def apply(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            self.event(row.subject, row.payload)

    def reset(self) -> None:
        """Events may have been missed: forget every cached answer and client."""
        self._cache.clear()
        self._clients.invalidate_all()
