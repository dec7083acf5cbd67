"""RFC 7662 token introspection: authenticate the caller, find the token, decide, answer.

The introspector's gRPC servicer and the HTTP gateway's ``/oauth2/introspect`` are both thin
adapters over :class:`IntrospectionFlow` (moved here from services/introspector/handlers.py).

Every negative outcome is the one ``INACTIVE`` answer, and the work done for a garbage, unknown,
expired, revoked or not-for-you token is kept similar (format and checksum checks before any
database hit; one revocation lookup for every well-formed candidate) so neither the answer nor,
as far as practical, the time tells them apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from tokenry import jose
from tokenry.core.client_cache import CachedClients
from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import (
    BASIC,
    POST,
    AssertionContext,
    BasicHeader,
    CallerLimiter,
    ClientLookup,
    FailureLimiter,
    Presented,
    ProvenSecrets,
    authenticate,
)
from tokenry.core.clients import Client
from tokenry.core.clock import Clock
from tokenry.core.introspection import (
    INACTIVE,
    Introspection,
    may_see,
    require_introspect_scope,
)
from tokenry.core.opaque import ACCESS, REFRESH, kind_of, token_hash
from tokenry.core.renames import renamed
from tokenry.flows.introspection_cache import Positive, PositiveCache
from tokenry.jose import VerificationError, VerificationKey
from tokenry.jose._rfc7662 import introspection_claims

__all__ = [
    "MAX_TOKEN_LENGTH",
    "IntrospectRequest",
    "IntrospectionFlow",
    "OpaqueRecord",
    "OpaqueRecords",
    "RevocationCheck",
    "KeyCache",
]

MAX_TOKEN_LENGTH = 8192
# the methods ProvenSecrets remembers
_SECRETS = frozenset({BASIC, POST})
# the opaque kinds that can be introspected (codes and login challenges never are)
_OPAQUE = frozenset({ACCESS, REFRESH})


@dataclass(frozen=True, slots=True)
class OpaqueRecord:
    """What the issuer stored for an opaque token (only its hash is stored)."""

    kind: str  # "access" | "refresh"
    jti: str
    gid: str | None
    client_id: str
    subject: str
    scope: str
    audiences: tuple[str, ...]
    issuer: str
    issued_at: int
    expires_at: int
    revoked: bool
    act: dict[str, Any] | None = None


class OpaqueRecords(Protocol):
    def find(self, digest: bytes) -> Awaitable[OpaqueRecord | None]:
        """The record for SHA-256(token), or None; ``revoked`` covers every revocation rule
        (its own row, jti, family, subject and client watermarks) from PostgreSQL."""
        ...


class RevocationCheck(Protocol):
    async def revoked(
        self, jti: str, gid: str | None, sub: str | None, client_id: str | None, iat: float
    ) -> bool:
        """Whether PostgreSQL-backed revocation state revokes these claims (docs/spec.md §4.5)."""
        ...


class KeyCache(Protocol):
    """The published verification keys (``tokenry.jose.JwksCache`` fits)."""

    @property
    def keys(self) -> Mapping[str, VerificationKey]: ...

    async def refresh(self, *, force: bool = False) -> None:
        """Refetch (single-flight, rate limited unless forced)."""
        ...


class IntrospectRequest(NamedTuple):
    credentials: Presented
    token: str
    token_type_hint: str

    def __repr__(self) -> str:  # never print the token
        return f"IntrospectRequest(credentials={self.credentials!r})"


class IntrospectionFlow:
    """RFC 7662 §2: the protected resource (here: any client holding ``tokenry:introspect``)
    asks about a token; every negative outcome is ``{"active": false}`` (§2.2)."""

    def __init__(
        self,
        *,
        clients: ClientLookup,
        peppers: dict[str, Pepper],
        opaque: OpaqueRecords,
        revocations: RevocationCheck,
        keys: KeyCache,
        issuer_url: str,
        clock: Clock,
        cache: PositiveCache,
        leeway: float = jose.DEFAULT_LEEWAY,
        assertions: AssertionContext | None = None,
        proven: ProvenSecrets | None = None,
    ) -> None:
        self._clients = clients
        self._peppers = peppers
        self._opaque = opaque
        self._revocations = revocations
        self._keys = keys
        self._issuer = issuer_url
        self._clock = clock
        self._cache = cache
        self._leeway = leeway
        self._decoder = jose.Decoder()
        self._assertions = assertions  # None: private_key_jwt is refused
        self._proven = proven
        # The registry cache read without awaiting, for a caller proven before (recall).
        self._cached_clients = clients if isinstance(clients, CachedClients) else None
        # Issue 13 item 8: failed authentications held back, calls limited per caller.
        self._limiter = FailureLimiter(clock)
        self._per_caller = CallerLimiter(clock)

    def answer_now(self, credentials: Presented, token: str) -> Introspection | None:
        """The warm path: the answer when it needs no waiting, else None (then await
        :meth:`introspect` with the same request, which decides everything again).

        That is when the caller's secret was proven before and still holds (:meth:`recall`)
        and the token's answer is cached. The decisions are those of :meth:`introspect`: the
        scope is required and the call counted against the caller's limit before any answer;
        nothing is counted when None is returned, so the slow path counts the call once.
        """
        found = self.answer_or_caller(credentials, token)
        return found if isinstance(found, Introspection) else None

    def answer_or_caller(self, credentials: Presented, token: str) -> Introspection | Client | None:
        """:meth:`answer_now` for the servicer: the answer when it needs no waiting; the caller
        (recalled, nothing counted yet) when only the token must be looked up, then await
        :meth:`introspect_as` with it; None when the caller must be authenticated (then await
        :meth:`introspect`). No coroutine is created: the warm path is the introspector's hot
        loop, where every Python call shows (docs/benchmarks/introspection.md)."""
        caller = self.recall(credentials)
        if caller is None:
            return None
        return self._answer_or_caller(caller, token)

    def answer_or_caller_basic(
        self, authorization: str, token: str
    ) -> Introspection | Client | None:
        """:meth:`answer_or_caller` for ``BasicHeader(authorization)``, which the caller has
        checked ``credentials_from`` would return (one method presented, the header's length
        within bounds), without building it."""
        proven, clients = self._proven, self._cached_clients
        if proven is None or clients is None:
            return None
        known = proven.recall_basic(authorization)
        if known is None:
            return None
        caller = clients.cached(known[0])
        if caller is None or not proven.vouches(known, caller, self._peppers):
            return None
        return self._answer_or_caller(caller, token)

    def _answer_or_caller(self, caller: Client, token: str) -> Introspection | Client:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            found = None
        else:
            found = self._cache.get(hashlib.blake2s(token.encode()).digest())
            if found is None:
                return caller
        require_introspect_scope(caller)  # an error, not an answer: the caller is at fault
        self._per_caller.check(caller.client_id)
        if found is None or not may_see(caller, found.answer.aud):
            return INACTIVE
        return found.answer

    def recall(self, credentials: Presented) -> Client | None:
        """The caller, when these exact credentials were proven before (``ProvenSecrets``)
        and its registration, as cached now, still vouches for them; None otherwise (then
        ``authenticate`` decides, and pays for any failure). The same check as the first step
        of ``core.clientauth.authenticate``, without its coroutines."""
        proven, clients = self._proven, self._cached_clients
        if proven is None or clients is None:
            return None
        # BasicHeader: the common case, tested first (its ``method`` is a property).
        if not isinstance(credentials, BasicHeader) and credentials.method not in _SECRETS:
            return None
        known = proven.recall(credentials)[1]
        if known is None:
            return None
        client = clients.cached(known[0])
        if client is None or not proven.vouches(known, client, self._peppers):
            return None
        return client

    async def introspect(self, req: IntrospectRequest) -> Introspection:
        caller = self.recall(req.credentials) or await authenticate(
            req.credentials,
            self._clients,
            self._peppers,
            self._assertions,
            self._proven,
            limiter=self._limiter,
        )
        require_introspect_scope(caller)  # an error, not an answer: the caller is at fault
        self._per_caller.check(caller.client_id)
        token = req.token
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return INACTIVE
        digest = hashlib.blake2s(token.encode()).digest()
        found = self._cache.get(digest) or await self._lookup(token, digest)
        if found is None or not may_see(caller, found.answer.aud):
            return INACTIVE
        return found.answer

    async def introspect_as(self, caller: Client, token: str) -> Introspection:
        """:meth:`introspect` for a caller :meth:`answer_or_caller` recalled (authenticated
        against its current registration just now): the same rules from the scope on. The
        transport's caller credentials (peer, certificate) are not read: only a failed or a
        certificate-based authentication needs them, and neither happens here."""
        require_introspect_scope(caller)  # an error, not an answer: the caller is at fault
        self._per_caller.check(caller.client_id)
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return INACTIVE
        digest = hashlib.blake2s(token.encode()).digest()
        found = self._cache.get(digest)
        if found is None:
            if kind_of(token) in _OPAQUE:  # _lookup's opaque branch, one coroutine fewer
                epoch = self._cache.epoch
                record = await self._opaque.find(token_hash(token))
                found = self._keep_opaque(digest, record, epoch)
            else:
                found = await self._lookup(token, digest)
        if found is None or not may_see(caller, found.answer.aud):
            return INACTIVE
        return found.answer

    async def active_access_token(self, token: str) -> Introspection | None:
        """The answer for an access token of this deployment that is active now, with no
        caller and no audience check: what OIDC userinfo (Core §5.3) needs. Refresh tokens,
        codes and anything else answer None, as does every inactive token."""
        if not token or len(token) > MAX_TOKEN_LENGTH or kind_of(token) == REFRESH:
            return None
        digest = hashlib.blake2s(token.encode()).digest()
        found = self._cache.get(digest) or await self._lookup(token, digest)
        return None if found is None else found.answer

    async def _lookup(self, token: str, digest: bytes) -> Positive | None:
        # RFC 7662 §2.1: token_type_hint is only a hint; the token's own shape decides.
        kind = kind_of(token)
        # Read before any database read: an invalidation that lands while we look the token
        # up keeps this answer out of the cache (it may predate the revocation's commit).
        epoch = self._cache.epoch
        kid: str | None = None
        if kind in _OPAQUE:  # codes and login challenges are never introspectable
            # One query answers both: the row and every revocation rule that covers it.
            return self._keep_opaque(digest, await self._opaque.find(token_hash(token)), epoch)
        if kind is None and token.count(".") == 2:
            verified = await self._jwt_claims(token)
            claims, kid = verified if verified is not None else (None, None)
            if claims is not None and await self._revocations.revoked(
                claims["jti"],
                claims.get("gid"),
                claims.get("sub"),
                claims.get("client_id"),
                claims["iat"],
            ):
                claims = None
        else:
            return None  # neither shape: garbage, answered without a database hit
        if claims is None:
            return None
        return self._cache.put(digest, claims, kid=kid, epoch=epoch)

    def _keep_opaque(
        self, digest: bytes, record: OpaqueRecord | None, epoch: int
    ) -> Positive | None:
        """The cached answer for an opaque token's record (``epoch``: read before the lookup
        began, see ``PositiveCache.put``); None when unknown, revoked or expired."""
        if record is None or record.revoked or record.expires_at <= self._clock.now():
            return None
        # The answer straight from the row (no claims dict): from_claims's answer for the
        # claims the row stands for (tests/unit/test_intro_cold_path.py).
        names = (record.jti, record.gid or None, record.subject, record.client_id)
        return self._cache.put_answer(
            digest,
            _opaque_answer(record),
            record.expires_at,
            (*names, float(record.issued_at), None),
            epoch=epoch,
        )

    async def _jwt_claims(self, token: str) -> tuple[dict[str, Any], str] | None:
        """The verified claims of a JWT that is active on our clock, and its ``kid``."""
        try:
            parts = self._decoder.parse(token)
            key = self._keys.keys.get(parts.kid)
            if key is None:
                await self._keys.refresh()  # a key published since the last refresh
                key = self._keys.keys.get(parts.kid)
            if key is None:
                return None
            # The audience is checked against the caller afterwards (RFC 7662 §4), so any
            # audience passes here; issuer, times and types are checked as the verifier does.
            now = self._clock.now()
            claims = introspection_claims(
                self._decoder, parts, key, issuer=self._issuer, now=now, leeway=self._leeway
            )
        except VerificationError:
            return None
        # RFC 7662: an expired token is inactive. The verifier's clock leeway is for other
        # servers' clocks; the introspector answers on its own clock, like the opaque path.
        if claims["exp"] <= now:
            return None
        return claims, parts.kid


def _opaque_answer(record: OpaqueRecord) -> Introspection:
    """The positive answer for an opaque token's row (RFC 7662 §2.2), as
    ``core.introspection.from_claims`` makes it from the claims the row stands for."""
    act = record.act
    return Introspection(
        active=True,
        scope=record.scope,
        client_id=record.client_id,
        token_type="Bearer",  # docs/spec.md §3: token_type in a positive answer is Bearer
        exp=int(record.expires_at),
        iat=int(record.issued_at),
        nbf=0,
        sub=record.subject,
        aud=tuple(record.audiences),
        iss=record.issuer,
        jti=record.jti,
        act=act if isinstance(act, dict) else None,
        cnf=None,
    )


# Renamed in issue 12 item 9: flows.revocation.OpaqueTokens and flows.VerificationKeys are other
# ports. The old names resolve for one release.
__getattr__ = renamed(
    __name__,
    {"OpaqueTokens": ("OpaqueRecords", OpaqueRecords), "VerificationKeys": ("KeyCache", KeyCache)},
)
