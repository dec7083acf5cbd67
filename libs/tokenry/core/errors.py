"""OAuth errors raised by domain code; adapters map them to gRPC status or HTTP JSON.

Every exception Tokenry defines derives from :class:`TokenryError`, so a caller can catch
them all at once. ``tokenry.jose.errors`` holds the token-validation branch::

    TokenryError
    ├── OAuthError                  (below)
    └── VerificationError           tokenry.jose.errors: a bearer token was not accepted

::

    OAuthError                      error code (RFC 6749 §5.2) + safe description
    ├── InvalidRequest              invalid_request
    ├── InvalidClient               invalid_client        (authentication failed)
    ├── InvalidGrant                invalid_grant
    ├── UnauthorizedClient          unauthorized_client   (grant not allowed for this client)
    ├── UnsupportedGrantType        unsupported_grant_type
    ├── InvalidScope                invalid_scope
    ├── InvalidTarget               invalid_target        (RFC 8707 §2)
    ├── InsufficientScope           insufficient_scope    (RFC 6750 §3.1: not allowed)
    ├── NotFound                    not_found             (admin lookups)
    ├── TemporarilyUnavailable      temporarily_unavailable
    └── ServerError                 server_error

Descriptions are shown to callers: they never contain a token, a secret or key material.
"""

from __future__ import annotations

from typing import ClassVar


class TokenryError(Exception):
    """The root of every exception Tokenry defines."""


class OAuthError(TokenryError):
    error: ClassVar[str] = "server_error"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    error = "invalid_client"


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidTarget(OAuthError):
    error = "invalid_target"


class InsufficientScope(OAuthError):
    error = "insufficient_scope"


class NotFound(OAuthError):
    error = "not_found"


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"


class ServerError(OAuthError):
    error = "server_error"
