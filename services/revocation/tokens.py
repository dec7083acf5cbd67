"""What a presented token is, for RFC 7009 revocation: whose it is and what to revoke.

A JWT is trusted only after its signature verifies against the published JWKS (expiry
ignored: a client may revoke its own expired token, RFC 7009 §2.1 and SPEC §3); anything that
does not verify is an invalid token, answered with success and no effect (RFC 7009 §2.2).
Opaque tokens (``tkr_at_``/``tkr_rt_``) are resolved through the :class:`OpaqueTokens` port:
:class:`StoreOpaqueTokens` looks them up in PostgreSQL by their SHA-256.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from tokenry.core import opaque
from tokenry.core.clock import Clock
from tokenry.store import opaque_tokens
from tokenry.verifier import jose
from tokenry.verifier.errors import VerificationError
from tokenry.verifier.keys import VerificationKey, parse_jwks

log = logging.getLogger(__name__)

OPAQUE_PREFIX = "tkr_"


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """The facts of a verified token that revocation needs."""

    kind: str  # "access" | "refresh"
    jti: str
    client_id: str | None
    subject: str | None
    gid: str | None
    expires_at: int | None  # the token's own exp, None when unknown


class OpaqueTokens(Protocol):
    async def find(self, token: str) -> PresentedToken | None:
        """The opaque token's record (looked up by its SHA-256 digest), or None if unknown.

        Expired and already-revoked tokens may be returned: revoking them again is harmless.
        """
        ...


class NoOpaqueTokens:
    """A deployment without opaque tokens: every ``tkr_`` token is unknown."""

    async def find(self, token: str) -> PresentedToken | None:  # noqa: ARG002 - the port's signature
        return None


class StoreOpaqueTokens:
    """Opaque tokens in PostgreSQL, looked up by SHA-256 (SPEC §3). The checksum is checked
    first, so garbage and codes cost no query; authorization codes and login challenges are
    not revocable tokens."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, token: str) -> PresentedToken | None:
        prefix = opaque.kind_of(token)
        if prefix not in (opaque.ACCESS, opaque.REFRESH):
            return None
        row = await opaque_tokens.get(self._pool, opaque.token_hash(token))
        if row is None:
            return None
        return PresentedToken(
            kind="refresh" if row.kind == opaque_tokens.REFRESH else "access",
            jti=row.jti,
            client_id=row.client_id,
            subject=row.subject,
            gid=row.gid or None,
            expires_at=row.expires_at,
        )


class PublishedKeys(Protocol):
    async def published(self) -> tuple[list[dict[str, Any]], int]:
        """Every published public JWK and the event seq the set is current to."""
        ...


class JwtTokens:
    """Verifies a JWT's signature against the published JWKS (cached briefly) — expiry
    ignored — and returns its revocation facts."""

    def __init__(
        self,
        keys: PublishedKeys,
        clock: Clock,
        *,
        ttl: float = 30.0,
        min_refresh_interval: float = 1.0,
    ) -> None:
        self._source = keys
        self._clock = clock
        self._ttl = ttl
        self._min_interval = min_refresh_interval
        self._keys: dict[str, VerificationKey] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._decoder = jose.Decoder()

    async def find(self, token: str) -> PresentedToken | None:
        try:
            parts = self._decoder.parse(token)
        except VerificationError:
            return None
        key = await self._key(parts.kid)
        if key is None:
            return None  # not signed by a key of ours (or one retired/revoked since)
        try:
            claims = self._decoder.verify_signature(parts, key)
        except VerificationError:
            return None
        return _facts(claims)

    async def _key(self, kid: str) -> VerificationKey | None:
        now = self._clock.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._loaded_at < self._ttl:
            return key
        async with self._lock:  # single flight
            now = self._clock.monotonic()
            fresh = now - self._loaded_at < self._min_interval
            if not fresh and (key is None or now - self._loaded_at >= self._ttl):
                jwks, _seq = await self._source.published()
                keys, problems = parse_jwks({"keys": jwks})
                for problem in problems:
                    log.warning("JWKS: skipped a key: %s", problem)
                self._keys = keys
                self._loaded_at = now
            return self._keys.get(kid)


def _facts(claims: dict[str, Any]) -> PresentedToken | None:
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        return None
    exp = claims.get("exp")
    expires_at = None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and 0 < exp < 2**53:
        expires_at = int(exp)  # NaN fails the comparison; huge values are ignored
    return PresentedToken(
        kind="access",  # Tokenry's JWTs are access tokens; refresh tokens are opaque
        jti=jti,
        client_id=_str(claims.get("client_id")),
        subject=_str(claims.get("sub")),
        gid=_str(claims.get("gid")),
        expires_at=expires_at,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
