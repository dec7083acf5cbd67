"""Token-validation errors: JOSE decoding, claim checks and the resource-server verifier.

One tree for every place that validates a Tokenry token (``tokenry.jose``, ``tokenry.verifier``,
the services' own checks); ``tokenry.verifier.errors`` re-exports it. Every failure to accept a
bearer token is a :class:`VerificationError`. Each carries a stable, machine-readable ``reason``
(used for metrics labels, gRPC status details and tests) and a human ``description``. Neither
ever contains the token, a claim value taken from it, or key
material (docs/spec.md §7): descriptions are fixed texts chosen by this package.

Exception tree (``TokenryError`` is the root of every Tokenry exception, ``tokenry.core.errors``)::

    TokenryError
    └── VerificationError          reason, description
        ├── MalformedTokenError        malformed, too_large, bad_base64, duplicate_member
        ├── RejectedHeaderError        alg_not_allowed, alg_mismatch, missing_kid, unknown_kid,
        │                              forbidden_header, unknown_crit, bad_typ
        ├── BadSignatureError          bad_signature
        ├── InvalidClaimsError         missing_claim, bad_claim_type, bad_issuer, bad_audience,
        │   │                          not_yet_valid, iat_in_future
        │   └── TokenExpiredError      expired
        ├── RevokedError               revoked, key_revoked, inactive
        └── VerifierUnavailableError   stale, no_keys, introspection_failed, timeout

``VerifierUnavailableError`` is about the verifier's own state (it cannot prove it is current,
or it holds no keys), not about the token: the server interceptor maps it to UNAVAILABLE, every
other subclass to UNAUTHENTICATED.
"""

from __future__ import annotations

from typing import Final

from tokenry.core.errors import TokenryError

__all__ = [
    "REASONS",
    "BadSignatureError",
    "InvalidClaimsError",
    "MalformedTokenError",
    "RejectedHeaderError",
    "RevokedError",
    "TokenExpiredError",
    "TokenryError",
    "VerificationError",
    "VerifierUnavailableError",
]

#: Every reason code this package emits, grouped by the subclass that carries it.
REASONS: Final[frozenset[str]] = frozenset(
    {
        # MalformedTokenError
        "malformed",
        "too_large",
        "bad_base64",
        "duplicate_member",
        # RejectedHeaderError
        "alg_not_allowed",
        "alg_mismatch",
        "missing_kid",
        "unknown_kid",
        "forbidden_header",
        "unknown_crit",
        "bad_typ",
        # BadSignatureError
        "bad_signature",
        # InvalidClaimsError / TokenExpiredError
        "expired",
        "not_yet_valid",
        "iat_in_future",
        "missing_claim",
        "bad_claim_type",
        "bad_issuer",
        "bad_audience",
        # RevokedError
        "revoked",
        "key_revoked",
        "inactive",  # the introspection fallback (docs/spec.md §4.4) answered active: false
        # VerifierUnavailableError
        "stale",
        "no_keys",
        "introspection_failed",  # the fallback introspection could not be completed
        "timeout",  # a sync caller waited too long for the verifier's event loop
    }
)


class VerificationError(TokenryError):
    """A bearer token was not accepted.

    Attributes:
        reason: stable machine code, one of :data:`REASONS`.
        description: human text; never contains the token, its claims or key material.
    """

    __slots__ = ("description", "reason")

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(reason, description)
        self.reason = reason
        self.description = description

    def __str__(self) -> str:
        return f"{self.reason}: {self.description}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.description!r})"


class MalformedTokenError(VerificationError):
    """The token is not a well-formed JWS compact serialization of a JSON header and payload."""

    __slots__ = ()


class RejectedHeaderError(VerificationError):
    """The JOSE header asks for something this verifier refuses (RFC 8725 §3.1, §3.10)."""

    __slots__ = ()


class BadSignatureError(VerificationError):
    """The signature does not verify under the key the header names."""

    __slots__ = ()


class InvalidClaimsError(VerificationError):
    """The signature is good but the claims are missing, mistyped or not for us."""

    __slots__ = ()


class TokenExpiredError(InvalidClaimsError):
    """``now >= exp + leeway`` (RFC 7519 §4.1.4)."""

    __slots__ = ()


class RevokedError(VerificationError):
    """The token, its grant, subject, client or signing key has been revoked (docs/spec.md §4)."""

    __slots__ = ()


class VerifierUnavailableError(VerificationError):
    """The verifier cannot decide safely: its state is stale or it holds no keys
    (docs/spec.md §4.4)."""

    __slots__ = ()
