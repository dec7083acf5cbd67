"""The client registry's domain model (RFC 6749 §2)."""

from __future__ import annotations

from dataclasses import dataclass, field

ADMIN_SCOPE = "tokenry:admin"
INTROSPECT_SCOPE = "tokenry:introspect"
RESERVED_SCOPES = frozenset({ADMIN_SCOPE, INTROSPECT_SCOPE})

CLIENT_CREDENTIALS = "client_credentials"

# Global maxima (SPEC §2); per-client lifetimes may only be shorter.
MAX_ACCESS_TOKEN_TTL = 3600
DEFAULT_ACCESS_TOKEN_TTL = 600


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    secret_hash: str | None
    pepper_id: str | None
    grant_types: frozenset[str]
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    token_format: str = "jwt"
    access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    def __post_init__(self) -> None:
        if not 0 < self.access_token_ttl <= MAX_ACCESS_TOKEN_TTL:
            raise ValueError(
                f"access_token_ttl must be in 1..{MAX_ACCESS_TOKEN_TTL} seconds (SPEC §2 maximum)"
            )
