"""The verifier: local, strict JWT access-token validation with event-fed revocation state.

::

    token ─► size/shape ─► verified-token cache hit? ──yes──► revocation checks ─► claims
                              │no
                              ▼
               header ─► kid known? (no: one single-flight, rate-limited JWKS refresh)
               ─► signature with the key's own alg ─► claim checks ─► cache until exp
               ─► revocation checks ─► claims

Revocation checks key on jti, gid, sub, client_id and kid — never on the token string
(token strings are malleable, SPEC §3). A verifier that cannot prove its revocation state is
current within its staleness budget refuses tokens (fail closed, SPEC §4.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tokenry.core.clock import Clock
from tokenry.verifier import jose
from tokenry.verifier.errors import RejectedHeaderError, RevokedError, VerifierUnavailableError
from tokenry.verifier.jwks import JwksCache
from tokenry.verifier.state import RevocationState

Claims = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    issuer: str
    audience: str
    leeway: float = jose.DEFAULT_LEEWAY
    max_size: int = jose.DEFAULT_MAX_SIZE
    cache_size: int = 10_000


class Verifier:
    def __init__(
        self, config: VerifierConfig, jwks: JwksCache, state: RevocationState, clock: Clock
    ) -> None:
        self.config = config
        self.jwks = jwks
        self.state = state
        self._clock = clock
        self._decoder = jose.Decoder()
        # token -> (claims, exp, kid); bounded; evicts expired, then oldest first.
        self._cache: dict[str, tuple[Claims, float, str]] = {}

    async def verify(self, token: str) -> Claims:
        """Verify a bearer token; raises :class:`~tokenry.verifier.errors.VerificationError`."""
        if self.state.is_stale():
            raise VerifierUnavailableError("stale", "revocation state cannot be proven current")
        now = self._clock.now()
        hit = self._cache.get(token)
        if hit is not None and now < hit[1] + self.config.leeway:
            claims, _, kid = hit
        else:
            claims, kid = await self._verify_new(token, now)
        if self.jwks.is_revoked(kid):
            raise RevokedError("key_revoked", "the signing key was revoked")
        kind = self.state.revocations.check(
            claims["jti"],
            claims.get("gid"),
            claims.get("sub"),
            claims.get("client_id"),
            claims["iat"],
        )
        if kind is not None:
            raise RevokedError("revoked", f"token revoked (by {kind})")
        return claims

    async def _verify_new(self, token: str, now: float) -> tuple[Claims, str]:
        parts = self._decoder.parse(token, max_size=self.config.max_size)
        key = self.jwks.keys.get(parts.kid)
        if key is None and not self.jwks.is_revoked(parts.kid):
            # A new key may have been published: one shared, rate-limited refresh, then fail.
            await self.jwks.refresh()
            if not self.jwks.loaded:
                raise VerifierUnavailableError("no_keys", "no verification keys could be loaded")
            key = self.jwks.keys.get(parts.kid)
        if key is None:
            if self.jwks.is_revoked(parts.kid):
                raise RevokedError("key_revoked", "the signing key was revoked")
            raise RejectedHeaderError("unknown_kid", "kid names no known key")
        claims = self._decoder.verify_signature(parts, key)
        jose.check_claims(
            claims,
            issuer=self.config.issuer,
            audience=self.config.audience,
            now=now,
            leeway=self.config.leeway,
        )
        frozen: Claims = MappingProxyType(claims)
        if len(self._cache) >= self.config.cache_size:
            self._evict(now)
        self._cache[token] = (frozen, float(claims["exp"]), parts.kid)
        return frozen, parts.kid

    def _evict(self, now: float) -> None:
        expired = [
            t for t, (_, exp, _kid) in self._cache.items() if exp + self.config.leeway <= now
        ]
        for t in expired:
            del self._cache[t]
        while len(self._cache) >= self.config.cache_size:
            del self._cache[next(iter(self._cache))]
