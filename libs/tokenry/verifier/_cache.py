"""The verified-token cache: token string → what its first verification proved.

A hit costs one dict lookup; the caller then runs the revocation checks, which key on the cached
``jti``/``gid``/``sub``/``client_id``/``kid`` and never on the token string (token strings are
malleable, docs/spec.md §3: a re-encoded token is simply another cache entry that must earn its
place by a signature check of its own).

Thread safety: reads (``get``) and single writes (``put``, ``discard``) take no lock — one dict
lookup, store or pop is atomic in CPython, and entries are immutable tuples — so the first-sight
path costs no lock either. The multi-step writers (eviction, ``purge_kids``, ``clear``)
serialise on one lock, and take their snapshot of the keys in one C-level call
(``list(islice(...))``, ``list(items())``), which no other thread can interleave with, so they
never iterate a dict that another thread is changing.

Bounded: when full, the oldest eighth of the entries (insertion order, which follows ``iat``
closely since tokens are cached when first seen) is dropped in one batch, so eviction costs O(1)
amortised per insert, and a cache full of live tokens never turns every miss into a full scan.
Expired entries need no sweep: a hit is only accepted before the entry's deadline, and an
expired entry is dropped the first time it is looked up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any, Final, NamedTuple

__all__ = ["CacheEntry", "TokenCache"]

_EVICT_FRACTION: Final = 8


class CacheEntry(NamedTuple):
    """What one successful first-sight verification proved about a token.

    The revocation-check arguments are copied out of the claims once, so a hit does no claim
    lookups.
    """

    claims: Mapping[str, Any]  # read-only view (MappingProxyType); handlers cannot alter it
    deadline: float  # monotonic time of exp + leeway: valid only while monotonic() < deadline
    kid: str
    jti: str
    gid: str | None
    sub: str | None
    client_id: str | None
    iat: float


class TokenCache:
    """A bounded ``token → CacheEntry`` map; see the module docstring.

    ``get`` is the dict's own bound ``get`` (no Python frame on the hot path).
    """

    __slots__ = ("_data", "_lock", "get", "max_size")

    get: Callable[[str], CacheEntry | None]

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._data: dict[str, CacheEntry] = {}
        self._lock = threading.Lock()
        self.get = self._data.get

    def __len__(self) -> int:
        return len(self._data)

    def put(self, token: str, entry: CacheEntry) -> None:
        data = self._data
        data[token] = entry
        if len(data) > self.max_size:
            self._evict()

    def _evict(self) -> None:
        with self._lock:
            data = self._data
            excess = len(data) - self.max_size
            if excess <= 0:  # another thread evicted first
                return
            batch = max(excess, self.max_size // _EVICT_FRACTION)
            for oldest in list(islice(data, batch)):
                data.pop(oldest, None)

    def discard(self, token: str) -> None:
        self._data.pop(token, None)

    def purge_kids(self, kids: frozenset[str]) -> int:
        with self._lock:
            dead = [token for token, entry in list(self._data.items()) if entry.kid in kids]
            for token in dead:
                self._data.pop(token, None)
        return len(dead)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
