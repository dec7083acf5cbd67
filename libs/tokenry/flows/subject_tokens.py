"""Subject tokens for RFC 8693 token exchange: verified, never trusted on their face.

A JWT is verified with the strict checks of :mod:`tokenry.jose` against the keys the key
rotator publishes (read from the store through one :class:`tokenry.jose.JwksCache`, as the
issuer holds no event-fed state for its own decisions, docs/spec.md §4.5); an opaque token (the
phantom-token pattern) is looked up by its hash (``tokenry.store.ports.TokenReader``). Either
way the revocations are checked in the durable record (``RevocationLookup``).

The subject token must have been meant for the client exchanging it: its ``aud`` must contain
the client's id or one of the client's registered audiences (RFC 8693 §2.1: the token
"represents the identity of the party on behalf of whom the request is being made" to this
client; RFC 8725 §3.9: a token for one audience is never accepted by another). Who may exchange
whose tokens (``token_exchange_from``) is decided first, as before, so an exchange a client may
never make answers ``unauthorized_client`` whatever the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tokenry.core import opaque
from tokenry.core.clients import Client
from tokenry.core.clock import Clock
from tokenry.core.errors import InvalidGrant, UnauthorizedClient
from tokenry.jose import (
    Decoder,
    JwksCache,
    JwsParts,
    VerificationError,
    VerificationKey,
    b64url_decode,
    loads_strict,
)
from tokenry.store.jwks_source import PublishedKeyReader as KeySource
from tokenry.store.jwks_source import StoreJwksSource
from tokenry.store.ports import RevocationLookup, TokenReader
from tokenry.store.records import ACCESS

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
    """The published JWKS (pending, active, retiring keys): one :class:`tokenry.jose.JwksCache`
    over PostgreSQL, refetched after ``KEYS_TTL`` s, and once for an unknown kid — single-flight
    and at most every ``MIN_REFRESH_INTERVAL`` s, so a burst of unknown kids is one query."""

    def __init__(self, store: KeySource, clock: Clock) -> None:
        self._cache = JwksCache(
            StoreJwksSource(store),
            clock,
            min_refresh_interval=MIN_REFRESH_INTERVAL,
            max_age=KEYS_TTL,
        )

    async def get(self, kid: str) -> VerificationKey | None:
        return await self._cache.get(kid)


class VerificationKeys(Protocol):
    """The published verification keys by kid (:class:`PublishedKeys`)."""

    async def get(self, kid: str) -> VerificationKey | None:
        """The key named ``kid``, or None when it is not published (after one refresh)."""
        ...


def accepted_audiences(client: Client) -> frozenset[str]:
    """What a subject token's ``aud`` may name for ``client`` to exchange it: the client's id
    or one of its registered audiences (RFC 8693 §2.1, RFC 8725 §3.9)."""
    return frozenset((client.client_id, *client.audiences))


class SubjectTokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        keys: VerificationKeys,
        checks: RevocationLookup,
        tokens: TokenReader,
        clock: Clock,
    ) -> None:
        self._issuer = issuer
        self._keys = keys
        self._checks = checks
        self._tokens = tokens
        self._clock = clock
        self._decoder = Decoder()

    async def verify(self, token: str, client: Client) -> SubjectToken:
        """The subject token ``client`` presents, verified for that client.

        Raises:
            UnauthorizedClient: the client may not exchange tokens issued to the token's client.
            InvalidGrant: the token is not valid, active, unrevoked and meant for the client.
        """
        if opaque.looks_opaque(token):
            subject = await self._opaque(token, client)
        else:
            subject = await self._jwt(token, client)
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

    async def _jwt(self, token: str, client: Client) -> SubjectToken:
        now = self._clock.now()
        try:
            parts = self._decoder.parse(token)
            key = await self._keys.get(parts.kid)
            if key is None:
                raise InvalidGrant("subject_token is not valid (unknown_kid)")
            claims = self._decoder.decode(
                token,
                {parts.kid: key},
                issuer=self._issuer,
                audience=accepted_audiences(client),
                now=now,
            )
        except VerificationError as exc:
            if exc.reason == "bad_audience":
                # Raised only once the signature verified, so the payload is authentic: who may
                # exchange whose tokens is answered first, as for a token meant for the client.
                _may_exchange_from(client, _payload(parts).get("client_id"))
            raise InvalidGrant(f"subject_token is not valid ({exc.reason})") from None
        aud = claims.get("aud")
        audiences = (
            (aud,) if isinstance(aud, str) else tuple(a for a in aud or () if isinstance(a, str))
        )
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

    async def _opaque(self, token: str, client: Client) -> SubjectToken:
        if opaque.kind_of(token) != opaque.ACCESS:
            raise InvalidGrant("subject_token is not a valid access token")
        row = await self._tokens.get_token(opaque.token_hash(token))
        now = self._clock.now()
        if row is None or row.kind != ACCESS or row.revoked or now >= row.expires_at:
            raise InvalidGrant("subject_token is not active")
        grant = await self._tokens.get_grant(row.gid)
        if grant is not None and grant.revoked:
            raise InvalidGrant("subject_token is not active")
        if accepted_audiences(client).isdisjoint(row.audiences):
            _may_exchange_from(client, row.client_id)
            raise InvalidGrant("subject_token is not valid (bad_audience)")
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


def _may_exchange_from(client: Client, subject_client_id: object) -> None:
    """The who-may-exchange-for-whom rule of ``tokenry.core.token_exchange.decide``, applied
    before the audience so that its answer does not depend on the token's audience."""
    if not isinstance(subject_client_id, str) or not client.may_exchange_from(subject_client_id):
        raise UnauthorizedClient("the client may not exchange tokens issued to that client")


def _payload(parts: JwsParts) -> dict[str, Any]:
    """The payload of a token whose signature verified (see the caller)."""
    payload = loads_strict(b64url_decode(parts.payload_segment))
    return payload if isinstance(payload, dict) else {}
