"""What a presented token is, for RFC 7009 revocation: whose it is and what to revoke (the
PostgreSQL and JWKS adapters of :class:`tokenry.flows.revocation.TokenFinder`; moved here from
services/revocation/tokens.py so the gateway runs them too).

A JWT is trusted only after its signature verifies against the published JWKS (expiry
ignored: a client may revoke its own expired token, RFC 7009 §2.1 and docs/spec.md §3); anything
that does not verify is an invalid token, answered with success and no effect (RFC 7009 §2.2).
Opaque tokens (``tkr_at_``/``tkr_rt_``) are resolved through the :class:`OpaqueTokens` port:
:class:`StoreOpaqueTokens` looks them up in PostgreSQL by their SHA-256.
"""

from __future__ import annotations

__all__ = ["JwtTokens", "StoreOpaqueTokens"]

from typing import Any

import asyncpg

from tokenry.core import opaque
from tokenry.core.clock import Clock
from tokenry.core.renames import renamed
from tokenry.flows.revocation import PresentedToken
from tokenry.jose import Decoder, JwksCache, VerificationError
from tokenry.jose._rfc7009 import owned_token_claims
from tokenry.store import opaque_tokens
from tokenry.store.jwks_source import PublishedKeyReader, StoreJwksSource


class StoreOpaqueTokens:
    """Opaque tokens in PostgreSQL, looked up by SHA-256 (docs/spec.md §3). The checksum is checked
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


class JwtTokens:
    """Verifies a JWT's signature against the published JWKS — expiry and audience ignored,
    RFC 7009 §2.1 — and returns its revocation facts.

    The keys come from one :class:`tokenry.jose.JwksCache` over PostgreSQL
    (:class:`tokenry.store.jwks_source.StoreJwksSource`): refetched after ``ttl`` seconds, and
    once (single-flight, at most every ``min_refresh_interval`` s) for an unknown kid.
    """

    def __init__(
        self,
        keys: PublishedKeyReader,
        clock: Clock,
        *,
        ttl: float = 30.0,
        min_refresh_interval: float = 1.0,
    ) -> None:
        self._keys = JwksCache(
            StoreJwksSource(keys), clock, min_refresh_interval=min_refresh_interval, max_age=ttl
        )
        self._decoder = Decoder()

    async def find(self, token: str) -> PresentedToken | None:
        claims = await _owned_claims(self._decoder, self._keys, token)
        return None if claims is None else _facts(claims)


async def _owned_claims(decoder: Decoder, keys: JwksCache, token: str) -> dict[str, Any] | None:
    """The claims of a JWT signed by a published key, NOT otherwise validated: a client may
    revoke its own expired token (RFC 7009 §2.1), and revocation names no audience. None for
    anything that does not verify (RFC 7009 §2.2: answered with success and no effect)."""
    try:
        parts = decoder.parse(token)
    except VerificationError:
        return None
    key = await keys.get(parts.kid)
    if key is None:
        return None  # not signed by a key of ours (or one retired/revoked since)
    try:
        return owned_token_claims(decoder, parts, key)
    except VerificationError:
        return None


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


# Its own copy of the key-reading port until issue 12 item 9: the one port is
# ``tokenry.store.jwks_source.PublishedKeyReader``.
__getattr__ = renamed(
    __name__,
    {"PublishedKeys": ("tokenry.store.jwks_source.PublishedKeyReader", PublishedKeyReader)},
)
