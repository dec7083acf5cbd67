"""The verifier's JWKS cache (RFC 7517).

An unknown ``kid`` triggers one refresh, single-flight (concurrent misses share it) and rate
limited (never one fetch per request, never a stampede), then fails (pyjwt's
``PyJWKClient.get_signing_key`` pattern). A failed refresh keeps the keys already held
(stale-if-error). Key events only *hint* a refetch: key material comes from the authenticated
JWKS source, never from an event body (SPEC §4.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Protocol

import grpc

from tokenry.core.clock import Clock
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc
from tokenry.verifier.keys import VerificationKey, parse_jwks

log = logging.getLogger(__name__)


class JwksSource(Protocol):
    async def fetch(self) -> tuple[str, int]:
        """The JWK Set as JSON and the event seq it is current to (0 if unknown)."""
        ...


class GrpcJwksSource:
    """Fetches the JWKS from the Tokenry key rotator."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float = 5.0) -> None:
        self._stub = keyrotator_pb2_grpc.KeyRotatorStub(channel)
        self._timeout = timeout

    async def fetch(self) -> tuple[str, int]:
        resp = await self._stub.GetJwks(keyrotator_pb2.GetJwksRequest(), timeout=self._timeout)
        return resp.jwks_json, resp.seq


class JwksCache:
    def __init__(
        self, source: JwksSource, clock: Clock, *, min_refresh_interval: float = 1.0
    ) -> None:
        self._source = source
        self._clock = clock
        self._min_interval = min_refresh_interval
        self._keys: dict[str, VerificationKey] = {}
        self._revoked: set[str] = set()
        self._inflight: asyncio.Task[None] | None = None
        self._last_attempt = float("-inf")
        self.loaded = False
        self.seq = 0

    @property
    def keys(self) -> Mapping[str, VerificationKey]:
        return self._keys

    def is_revoked(self, kid: str) -> bool:
        return kid in self._revoked

    def revoke(self, kid: str) -> None:
        """A key-revoked event: reject the kid at once, before any refetch (SPEC §4.6)."""
        self._revoked.add(kid)
        self._keys.pop(kid, None)

    async def refresh(self, *, force: bool = False) -> None:
        """Refetch the set: single-flight, and rate limited unless ``force`` (key events)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
            return
        now = self._clock.monotonic()
        if not force and now - self._last_attempt < self._min_interval:
            return
        self._last_attempt = now
        self._inflight = asyncio.create_task(self._fetch())
        try:
            await asyncio.shield(self._inflight)
        finally:
            self._inflight = None

    async def _fetch(self) -> None:
        try:
            text, seq = await self._source.fetch()
        except Exception as exc:
            log.warning(
                "JWKS refresh failed (%s); keeping %d keys", type(exc).__name__, len(self._keys)
            )
            return
        try:
            keys, problems = parse_jwks(text)
        except ValueError as exc:
            log.warning(
                "JWKS refresh returned an invalid set (%s); keeping %d keys", exc, len(self._keys)
            )
            return
        for problem in problems:
            log.warning("JWKS: skipped a key: %s", problem)
        self._keys = {kid: key for kid, key in keys.items() if kid not in self._revoked}
        self.seq = max(self.seq, seq)
        self.loaded = True

    async def close(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._inflight
