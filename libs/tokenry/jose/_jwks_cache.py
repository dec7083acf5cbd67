"""The JWKS cache (RFC 7517): the verification keys by kid, from a :class:`JwksSource`.

One cache for every place that verifies Tokenry tokens: the resource-server verifier (over the
key rotator's ``GetJwks`` or an HTTPS JWKS URL, :mod:`tokenry.verifier`), and the services'
own checks (over PostgreSQL, :mod:`tokenry.store.jwks_source`).

An unknown ``kid`` triggers one refresh — single-flight (concurrent misses share it) and rate
limited (never one fetch per request, never a stampede) — then fails (pyjwt's
``PyJWKClient.get_signing_key`` pattern). A failed refresh keeps the keys already held
(stale-if-error). Key events only *hint* a refetch (``refresh(force=True)``): key material comes
from the authenticated JWKS source, never from an event body (docs/spec.md §4.6). A forced refresh
always waits for a fetch that *started after* it was asked for, so a key published just before its
event is never missed by joining an older fetch already in flight. Without events,
:meth:`JwksCache.get` also refetches a set older than its ``max_age`` (monotonic clock).

Threads: the cache belongs to one event loop (``refresh`` is a coroutine). Other threads may read
``keys`` and ``revoked_kids`` at any time: ``keys`` is replaced, never mutated, by a refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Set
from typing import Final, Protocol

from tokenry.core.clock import Clock
from tokenry.jose._keys import VerificationKey, parse_jwks

__all__ = ["DEFAULT_MIN_REFRESH_INTERVAL", "JwksCache", "JwksSource"]

log = logging.getLogger(__name__)

DEFAULT_MIN_REFRESH_INTERVAL: Final = 1.0


class JwksSource(Protocol):
    """Where the JWK Set comes from."""

    async def fetch(self) -> tuple[str, int]:
        """The JWK Set as JSON and the event seq it is current to (0 if the source has none).

        Raises:
            Exception: any failure; the cache logs it and keeps the keys it holds.
        """
        ...


class JwksCache:
    """The verification keys by kid, refreshed from a :class:`JwksSource`.

    Attributes:
        keys: the usable keys by kid; replaced (never mutated) by each refresh, so any thread
            may read it.
        loaded: True once one fetch succeeded; until then the verifier refuses tokens with
            ``no_keys`` (it never crashes for lack of keys).
        seq: the highest event seq a fetched set was current to.
        fetches_ok, fetches_failed: fetch outcomes (metrics).
        last_error: a short description of the last failed fetch, or None (no secrets in it).

    Args:
        source: where the set comes from.
        clock: its monotonic clock rates the refreshes and ages the set.
        min_refresh_interval: at most one unforced fetch per this many seconds.
        max_age: :meth:`get` refetches a set older than this (monotonic seconds); the default,
            never, suits a cache kept current by key events or :meth:`run_periodic`.
    """

    def __init__(
        self,
        source: JwksSource,
        clock: Clock,
        *,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
        max_age: float = math.inf,
    ) -> None:
        self._source = source
        self._clock = clock
        self._min_interval = min_refresh_interval
        self._max_age = max_age
        self._fetched_at = -math.inf
        self._last_exception: Exception | None = None
        self.keys: Mapping[str, VerificationKey] = {}
        self._revoked: set[str] = set()
        self._inflight: asyncio.Task[None] | None = None
        self._last_attempt = float("-inf")
        self.loaded = False
        self.seq = 0
        self.fetches_ok = 0
        self.fetches_failed = 0
        self.last_error: str | None = None
        self._listeners: list[Callable[[frozenset[str]], object]] = []

    def on_keys_removed(self, listener: Callable[[frozenset[str]], object]) -> None:
        """Call ``listener(kids)`` whenever kids leave the set (revoked, or no longer published).

        The verifier drops the cached tokens those keys signed, so its hot path need not check
        the kid of every cached token.
        """
        self._listeners.append(listener)

    def _replace_keys(self, keys: Mapping[str, VerificationKey]) -> None:
        removed = frozenset(self.keys.keys() - keys.keys())
        self.keys = keys
        if removed:
            for listener in self._listeners:
                listener(removed)

    @property
    def revoked_kids(self) -> Set[str]:
        """The kids revoked by key events (a live, read-only view)."""
        return self._revoked

    def is_revoked(self, kid: str) -> bool:
        return kid in self._revoked

    def revoke(self, kid: str) -> None:
        """A key-revoked event: reject the kid at once, before any refetch (docs/spec.md §4.6)."""
        self._revoked.add(kid)
        if kid in self.keys:
            self._replace_keys({k: v for k, v in self.keys.items() if k != kid})

    async def get(self, kid: str) -> VerificationKey | None:
        """The key ``kid`` names, refetching the set when it is older than ``max_age`` or when
        the kid is unknown (single-flight and rate limited, like :meth:`refresh`).

        Returns None for a kid the current set does not hold.

        Raises:
            Exception: the last fetch failed and the cache cannot answer without it (the kid is
                unknown, or the set is older than ``max_age``) — the source's own exception, so
                that an outage is never mistaken for an unknown key.
        """
        key = self.keys.get(kid)
        if key is not None and self._clock.monotonic() - self._fetched_at < self._max_age:
            return key
        await self.refresh()
        key = self.keys.get(kid)
        failure = self._last_exception
        if failure is not None and (
            key is None or self._clock.monotonic() - self._fetched_at >= self._max_age
        ):
            raise failure
        return key

    async def refresh(self, *, force: bool = False) -> None:
        """Refetch the set: single-flight, and rate limited unless ``force`` (key events).

        Never raises for a failed fetch (stale-if-error); see :attr:`loaded`.
        """
        inflight = self._inflight
        if inflight is not None:
            await asyncio.shield(inflight)
            if not force:
                return
            # A forced refresh must see a fetch that started after it was asked for: join one
            # another forced caller started meanwhile, or start it.
            if self._inflight is not None and self._inflight is not inflight:
                await asyncio.shield(self._inflight)
                return
        elif not force and self._clock.monotonic() - self._last_attempt < self._min_interval:
            return
        self._last_attempt = self._clock.monotonic()
        task = asyncio.create_task(self._fetch())
        self._inflight = task
        await asyncio.shield(task)

    async def _fetch(self) -> None:
        try:
            await self._fetch_and_parse()
        finally:
            if self._inflight is asyncio.current_task():
                self._inflight = None

    async def _fetch_and_parse(self) -> None:
        try:
            text, seq = await self._source.fetch()
        except Exception as exc:
            self._failed(f"fetch failed ({type(exc).__name__})", exc)
            return
        try:
            keys, problems = parse_jwks(text)
        except ValueError as exc:
            self._failed(f"invalid JWK Set ({exc})", exc)
            return
        for problem in problems:
            log.warning("JWKS: skipped a key: %s", problem)
        self._replace_keys({kid: key for kid, key in keys.items() if kid not in self._revoked})
        self.seq = max(self.seq, seq)
        self.loaded = True
        self.fetches_ok += 1
        self.last_error = None
        self._last_exception = None
        self._fetched_at = self._clock.monotonic()

    def _failed(self, why: str, exc: Exception) -> None:
        self.fetches_failed += 1
        self.last_error = why
        self._last_exception = exc
        log.warning("JWKS refresh: %s; keeping %d keys", why, len(self.keys))

    async def run_periodic(self, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled.

        For sources without key events (a non-Tokenry issuer): keys that leave the set stop
        verifying within ``interval``, and cached tokens signed by them with it.
        """
        while True:
            await asyncio.sleep(interval)
            await self.refresh(force=True)

    async def close(self) -> None:
        task = self._inflight
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
