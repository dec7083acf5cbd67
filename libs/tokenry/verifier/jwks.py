"""The verifier's JWKS cache (RFC 7517) and where the key set comes from.

An unknown ``kid`` triggers one refresh — single-flight (concurrent misses share it) and rate
limited (never one fetch per request, never a stampede) — then fails (pyjwt's
``PyJWKClient.get_signing_key`` pattern). A failed refresh keeps the keys already held
(stale-if-error). Key events only *hint* a refetch (``refresh(force=True)``): key material comes
from the authenticated JWKS source, never from an event body (SPEC §4.6). A forced refresh always
waits for a fetch that *started after* it was asked for, so a key published just before its event
is never missed by joining an older fetch already in flight.

Sources (the :class:`JwksSource` port):

- :class:`GrpcJwksSource`: the Tokenry key rotator's ``GetJwks``, with the event seq the set is
  current to.
- :class:`HttpsJwksSource`: any HTTPS JWKS URL (a non-Tokenry issuer, or the gateway's
  ``/.well-known/jwks.json``), fetched with the standard library in a worker thread so the event
  loop never blocks; no redirect to plain HTTP is followed and the body is size-limited.

Threads: the cache belongs to one event loop (``refresh`` is a coroutine). Other threads may read
``keys`` and ``revoked_kids`` at any time: ``keys`` is replaced, never mutated, by a refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.request
from collections.abc import Callable, Mapping, Set
from typing import Final, Protocol
from urllib.parse import urlsplit

import grpc

from tokenry.core.clock import Clock
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc
from tokenry.verifier.keys import VerificationKey, parse_jwks

__all__ = [
    "DEFAULT_MIN_REFRESH_INTERVAL",
    "GrpcJwksSource",
    "HttpsJwksSource",
    "JwksCache",
    "JwksSource",
]

log = logging.getLogger(__name__)

DEFAULT_MIN_REFRESH_INTERVAL: Final = 1.0
MAX_JWKS_BYTES: Final = 1 << 20  # a JWKS is a few KiB; refuse to buffer an unbounded body


class JwksSource(Protocol):
    """Where the JWK Set comes from."""

    async def fetch(self) -> tuple[str, int]:
        """The JWK Set as JSON and the event seq it is current to (0 if the source has none).

        Raises:
            Exception: any failure; the cache logs it and keeps the keys it holds.
        """
        ...


class GrpcJwksSource:
    """Fetches the JWKS from the Tokenry key rotator (``KeyRotator.GetJwks``)."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self._stub = keyrotator_pb2_grpc.KeyRotatorStub(channel)
        self._timeout = timeout

    async def fetch(self) -> tuple[str, int]:
        resp = await self._stub.GetJwks(keyrotator_pb2.GetJwksRequest(), timeout=self._timeout)
        return resp.jwks_json, resp.seq


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another https URL (never downgrade to plain HTTP)."""

    def __init__(self, allow_http: bool) -> None:
        self._allow_http = allow_http

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urlsplit(newurl).scheme
        if scheme != "https" and not (self._allow_http and scheme == "http"):
            raise ValueError("JWKS redirect to a non-https URL refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]


class HttpsJwksSource:
    """Fetches a JWK Set over HTTPS (RFC 7517 §5; e.g. an issuer's ``jwks_uri``, RFC 8414 §2).

    The blocking ``urllib`` request runs in a worker thread (``asyncio.to_thread``), so the event
    loop keeps serving while it waits.

    Args:
        url: an ``https://`` URL.
        timeout: seconds for the whole request.
        ssl_context: trust settings; the default verifies against the system CAs.
        allow_http: accept ``http://`` (tests and loopback dev setups only).
        max_bytes: larger bodies are refused.

    Raises:
        ValueError: ``url`` is not https (and ``allow_http`` is false).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        allow_http: bool = False,
        max_bytes: int = MAX_JWKS_BYTES,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme != "https" and not (allow_http and scheme == "http"):
            raise ValueError("the JWKS URL must be https")
        self.url = url
        self._timeout = timeout
        self._max_bytes = max_bytes
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoDowngradeRedirect(allow_http)
        )

    async def fetch(self) -> tuple[str, int]:
        return await asyncio.to_thread(self._fetch_blocking), 0

    def _fetch_blocking(self) -> str:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "User-Agent": "tokenry-verifier",
            },
        )
        with self._opener.open(request, timeout=self._timeout) as response:
            if response.status != 200:
                raise ValueError(f"JWKS endpoint answered HTTP {response.status}")
            body: bytes = response.read(self._max_bytes + 1)
        if len(body) > self._max_bytes:
            raise ValueError(f"JWKS is larger than {self._max_bytes} bytes")
        return body.decode("utf-8")


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
    """

    def __init__(
        self,
        source: JwksSource,
        clock: Clock,
        *,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
    ) -> None:
        self._source = source
        self._clock = clock
        self._min_interval = min_refresh_interval
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
        """A key-revoked event: reject the kid at once, before any refetch (SPEC §4.6)."""
        self._revoked.add(kid)
        if kid in self.keys:
            self._replace_keys({k: v for k, v in self.keys.items() if k != kid})

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
            self._failed(f"fetch failed ({type(exc).__name__})")
            return
        try:
            keys, problems = parse_jwks(text)
        except ValueError as exc:
            self._failed(f"invalid JWK Set ({exc})")
            return
        for problem in problems:
            log.warning("JWKS: skipped a key: %s", problem)
        self._replace_keys({kid: key for kid, key in keys.items() if kid not in self._revoked})
        self.seq = max(self.seq, seq)
        self.loaded = True
        self.fetches_ok += 1
        self.last_error = None

    def _failed(self, why: str) -> None:
        self.fetches_failed += 1
        self.last_error = why
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
