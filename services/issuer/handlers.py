"""Issuer use cases: authenticate the client, run the grant, mint the token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from tokenry.core.clientauth import ClientCredentials, ClientLookup, authenticate
from tokenry.core.client_secrets import Pepper
from tokenry.core.clients import CLIENT_CREDENTIALS
from tokenry.core.clock import Clock
from tokenry.core.errors import TemporarilyUnavailable, UnauthorizedClient, UnsupportedGrantType
from tokenry.core.grants import grant_audiences, grant_scopes
from tokenry.core.ids import new_gid, new_jti
from tokenry.core.keywrap import Kek, open_sealed
from tokenry.core.signing import SigningKey, private_key_from_der
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, new_access_token
from tokenry.store.keys import KeyStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenRequest:
    grant_type: str
    scope: str
    audiences: tuple[str, ...]
    credentials: ClientCredentials


@dataclass(frozen=True, slots=True)
class TokenResult:
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    issued_token_type: str


class SigningKeys(Protocol):
    def current(self) -> SigningKey:
        """The active signing key; raises TemporarilyUnavailable when there is none."""
        ...


class ActiveKeys:
    """The active access-token key, decrypted once and re-checked periodically.

    The issuer never signs with a key that is not active in the database (SPEC §5).
    """

    def __init__(self, store: KeyStore, kek: Kek, alg: str) -> None:
        self._store = store
        self._kek = kek
        self._alg = alg
        self._key: SigningKey | None = None

    def current(self) -> SigningKey:
        if self._key is None:
            raise TemporarilyUnavailable("no active signing key yet")
        return self._key

    async def refresh(self) -> None:
        record = await self._store.active("access", self._alg)
        if record is None:
            self._key = None
            return
        if self._key is not None and self._key.kid == record.kid:
            return
        if record.kek_id != self._kek.id:
            log.error("active key %s is sealed under KEK %s, not ours", record.kid, record.kek_id)
            self._key = None
            return
        der = open_sealed(self._kek, record.kid, record.private_key_sealed)
        self._key = SigningKey(record.kid, record.alg, private_key_from_der(der))
        log.info("signing with key %s (%s)", record.kid, record.alg)


class IssuerHandlers:
    def __init__(
        self,
        *,
        clients: ClientLookup,
        peppers: dict[str, Pepper],
        keys: SigningKeys,
        issuer_url: str,
        clock: Clock,
    ) -> None:
        self._clients = clients
        self._peppers = peppers
        self._keys = keys
        self._issuer = issuer_url
        self._clock = clock

    async def token(self, req: TokenRequest) -> TokenResult:
        client = await authenticate(req.credentials, self._clients, self._peppers)
        if req.grant_type != CLIENT_CREDENTIALS:
            # OAuth 2.1: implicit and password grants do not exist here, ever.
            raise UnsupportedGrantType(f"grant_type {req.grant_type!r} is not supported")
        if CLIENT_CREDENTIALS not in client.grant_types:
            raise UnauthorizedClient("the client may not use the client_credentials grant")
        scopes = grant_scopes(req.scope, client.scopes)
        audiences = grant_audiences(req.audiences, client.audiences)
        key = self._keys.current()
        # RFC 9068 §2.2: for client credentials the subject is the client itself.
        token = new_access_token(
            issuer=self._issuer,
            subject=client.client_id,
            client_id=client.client_id,
            audiences=audiences,
            scopes=scopes,
            now=self._clock.now(),
            ttl=client.access_token_ttl,
            jti=new_jti(),
            gid=new_gid(),
        )
        return TokenResult(
            access_token=key.sign(token.claims()),
            token_type="Bearer",
            expires_in=token.expires_at - token.issued_at,
            scope=" ".join(scopes),
            issued_token_type=ACCESS_TOKEN_TYPE_URN,
        )
