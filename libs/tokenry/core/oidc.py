"""OpenID Connect Core 1.0 ID tokens, as plain data with ``now`` passed in.

Issued when the granted scope contains ``openid`` (OIDC Core §3.1.2.1): ``iss sub aud exp iat
auth_time nonce at_hash`` (§2, §3.1.3.6), signed RS256 by default (§15.1) or ES256 on request.
The JOSE ``typ`` is ``JWT`` so that an ID token can never pass as an RFC 9068 access token
(whose verifiers require ``at+jwt``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from tokenry.core import b64url

OPENID_SCOPE: Final = "openid"
ID_TOKEN_TYP: Final = "JWT"
MAX_NONCE_LENGTH: Final = 512


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of the hash of the access token's ASCII.

    RS256 and ES256 both hash with SHA-256, so the left 128 bits of SHA-256.
    """
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url.encode(digest[:16])


@dataclass(frozen=True, slots=True)
class IdToken:
    issuer: str
    subject: str
    client_id: str
    issued_at: int
    expires_at: int
    auth_time: int
    nonce: str
    access_token_hash: str

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject,
            # OIDC Core §2: aud contains the client_id; a single audience needs no azp.
            "aud": self.client_id,
            "exp": self.expires_at,
            "iat": self.issued_at,
            "auth_time": self.auth_time,
            "at_hash": self.access_token_hash,
        }
        if self.nonce:
            # §3.1.2.1: passed through unmodified from the authentication request.
            claims["nonce"] = self.nonce
        return claims


def new_id_token(
    *,
    issuer: str,
    subject: str,
    client_id: str,
    now: float,
    ttl: int,
    auth_time: int,
    nonce: str,
    access_token: str,
) -> IdToken:
    issued_at = int(now)
    return IdToken(
        issuer=issuer,
        subject=subject,
        client_id=client_id,
        issued_at=issued_at,
        expires_at=issued_at + ttl,
        auth_time=auth_time,
        nonce=nonce,
        access_token_hash=at_hash(access_token),
    )
