"""The verifier's errors: the token-validation tree of :mod:`tokenry.jose.errors`, re-exported.

One tree serves the JOSE core, the verifier and the services (drawn in :mod:`tokenry.jose.errors`);
this module lets verifier users import it from the package they use.
"""

from tokenry.jose.errors import (
    REASONS,
    BadSignatureError,
    InvalidClaimsError,
    MalformedTokenError,
    RejectedHeaderError,
    RevokedError,
    TokenExpiredError,
    TokenryError,
    VerificationError,
    VerifierUnavailableError,
)

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
