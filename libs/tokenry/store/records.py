"""The rows the token flows read and write, as plain values (no driver types).

Shared by the storage ports (:mod:`tokenry.store.ports`), the PostgreSQL adapters and the
in-memory adapter (:mod:`tokenry.store.memory`). Tokens, codes and login challenges are known
only by their SHA-256 (docs/spec.md §3; fosite keys its storage by the token's *signature*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenry.core.errors import TemporarilyUnavailable

ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A grant family (``gid``): one authorization, refreshed or exchanged."""

    gid: str
    client_id: str
    subject: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    auth_time: int
    nonce: str
    created_at: int
    expires_at: int
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class AuthRequestRecord:
    """An authorization request parked behind its login challenge (RFC 6749 §4.1.1)."""

    challenge_hash: bytes
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    state: str
    code_challenge: str
    nonce: str
    expires_at: int
    #: OIDC Core §3.1.2.1: the request's max_age, checked against auth_time at completion
    max_age: int | None = None
    #: prompt=login: the sign-in must happen at or after this unix time (the request's arrival)
    login_after: int | None = None


@dataclass(frozen=True, slots=True)
class AuthCodeRecord:
    """An authorization code (RFC 6749 §4.1.2); ``used_at`` stays set once redeemed."""

    code_hash: bytes
    gid: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    subject: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    nonce: str
    auth_time: int
    expires_at: int
    used_at: int | None = None


@dataclass(frozen=True, slots=True)
class OpaqueTokenRecord:
    """An opaque access or refresh token, by hash."""

    token_hash: bytes
    kind: str
    jti: str
    gid: str
    client_id: str
    subject: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    issued_at: int
    expires_at: int
    act: dict[str, Any] | None = None
    # Refresh rotation state (None until spent).
    used_at: int | None = None
    successor_hash: bytes | None = None
    minted: dict[str, Any] | None = None
    revoked: bool = False

    def __repr__(self) -> str:
        return f"OpaqueTokenRecord(kind={self.kind!r}, jti={self.jti!r}, gid={self.gid!r})"


@dataclass(frozen=True, slots=True)
class Watermark:
    """A subject or client revocation watermark (docs/spec.md §4: ``iat < not_before`` is
    revoked)."""

    kind: str  # "subject" | "client"
    value: str
    not_before: int


#: Live login challenges one client may have pending (issue 13 item 8): the authorize RPC is
#: unauthenticated, so without a bound anyone could fill the table under a public client's id.
#: Expired ones stop counting at once and are deleted by the TTL sweep (:meth:`sweep`).
MAX_PENDING_REQUESTS_PER_CLIENT = 1000


def too_many_pending() -> TemporarilyUnavailable:
    return TemporarilyUnavailable("too many pending authorization requests for this client")
