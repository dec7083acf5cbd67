"""Minting: JWT (RFC 9068) or opaque access tokens, refresh tokens and OIDC ID tokens.

Signing uses the key objects loaded once (docs/design.md §7); an opaque token leaves only its
SHA-256 behind (docs/spec.md §3).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from tokenry.core import opaque
from tokenry.core.jws import JwsSigner
from tokenry.core.oidc import ID_TOKEN_TYP, new_id_token
from tokenry.core.signing import ACCESS_TOKEN_TYP, SigningKey
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, AccessToken
from tokenry.store.records import ACCESS, OpaqueTokenRecord

JWT = "jwt"
OPAQUE = "opaque"
MAX_SIGNERS = 16


class SigningKeys(Protocol):
    """``tokenry.store.active_key.ActiveKeys``: the active key per (use, alg)."""

    def current(self, use: str = "access", alg: str | None = None) -> SigningKey:
        """The active key; raises TemporarilyUnavailable when there is none."""
        ...


class TokenResult(NamedTuple):
    """RFC 6749 §5.1 (+ refresh_token, id_token)."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    issued_token_type: str = ACCESS_TOKEN_TYPE_URN
    refresh_token: str = ""
    id_token: str = ""

    def __repr__(self) -> str:  # never print a token
        return f"TokenResult(expires_in={self.expires_in}, scope={self.scope!r})"


def opaque_record(token: AccessToken, value: str) -> OpaqueTokenRecord:
    return OpaqueTokenRecord(
        token_hash=opaque.token_hash(value),
        kind=ACCESS,
        jti=token.jti,
        gid=token.gid,
        client_id=token.client_id,
        subject=token.subject,
        scopes=token.scopes,
        audiences=token.audiences,
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        act=token.act,
    )


class Minter:
    def __init__(self, *, issuer: str, keys: SigningKeys) -> None:
        self._issuer = issuer
        self._keys = keys
        # One lean signer per (key object, typ): header encoded once (core.jws). Keyed on the
        # SigningKey object itself, so a rotated or re-read key never reuses another's signer.
        self._signers: dict[tuple[int, str], tuple[SigningKey, JwsSigner]] = {}

    def _sign(self, key: SigningKey, typ: str, claims: dict[str, Any]) -> str:
        slot = (id(key), typ)
        held = self._signers.get(slot)
        if held is None or held[0] is not key:
            if len(self._signers) >= MAX_SIGNERS:
                self._signers.clear()
            held = (key, JwsSigner(key, typ))
            self._signers[slot] = held
        return held[1].sign(claims)

    @property
    def issuer(self) -> str:
        return self._issuer

    def check_ready(self, fmt: str) -> None:
        """Fail before any write when the key a JWT needs is missing."""
        if fmt == JWT:
            self._keys.current()

    def sign_access(self, token: AccessToken) -> str:
        return self._sign(self._keys.current(), ACCESS_TOKEN_TYP, token.claims())

    def sign_id(
        self,
        *,
        alg: str,
        subject: str,
        client_id: str,
        now: float,
        ttl: int,
        auth_time: int,
        nonce: str,
        access_token: str,
    ) -> str:
        token = new_id_token(
            issuer=self._issuer,
            subject=subject,
            client_id=client_id,
            now=now,
            ttl=ttl,
            auth_time=auth_time,
            nonce=nonce,
            access_token=access_token,
        )
        return self._sign(self._keys.current("id", alg), ID_TOKEN_TYP, token.claims())

    def check_id_ready(self, alg: str) -> None:
        """ID tokens are signed with keys of use ``id`` (RS256 by default, OIDC Core §15.1)."""
        self._keys.current("id", alg)
