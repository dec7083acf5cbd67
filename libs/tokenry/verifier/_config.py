"""What a verifier is configured with and what it reads: its config, the stale policy, and the
revocation-state ports (:class:`RevocationView`; :class:`NoRevocationFeed` for issuers without
events)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from tokenry import jose
from tokenry.core.revocations import RevocationSet

__all__ = [
    "DEFAULT_BLOCKING_TIMEOUT",
    "Claims",
    "NoRevocationFeed",
    "RevocationRule",
    "RevocationView",
    "StalePolicy",
    "VerifierConfig",
]

Claims = Mapping[str, Any]
DEFAULT_BLOCKING_TIMEOUT: Final = 10.0


class StalePolicy(StrEnum):
    """What to do while the revocation state cannot be proven current (docs/spec.md §4.4)."""

    FAIL_CLOSED = "fail_closed"
    """Refuse every token with ``stale`` (UNAVAILABLE). The default."""
    INTROSPECT = "introspect"
    """Verify locally, then ask the introspector per request whether the token is active."""


class RevocationRule(Protocol):
    """The one Python revocation rule (``tokenry.core.revocations.RevocationSet.check``)."""

    def check(
        self, jti: str, gid: str | None, sub: str | None, client_id: str | None, iat: float
    ) -> str | None:
        """The kind of revocation that applies, or None."""
        ...


class RevocationView(Protocol):
    """What the verifier reads from its revocation state (``state.RevocationState``)."""

    @property
    def revocations(self) -> RevocationRule: ...

    def is_stale(self) -> bool: ...

    def proof_age(self) -> float: ...


class NoRevocationFeed:
    """The revocation state of a verifier whose issuer publishes no Tokenry events.

    For a non-Tokenry issuer (an HTTPS JWKS URL): nothing can be revoked before ``exp`` except
    by removing the key from the JWKS, and there is nothing to be stale about.
    """

    __slots__ = ("revocations",)

    def __init__(self) -> None:
        self.revocations = RevocationSet()

    def is_stale(self) -> bool:
        return False

    def proof_age(self) -> float:
        return 0.0


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    """How a verifier judges tokens.

    Args:
        issuer: the expected ``iss``, compared exactly (RFC 9068 §4).
        audience: this resource server's identifier; ``aud`` must contain it.
        leeway: clock-skew allowance for ``exp``/``nbf``, 0 to ``jose.MAX_LEEWAY`` s.
        max_clock_skew: the skew issuers are held to (``TOKENRY_MAX_CLOCK_SKEW``); ``iat`` may
            be at most ``min(leeway, max_clock_skew)`` ahead, so that no token stamped in the
            future outlives a subject or client revocation (docs/events.md).
        max_size: longer tokens are refused before parsing (docs/spec.md §3: 8 KiB).
        cache_size: verified tokens kept (bounded memory; see ``cache.TokenCache``).
        accepted_typ: accepted JOSE ``typ`` values, compared case-insensitively.
    """

    issuer: str
    audience: str
    leeway: float = jose.DEFAULT_LEEWAY
    max_size: int = jose.DEFAULT_MAX_SIZE
    cache_size: int = 10_000
    accepted_typ: frozenset[str] = jose.ACCEPTED_TYP
    max_clock_skew: float = jose.DEFAULT_MAX_CLOCK_SKEW

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("issuer is required")
        if not self.audience:
            raise ValueError("audience is required")
        if not 0.0 <= self.leeway <= jose.MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {jose.MAX_LEEWAY} seconds")
        if self.max_size < 1 or self.cache_size < 1:
            raise ValueError("max_size and cache_size must be positive")
        if self.max_clock_skew < 0:
            raise ValueError("max_clock_skew must be >= 0 seconds")
