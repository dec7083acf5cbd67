"""Subject tokens for RFC 8693 token exchange: verified, never trusted on their face.

A JWT is verified with the resource-server library's strict checks (``tokenry.verifier.jose``)
against the keys the key rotator publishes (read from PostgreSQL, as the issuer holds no event-
fed state for its own decisions, SPEC §4.5); an opaque token (the phantom-token pattern) is
looked up by its hash. Either way the revocations are checked in PostgreSQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import asyncpg

from tokenry.core import opaque
from tokenry.core.clock import Clock
from tokenry.core.errors import InvalidGrant
from tokenry.store import opaque_tokens
from tokenry.store.grants import GrantStore
from tokenry.store.keys import KeyStore
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.verifier.errors import VerificationError
from tokenry.verifier.jose import Decoder, check_claims, split_and_parse
from tokenry.verifier.keys import VerificationKey, parse_jwks

KEYS_TTL = 5.0
MIN_REFRESH_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class SubjectToken:
    """The verified facts of a subject token."""

    subject: str
    client_id: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    issued_at: int
    expires_at: int
    jti: str
    gid: str
    act: dict[str, Any] | None


class PublishedKeys:
    """The published JWKS (pending, active, retiring keys), cached briefly; one refresh on an
    unknown kid, rate-limited (pyjwt's PyJWKClient behaviour)."""

    def __init__(self, store: KeyStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._keys: dict[str, VerificationKey] = {}
        self._loaded = -math.inf

    async def get(self, kid: str) -> VerificationKey | None:
        age = self._clock.monotonic() - self._loaded
        if age > KEYS_TTL or (kid not in self._keys and age > MIN_REFRESH_INTERVAL):
            jwks, _seq = await self._store.published()
            self._keys = parse_jwks({"keys": jwks}).keys
            self._loaded = self._clock.monotonic()
        return self._keys.get(kid)


class SubjectTokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        keys: PublishedKeys,
        checks: RevocationChecks,
        grants: GrantStore,
        pool: asyncpg.Pool,
        clock: Clock,
    ) -> None:
        self._issuer = issuer
        self._keys = keys
        self._checks = checks
        self._grants = grants
        self._db = pool
        self._clock = clock
        self._decoder = Decoder()

    async def verify(self, token: str) -> SubjectToken:
        """Raises InvalidGrant for a token that is not valid, active and unrevoked."""
        if opaque.looks_opaque(token):
            subject = await self._opaque(token)
        else:
            subject = await self._jwt(token)
        kind = await self._checks.revoked_kind(
            jti=subject.jti,
            gid=subject.gid,
            subject=subject.subject,
            client_id=subject.client_id,
            issued_at=subject.issued_at,
        )
        if kind is not None:
            raise InvalidGrant("subject_token is revoked")
        return subject

    async def _jwt(self, token: str) -> SubjectToken:
        now = self._clock.now()
        try:
            parts = split_and_parse(token)
            key = await self._keys.get(parts.kid)
            if key is None:
                raise InvalidGrant("subject_token is not valid (unknown_kid)")
            claims = self._decoder.verify_signature(parts, key)
            aud = claims.get("aud")
            audiences = (
                (aud,)
                if isinstance(aud, str)
                else tuple(a for a in aud or () if isinstance(a, str))
            )
            # The audience check of the library needs one expected value; the exchange policy
            # (who may exchange whose tokens) is the client's, checked by the caller.
            check_claims(
                claims, issuer=self._issuer, audience=audiences[0] if audiences else "", now=now
            )
        except VerificationError as exc:
            raise InvalidGrant(f"subject_token is not valid ({exc.reason})") from None
        sub, client_id, gid = claims.get("sub"), claims.get("client_id"), claims.get("gid")
        scope = claims.get("scope", "")
        act = claims.get("act")
        if not all(isinstance(v, str) and v for v in (sub, client_id, gid)) or not isinstance(
            scope, str
        ):
            raise InvalidGrant("subject_token lacks sub, client_id or gid")
        if act is not None and not isinstance(act, dict):
            raise InvalidGrant("subject_token act must be an object")
        return SubjectToken(
            subject=str(sub),
            client_id=str(client_id),
            scopes=tuple(scope.split()),
            audiences=audiences,
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            jti=str(claims["jti"]),
            gid=str(gid),
            act=act,
        )

    async def _opaque(self, token: str) -> SubjectToken:
        if opaque.kind_of(token) != opaque.ACCESS:
            raise InvalidGrant("subject_token is not a valid access token")
        row = await opaque_tokens.get(self._db, opaque.token_hash(token))
        now = self._clock.now()
        if row is None or row.kind != opaque_tokens.ACCESS or row.revoked or now >= row.expires_at:
            raise InvalidGrant("subject_token is not active")
        grant = await self._grants.get(self._db, row.gid)
        if grant is not None and grant.revoked:
            raise InvalidGrant("subject_token is not active")
        return SubjectToken(
            subject=row.subject,
            client_id=row.client_id,
            scopes=row.scopes,
            audiences=row.audiences,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            jti=row.jti,
            gid=row.gid,
            act=row.act,
        )
