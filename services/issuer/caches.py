"""In-memory state that keeps the issuance hot path free of database round trips.

- :class:`CachedClients`: the client registry, dropped per client as soon as a
  ``clients.*`` event arrives, with a short TTL as the backup for a missed event
  (ARCHITECTURE §7).
- :class:`Watermarks`: subject and client revocation watermarks still in the future; no token is
  minted that would be born revoked (SPEC §4: ``temporarily_unavailable``, the client retries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenry.core.clientauth import ClientLookup
from tokenry.core.clients import Client
from tokenry.core.clock import Clock
from tokenry.core.errors import TemporarilyUnavailable

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

    def invalidate(self, client_id: str) -> None:
        self._epoch += 1
        self._entries.pop(client_id, None)

    def invalidate_all(self) -> None:
        self._epoch += 1
        self._entries.clear()


class Watermarks:
    """``(kind, value) -> not_before`` for subject/client revocations not yet behind us."""

    def __init__(self) -> None:
        self._subject: dict[str, int] = {}
        self._client: dict[str, int] = {}

    def raise_to(self, kind: str, value: str, not_before: int) -> None:
        table = self._subject if kind == "subject" else self._client
        if kind not in ("subject", "client"):
            return
        if not_before > table.get(value, 0):
            table[value] = not_before

    def load(self, marks: Iterable[tuple[str, str, int]], now: float) -> None:
        """Merge a reload from PostgreSQL and forget marks that are behind ``now``."""
        for kind, value, not_before in marks:
            self.raise_to(kind, value, not_before)
        for table in (self._subject, self._client):
            for value in [v for v, nb in table.items() if nb <= now]:
                del table[value]

    def check(self, subject: str, client_id: str, now: float) -> None:
        """Raise ``TemporarilyUnavailable`` if a token minted now would be born revoked.

        A token with ``iat = int(now)`` is revoked when ``iat < not_before`` (SPEC §4).
        """
        iat = int(now)
        if (self._subject and iat < self._subject.get(subject, 0)) or (
            self._client and iat < self._client.get(client_id, 0)
        ):
            raise TemporarilyUnavailable(
                "a revocation of this subject or client is taking effect; retry in a few seconds"
            )
