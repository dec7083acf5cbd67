"""JWT access-token claims (RFC 9068 §2.2), built as plain data with ``now`` passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCESS_TOKEN_TYPE_URN = "urn:ietf:params:oauth:token-type:access_token"  # RFC 8693 §3
REFRESH_TOKEN_TYPE_URN = "urn:ietf:params:oauth:token-type:refresh_token"  # RFC 8693 §3
ID_TOKEN_TYPE_URN = "urn:ietf:params:oauth:token-type:id_token"  # RFC 8693 §3
JWT_TYPE_URN = "urn:ietf:params:oauth:token-type:jwt"  # RFC 8693 §3


@dataclass(frozen=True, slots=True)
class AccessToken:
    issuer: str
    subject: str
    client_id: str
    audiences: tuple[str, ...]
    scopes: tuple[str, ...]
    issued_at: int
    expires_at: int
    jti: str
    gid: str
    # RFC 8693 §4.1: the acting party (token exchange), nested for a chain of delegations.
    act: dict[str, Any] | None = field(default=None, compare=False)
    # RFC 8705 §3.1: the confirmation of a certificate-bound token ({"x5t#S256": ...}).
    cnf: dict[str, str] | None = field(default=None, compare=False)

    def claims(self) -> dict[str, Any]:
        # RFC 9068 §2.2: aud may be a single string; an array only when there are several.
        aud: str | list[str] = (
            self.audiences[0] if len(self.audiences) == 1 else list(self.audiences)
        )
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": aud,
            "exp": self.expires_at,
            "iat": self.issued_at,
            "jti": self.jti,
            "client_id": self.client_id,
            "scope": " ".join(self.scopes),
            "gid": self.gid,
        }
        if self.act is not None:
            claims["act"] = self.act
        if self.cnf is not None:
            claims["cnf"] = self.cnf
        return claims


def new_access_token(
    *,
    issuer: str,
    subject: str,
    client_id: str,
    audiences: tuple[str, ...],
    scopes: tuple[str, ...],
    now: float,
    ttl: int,
    jti: str,
    gid: str,
    act: dict[str, Any] | None = None,
    not_after: int | None = None,
    cnf: dict[str, str] | None = None,
) -> AccessToken:
    # iat is whole seconds on the issuer clock: subject/client watermarks compare against it
    # (docs/spec.md §4), so it must never be rounded up.
    issued_at = int(now)
    expires_at = issued_at + ttl
    if not_after is not None:
        # RFC 8693 §2.2: an exchanged token never outlives its subject token.
        expires_at = min(expires_at, not_after)
    return AccessToken(
        issuer=issuer,
        subject=subject,
        client_id=client_id,
        audiences=audiences,
        scopes=scopes,
        issued_at=issued_at,
        expires_at=expires_at,
        jti=jti,
        gid=gid,
        act=act,
        cnf=cnf,
    )
