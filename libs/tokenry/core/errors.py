"""OAuth errors raised by domain code; adapters map them to gRPC status or HTTP JSON.

Every exception Tokenry defines derives from :class:`TokenryError`, so a caller can catch
them all at once. Each package keeps its branch in its own ``errors.py``::

    TokenryError
    ├── OAuthError                  (below)
    ├── RedirectError               an authorization refusal sent to the verified redirect URI
    ├── KeyUnwrapError              a sealed key could not be opened (core.keywrap)
    ├── LifecycleError              a key lifecycle change not possible now (core.keylifecycle)
    │   ├── IllegalTransition, UnknownKey, NoActiveKey, SuccessorNotReady
    ├── VerificationError           tokenry.jose.errors: a bearer token was not accepted
    ├── BusError                    tokenry.bus.errors: undecodable events and snapshots
    ├── StoreError                  tokenry.store.errors: duplicates, lost leases
    ├── FeedError                   the verifier's event feed (tokenry.verifier, private)
    ├── ConfigError, TelemetryError tokenry.servicekit: bad settings (also ValueError)
    └── CliError, AlreadyRunning    the CLI's one-line errors; a second `tokenry dev`

tests/unit/test_names.py keeps every public exception of the library under this root.

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

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from tokenry.core.keylifecycle import KeySet, KeyState


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


class RedirectError(TokenryError):
    """A refusal reported to the client through its verified redirect URI."""

    def __init__(self, redirect_uri: str, state: str, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.redirect_uri = redirect_uri
        self.state = state
        self.error = error
        self.description = description


class KeyUnwrapError(TokenryError):
    """A sealed key could not be opened (wrong KEK, wrong kid, or tampered data)."""


class LifecycleError(TokenryError):
    """A requested lifecycle change is not possible now; the message is safe to show."""


class IllegalTransition(LifecycleError):
    def __init__(self, kid: str, src: KeyState, dst: KeyState) -> None:
        super().__init__(f"key {kid} cannot go from {src} to {dst}")
        self.kid, self.src, self.dst = kid, src, dst


class UnknownKey(LifecycleError):
    def __init__(self, kid: str) -> None:
        super().__init__(f"no signing key with kid {kid!r}")
        self.kid = kid


class NoActiveKey(LifecycleError):
    def __init__(self, keyset: KeySet) -> None:
        super().__init__(f"no active key for {keyset}")
        self.keyset = keyset


class SuccessorNotReady(LifecycleError):
    """The pending successor has not been published for the whole publish lead yet."""

    def __init__(self, kid: str, ready_at: float) -> None:
        super().__init__(
            f"the successor {kid} may sign only once verifiers have had time to fetch it"
            f" (publish lead); rotate again after {ready_at:.0f} (unix time), or force it"
        )
        self.kid, self.ready_at = kid, ready_at
