"""A verifier for a non-Tokenry issuer: keys from any HTTPS JWKS URL, no revocation feed.

Such an issuer publishes no Tokenry events, so nothing is revoked before ``exp`` except by
removing the key from its JWKS: the set is refetched every ``refresh_interval`` seconds (and on
an unknown ``kid``, rate limited), and tokens — cached ones included — stop verifying once
their key is gone. Every other rule (docs/spec.md §3, RFC 8725) is the same as for Tokenry tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from tokenry.core.clock import Clock, SystemClock
from tokenry.jose import JwksCache
from tokenry.verifier._jwks import HttpsJwksSource
from tokenry.verifier._verifier import NoRevocationFeed, Verifier, VerifierConfig

__all__ = ["DEFAULT_JWKS_REFRESH", "JwksVerifierRuntime", "start_jwks_verifier"]

DEFAULT_JWKS_REFRESH = 300.0


@dataclass
class JwksVerifierRuntime:
    """A running HTTPS-JWKS verifier; ``await runtime.close()`` when done."""

    verifier: Verifier
    jwks: JwksCache
    _refresher: asyncio.Task[None] = field(repr=False)

    async def close(self) -> None:
        self._refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._refresher
        await self.jwks.close()


async def start_jwks_verifier(
    *,
    issuer: str,
    audience: str,
    jwks_url: str,
    refresh_interval: float = DEFAULT_JWKS_REFRESH,
    config: VerifierConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    allow_http: bool = False,
    clock: Clock | None = None,
) -> JwksVerifierRuntime:
    """Start a verifier for ``audience`` that trusts ``issuer``'s keys at ``jwks_url``.

    Returns after the first fetch; if it failed, the verifier answers ``no_keys`` (UNAVAILABLE)
    until a later fetch succeeds (on the next token, rate limited, or the periodic refresh).

    Args:
        config: overrides ``issuer``/``audience`` and sets limits (leeway, cache size…).
        ssl_context, allow_http: see :class:`~.jwks.HttpsJwksSource`.
    """
    clock = clock or SystemClock()
    config = config or VerifierConfig(issuer=issuer, audience=audience)
    source = HttpsJwksSource(jwks_url, ssl_context=ssl_context, allow_http=allow_http)
    jwks = JwksCache(source, clock)
    await jwks.refresh(force=True)
    verifier = Verifier(config, jwks, NoRevocationFeed(), clock)
    refresher = asyncio.create_task(jwks.run_periodic(refresh_interval), name="jwks-refresh")
    return JwksVerifierRuntime(verifier, jwks, refresher)
