"""The client registry cached in memory, so authenticating a caller costs no database round trip.

Entries are dropped per client as soon as a ``clients.*`` event (or a client revocation) arrives,
with a short TTL as the backup for a missed event (docs/design.md §7). Shared by every service that
authenticates clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenry.core.clientauth import ClientLookup
from tokenry.core.clients import Client
from tokenry.core.clock import Clock

DEFAULT_TTL = 10.0
NEGATIVE_TTL = 2.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    client: Client | None
    expires: float


class CachedClients:
    """A ``ClientLookup`` in front of the store."""

    def __init__(
        self,
        store: ClientLookup,
        clock: Clock,
        *,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = NEGATIVE_TTL,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._entries: dict[str, _Entry] = {}
        # Bumped by every invalidation: a lookup that raced with one does not cache its result.
        self._epoch = 0

    async def get_client(self, client_id: str) -> Client | None:
        entry = self._entries.get(client_id)
        now = self._clock.monotonic()
        if entry is not None and entry.expires > now:
            return entry.client
        epoch = self._epoch
        client = await self._store.get_client(client_id)
        if epoch == self._epoch:
            if len(self._entries) >= self._max:
                self._entries.clear()
            ttl = self._ttl if client is not None else self._negative_ttl
            self._entries[client_id] = _Entry(client, self._clock.monotonic() + ttl)
        return client

    def cached(self, client_id: str) -> Client | None:
        """The client while its entry is fresh, read without awaiting; None when it is not
        cached, stale or a cached "no such client" (then ``get_client`` decides). For a hot
        path that must not create a coroutine (the introspector's warm answer)."""
        entry = self._entries.get(client_id)
        if entry is not None and entry.expires > self._clock.monotonic():
            return entry.client
        return None

    def invalidate(self, client_id: str) -> None:
        self._epoch += 1
        self._entries.pop(client_id, None)

    def invalidate_all(self) -> None:
        self._epoch += 1
        self._entries.clear()
