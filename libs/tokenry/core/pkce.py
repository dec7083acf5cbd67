"""PKCE, RFC 7636, as profiled by OAuth 2.1 and docs/spec.md §3: mandatory, ``S256`` only.

``plain`` offers no protection against an attacker who can read the authorization request, and
a missing challenge means no protection at all: both are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from tokenry.core import b64url
from tokenry.core.errors import InvalidGrant, InvalidRequest

S256: Final = "S256"
# RFC 7636 §4.1: code-verifier = 43*128unreserved
# unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# RFC 7636 §4.2: for S256 the challenge is BASE64URL(SHA256(verifier)), 32 bytes = 43 chars.
_S256_CHALLENGE: Final = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def s256_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return b64url.encode(digest)


def check_challenge(challenge: str, method: str) -> None:
    """Validate the challenge of an authorization request (RFC 7636 §4.3, §4.4.1).

    Raises:
        InvalidRequest: missing challenge, a method other than S256 (``plain`` included; an
            absent method means ``plain`` per §4.3), or a challenge that is not 43 base64url
            characters.
    """
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE, RFC 7636; OAuth 2.1)")
    if method != S256:
        raise InvalidRequest("code_challenge_method must be S256 (plain is not supported)")
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters (RFC 7636 §4.2)")


def verify(verifier: str, challenge: str) -> None:
    """Check a token request's code_verifier against the stored challenge (RFC 7636 §4.6).

    Raises:
        InvalidRequest: the verifier is missing or not 43-128 unreserved characters.
        InvalidGrant: the verifier does not match.
    """
    if not verifier:
        raise InvalidRequest("code_verifier is required (PKCE, RFC 7636 §4.5)")
    if not _VERIFIER.fullmatch(verifier):
        raise InvalidRequest("code_verifier must be 43-128 unreserved characters (RFC 7636 §4.1)")
    if not hmac.compare_digest(s256_challenge(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
