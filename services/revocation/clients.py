"""Client lookups for authentication, coalesced: concurrent calls share one read per client.

Under load every Revoke authenticates the same few admin clients; one PostgreSQL read per call
was a round trip (and a pool checkout) per revocation. Lookups that arrive while a batch is in
flight wait for it and go out together as the next batch (tokenry.store.batching.Coalescer),
so each answer comes from a read that started after the request arrived: never staler than a
lookup of its own.
"""

from __future__ import annotations

import asyncio

from tokenry.core.clientauth import ClientLookup
from tokenry.core.clients import Client
from tokenry.store.batching import Coalescer


class CoalescedClients:
    """A :class:`~tokenry.core.clientauth.ClientLookup` over another, one read per distinct
    client id per batch."""

    def __init__(self, lookup: ClientLookup) -> None:
        self._lookup = lookup
        self._batch: Coalescer[str, Client | None] = Coalescer(self._read)

    async def get_client(self, client_id: str) -> Client | None:
        return await self._batch(client_id)

    async def _read(self, ids: list[str]) -> list[Client | None]:
        distinct = list(dict.fromkeys(ids))
        found = await asyncio.gather(*(self._lookup.get_client(i) for i in distinct))
        by_id = dict(zip(distinct, found, strict=True))
        return [by_id[i] for i in ids]
