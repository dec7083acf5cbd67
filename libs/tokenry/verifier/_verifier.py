"""The verifier: local, strict JWT access-token validation with event-fed revocation state.

::

    token ─► verified-token cache hit? ──yes──► key still published? ─► revocation checks ─► claims
                 │no
                 ▼
    size/shape/header (jose) ─► kid known? (no: one single-flight, rate-limited JWKS refresh)
    ─► signature with the key's own alg ─► claim checks ─► cache until exp
    ─► revocation checks ─► claims

Revocation checks key on jti, gid, sub, client_id and kid — never on the token string (token
strings are malleable, docs/spec.md §3). A verifier that cannot prove its revocation state current
within its staleness budget refuses tokens (``stale``, UNAVAILABLE: fail closed, docs/spec.md §4.4),
or — when the caller asks for :attr:`StalePolicy.INTROSPECT` and an
:class:`~.introspection.Introspector` is configured — still checks the token locally and then asks
the authorization server whether it is active, per request. A verifier whose JWKS never loaded
refuses tokens with ``no_keys``.

Three ways in, one object:

- :meth:`Verifier.check_cached` — sync, lock-free, never raises: the claims of a cached, valid,
  unrevoked token, else None. The interceptors call it first (no coroutine, no exception on the
  hot path).
- :meth:`Verifier.verify` — the coroutine, on the verifier's event loop.
- :meth:`Verifier.verify_blocking` — for threads (the sync gRPC interceptor): it verifies
  first-sight tokens in the calling thread, and hands only what needs the event loop (a JWKS
  refresh, the introspection fallback) to the verifier's loop, waiting with a timeout.

Size: the hot path is generated here from the same rules as the first sight and the fallback,
so that a change to one is seen beside the others; split, the cache-hit path would pay a
cross-module attribute lookup per call (docs/benchmarks/verifier.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Final

from tokenry import jose
from tokenry.core.clock import Clock, SystemClock
from tokenry.jose import JwksCache
from tokenry.jose.errors import (
    InvalidClaimsError,
    RejectedHeaderError,
    RevokedError,
    TokenExpiredError,
    VerificationError,
    VerifierUnavailableError,
)
from tokenry.verifier._cache import CacheEntry, TokenCache
from tokenry.verifier._config import (
    DEFAULT_BLOCKING_TIMEOUT,
    Claims,
    NoRevocationFeed,
    RevocationRule,
    RevocationView,
    StalePolicy,
    VerifierConfig,
)
from tokenry.verifier._introspection import Introspector
from tokenry.verifier._metrics import VerifierStats

__all__ = [
    "DEFAULT_BLOCKING_TIMEOUT",
    "Claims",
    "NoRevocationFeed",
    "RevocationRule",
    "RevocationView",
    "StalePolicy",
    "Verifier",
    "VerifierConfig",
]

log = logging.getLogger(__name__)

#: How long the hot path may reuse a "not stale" verdict before asking the state again. The
#: staleness budget is tens of seconds (docs/spec.md §4.4); this bounds the slack to 10 ms and saves
#: two Python calls per cache hit. A stale verdict is never reused: recovery is seen at once.
STALENESS_RECHECK: Final = 0.010


class _NeedsLoop:
    """Returned by the local path when only the event loop can finish (refresh, fallback)."""


_NEEDS_LOOP: Final = _NeedsLoop()
_new_entry: Final = tuple.__new__  # CacheEntry without the NamedTuple __new__ frame


class Verifier:
    """Verifies bearer tokens for one audience; share one instance per process.

    Args:
        config: issuer, audience and limits.
        jwks: the key cache (and its source).
        state: the revocation state (``state.RevocationState`` fed by NATS, or
            :class:`NoRevocationFeed`).
        clock: wall clock for ``exp``/``nbf``/``iat``.
        introspector: enables :attr:`StalePolicy.INTROSPECT`; without one, that policy fails
            closed like the default.
        loop: the event loop that owns ``jwks`` (default: the loop running at construction);
            needed only by :meth:`verify_blocking`.
    """

    def __init__(
        self,
        config: VerifierConfig,
        jwks: JwksCache,
        state: RevocationView,
        clock: Clock,
        *,
        introspector: Introspector | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.jwks = jwks
        self.state = state
        self.introspector = introspector
        self.stats = VerifierStats()
        self.cache = TokenCache(config.cache_size)
        self._clock = clock
        # The system clock's builtins directly: no Python frame on the hot path.
        system = type(clock) is SystemClock
        self._wall = time.time if system else clock.now
        self._mono = time.monotonic if system else clock.monotonic
        self._decoder = jose.Decoder()
        self._rules = jose.Rules(
            config.issuer,
            config.audience,
            config.leeway,
            config.max_size,
            config.accepted_typ,
            min(config.leeway, config.max_clock_skew),
        )
        self._cache_get = self.cache.get
        # Tokens signed by a key that leaves the set (revoked, unpublished) leave the cache.
        jwks.on_keys_removed(self.cache.purge_kids)
        self.check_cached = self._hot_path()
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._loop = loop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tell a verifier built outside a loop which loop owns its JWKS cache."""
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    # --- the hot path --------------------------------------------------------------------------

    check_cached: Callable[[str], Claims | None]
    """The claims of a cached token that is still valid and unrevoked, else None.

    Sync, lock-free, never raises: a dict lookup plus the revocation checks (jti, gid, sub and
    client_id watermarks here; a revoked or unpublished kid has already purged its tokens from
    the cache). None means "not decidable here" (not cached, expired, revoked, state stale):
    call :meth:`verify`, which decides and says why.
    """

    def _hot_path(self) -> Callable[[str], Claims | None]:
        # A closure over locals: every name below is a cell read, not an attribute lookup.
        #
        # One rule (issue 12, item 1): revoked iff RevocationSet.check names a kind — the same
        # call as the first sight (_verify_local) and the full path (_admit) make — and expired
        # iff the monotonic deadline _decode derived from exp + leeway has passed. The two
        # comparisons are written here and in _admit rather than in one shared function because
        # the extra call costs ≈ 170 instructions per hit, 3 points of the ≤ 1.3 × floor budget
        # (docs/benchmarks/verifier.md). tests/unit/verifier/test_verifier_one_rule.py proves
        # the three paths give the rule's answer over random revocation sets, tokens and times.
        cache_get = self._cache_get
        monotonic = self._mono
        state = self.state
        fresh_until = float("-inf")
        hits = 0

        def check_cached(token: str) -> Claims | None:
            nonlocal fresh_until, hits
            entry = cache_get(token)
            if entry is None:
                return None
            claims, deadline, _kid, jti, gid, sub, client_id, iat = entry
            mono = monotonic()
            if mono >= deadline:
                return None
            if mono >= fresh_until:
                if state.is_stale():
                    return None
                fresh_until = mono + STALENESS_RECHECK
            if state.revocations.check(jti, gid, sub, client_id, iat) is None:
                hits += 1
                return claims
            return None

        self.stats.read_fast_hits_with(lambda: hits)
        return check_cached

    # --- the full paths ------------------------------------------------------------------------

    async def verify(
        self, token: str, *, on_stale: StalePolicy = StalePolicy.FAIL_CLOSED
    ) -> Claims:
        """Verify a bearer token and return its claims (read-only).

        Raises:
            VerificationError: the token is not accepted; ``reason`` says why. A
                :class:`~.errors.VerifierUnavailableError` (``stale``, ``no_keys``,
                ``introspection_failed``) is about the verifier, not the token.
        """
        entry = self._cache_get(token)
        if entry is not None:
            claims = self.check_cached(token)
            if claims is not None:
                return claims
        result = self._verify_local(token, on_stale, entry)
        if result is not _NEEDS_LOOP:
            return result  # type: ignore[return-value]
        return await self._verify_on_loop(token, on_stale)

    def verify_blocking(
        self,
        token: str,
        *,
        on_stale: StalePolicy = StalePolicy.FAIL_CLOSED,
        timeout: float = DEFAULT_BLOCKING_TIMEOUT,
    ) -> Claims:
        """:meth:`verify` for a thread that is not the verifier's event loop.

        Cache hits and first-sight tokens whose key is known are decided in the calling thread;
        a JWKS refresh or the introspection fallback runs on the verifier's loop and this
        thread waits for it, at most ``timeout`` seconds (then ``timeout``, UNAVAILABLE).

        Raises:
            VerificationError: as :meth:`verify`.
            RuntimeError: called on the verifier's own loop (it would deadlock), or the
                verifier has no loop (see :meth:`bind_loop`).
        """
        entry = self._cache_get(token)
        if entry is not None:
            claims = self.check_cached(token)
            if claims is not None:
                return claims
        result = self._verify_local(token, on_stale, entry)
        if result is not _NEEDS_LOOP:
            return result  # type: ignore[return-value]
        loop = self._loop
        if loop is None:
            raise RuntimeError("this verifier has no event loop; call bind_loop() first")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("verify_blocking() on the verifier's own loop; await verify()")
        try:
            future = asyncio.run_coroutine_threadsafe(self._verify_on_loop(token, on_stale), loop)
        except RuntimeError:  # the loop is closed
            raise self._failure(
                VerifierUnavailableError("timeout", "the verifier's event loop is not running")
            ) from None
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:  # the verifier's loop is shutting down
            raise self._failure(
                VerifierUnavailableError("timeout", "the verifier's event loop stopped")
            ) from None
        except TimeoutError:
            future.cancel()
            raise self._failure(
                VerifierUnavailableError("timeout", "the verifier did not answer in time")
            ) from None

    def _verify_local(
        self, token: str, on_stale: StalePolicy, entry: CacheEntry | None
    ) -> Claims | _NeedsLoop:
        """Everything that needs no await; ``_NEEDS_LOOP`` when only the loop can finish.

        ``entry`` is the caller's cache lookup of ``token`` (one lookup per call, not three). A
        stale one is harmless: a cached entry is re-admitted with every check (expiry, kid still
        published, revocations), and a token cached since is merely verified again.
        """
        stats = self.stats
        state = self.state
        try:
            if state.is_stale():
                if on_stale is StalePolicy.INTROSPECT and self.introspector is not None:
                    return _NEEDS_LOOP
                raise VerifierUnavailableError("stale", "revocation state cannot be proven current")
            if entry is not None:
                claims = self._admit(token, entry)
                stats.slow_hits += 1
                return claims
            stats.misses += 1
            entry = self._decode(token, self._wall())
            if entry is None:
                return _NEEDS_LOOP  # kid unknown: a JWKS refresh may bring it
            # First sight: only the revocation checks — ``_decode`` has just checked exp and
            # found the key (and re-checked it after caching, for a racing key revocation).
            claims, _deadline, _kid, jti, gid, sub, client_id, iat = entry
            kind = state.revocations.check(jti, gid, sub, client_id, iat)
            if kind is not None:
                raise RevokedError("revoked", f"token revoked (by {kind})")
        except VerificationError as exc:
            raise self._failure(exc) from None
        stats.verified += 1
        return claims

    async def _verify_on_loop(self, token: str, on_stale: StalePolicy) -> Claims:
        introspect = on_stale is StalePolicy.INTROSPECT and self.introspector is not None
        try:
            if self.state.is_stale():
                if not introspect:
                    raise VerifierUnavailableError(
                        "stale", "revocation state cannot be proven current"
                    )
                return await self._fallback(token)
            entry = self._cache_get(token)
            if entry is None:
                entry = await self._decode_refreshing(token, self._wall(), introspect)
                if entry is None:  # no keys at all, and the fallback is allowed
                    return await self._fallback(token)
            claims = self._admit(token, entry)
        except VerificationError as exc:
            raise self._failure(exc) from None
        self.stats.verified += 1
        return claims

    async def _decode_refreshing(
        self, token: str, now: float, no_keys_ok: bool = False
    ) -> CacheEntry | None:
        entry = self._decode(token, now)
        if entry is not None:
            return entry
        # A new key may have been published: one shared, rate-limited refresh, then decide.
        await self.jwks.refresh()
        if not self.jwks.loaded:
            if no_keys_ok:
                return None
            why = self.jwks.last_error or "no key set fetched yet"
            raise VerifierUnavailableError(
                "no_keys", f"no verification keys could be loaded ({why})"
            )
        entry = self._decode(token, now)
        if entry is None:
            if self.jwks.last_error is not None:
                # The refresh that could have brought the key failed: an outage is not an
                # unknown key, so the caller is told to retry (UNAVAILABLE), not that the token
                # is invalid (found by tests/faults/test_faults_jwks.py).
                raise VerifierUnavailableError(
                    "keys_unavailable",
                    f"kid not in the held keys and they could not be refreshed"
                    f" ({self.jwks.last_error})",
                )
            raise RejectedHeaderError("unknown_kid", "kid names no known key")
        return entry

    async def _fallback(self, token: str) -> Claims:
        """docs/spec.md §4.4 introspection fallback: local checks first, then ask whether it is
        active."""
        introspector = self.introspector
        if introspector is None:  # pragma: no cover - callers check
            raise VerifierUnavailableError("stale", "revocation state cannot be proven current")
        now = self._wall()
        entry: CacheEntry | None = None
        if self.jwks.loaded:
            # Garbage, forged and expired tokens are refused here, without a remote call.
            entry = self._cache_get(token) or await self._decode_refreshing(token, now, True)
            if entry is not None:
                self._admit(token, entry)  # known revocations still apply
        try:
            answer = await introspector.introspect(token)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("introspection fallback failed (%s)", type(exc).__name__)
            raise VerifierUnavailableError(
                "introspection_failed", "the token could not be introspected"
            ) from None
        if answer is None:
            raise RevokedError("inactive", "the authorization server reports the token inactive")
        if entry is not None:
            claims = entry.claims
        else:
            # Nothing was checked locally (no keys): validate the answer like a token's claims.
            checked = dict(answer)
            jose.check_claims(
                checked,
                issuer=self.config.issuer,
                audience=self.config.audience,
                now=now,
                leeway=self.config.leeway,
                max_clock_skew=self.config.max_clock_skew,
            )
            claims = MappingProxyType(checked)
        self.stats.introspected += 1
        return claims

    # --- steps ---------------------------------------------------------------------------------

    def _decode(self, token: str, now: float) -> CacheEntry | None:
        """First sight: verify and cache. None when the kid is unknown (a refresh may help)."""
        config = self.config
        jwks = self.jwks
        # One call for parse, key, signature and claims (VerifierConfig validated the leeway).
        kid, claims = self._decoder.decode_for(token, jwks.keys, self._rules, now)
        if claims is None:
            if kid in jwks.revoked_kids:
                raise RevokedError("key_revoked", "the signing key was revoked")
            return None
        gid = claims.get("gid")
        if gid is not None and type(gid) is not str:
            raise InvalidClaimsError("bad_claim_type", "claim gid must be a string")
        # The entry lives for the token's remaining lifetime on the monotonic clock, so the hot
        # path reads one clock.
        entry: CacheEntry = _new_entry(
            CacheEntry,
            (
                MappingProxyType(claims),
                self._mono() + (claims["exp"] + config.leeway - now),
                kid,
                claims["jti"],
                gid,
                claims.get("sub"),
                claims.get("client_id"),
                claims["iat"],
            ),
        )
        self.cache.put(token, entry)
        if kid not in jwks.keys:
            # The key left the set while we verified (a revocation racing this thread): the
            # purge may have run before our insert, so undo it and refuse the token here —
            # the first-sight admission does not look at the kid again.
            self.cache.discard(token)
            if kid in jwks.revoked_kids:
                raise RevokedError("key_revoked", "the signing key was revoked")
            raise RejectedHeaderError("unknown_kid", "the signing key is no longer published")
        return entry

    def _admit(self, token: str, entry: CacheEntry) -> Claims:
        """The checks a cached verification cannot settle once and for all."""
        claims, deadline, kid, jti, gid, sub, client_id, iat = entry
        if self._mono() >= deadline:
            self.cache.discard(token)
            raise TokenExpiredError("expired", "token has expired")
        if kid not in self.jwks.keys:
            if kid in self.jwks.revoked_kids:
                raise RevokedError("key_revoked", "the signing key was revoked")
            raise RejectedHeaderError("unknown_kid", "the signing key is no longer published")
        kind = self.state.revocations.check(jti, gid, sub, client_id, iat)
        if kind is not None:
            raise RevokedError("revoked", f"token revoked (by {kind})")
        return claims

    def _failure(self, exc: VerificationError) -> VerificationError:
        outcome = "unavailable" if isinstance(exc, VerifierUnavailableError) else "rejected"
        self.stats.fail(outcome, exc.reason)
        return exc
