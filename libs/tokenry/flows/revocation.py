"""RFC 7009 revocation and admin revocation: authorise the caller, record the revocation and
its event atomically.

The revocation service's gRPC servicer and the HTTP gateway's ``/oauth2/revoke`` are both thin
adapters over :class:`RevocationFlow` (moved here from services/revocation/handlers.py). Storage
is the :class:`RevocationRecorder` port; its PostgreSQL adapter
(:mod:`tokenry.store.revocation_recorder`) encodes the event, group-commits and keeps the
idempotency records, so this module loads no protobuf or driver.

RFC 7009 (token revocation):

- §2.1: the client authenticates; it may revoke only tokens issued to it (an admin may revoke
  any). A JWT's signature is verified, expiry ignored, before its ``jti``/``client_id`` are
  trusted. Revoking a refresh token revokes its whole family (``gid``).
- §2.2: an invalid, unknown, expired or already-revoked token is answered with success; the
  ``token_type_hint`` is only a hint (every token type is searched).

Admin revocation (docs/spec.md §4): by jti, grant/family, subject and client, each needing
``tokenry:admin``; subject and client revocations are watermarks ``not_before = ceil(now) +
max clock skew`` compared with the token's ``iat``.

Every accepted request writes one row and one outbox event in one statement, or nothing when
an equal or stronger revocation exists already; it never waits on NATS (docs/spec.md §4.1, §4.5).
Concurrent requests are group-committed by the recorder: one statement per batch, each request
keeping those semantics.

Size: the use case with its ports and records (lines 100-250), so the storage contract is read
next to the rules that rely on it; the ports can move to their own module when a second use case
needs them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from opentelemetry import propagate

from tokenry.core.client_cache import CachedClients
from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import (
    AssertionContext,
    ClientLookup,
    FailureLimiter,
    Presented,
    ProvenSecrets,
    authenticate,
)
from tokenry.core.clients import ADMIN_SCOPE, PRIVATE_KEY_JWT, Client
from tokenry.core.clock import Clock
from tokenry.core.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidRequest,
    TemporarilyUnavailable,
    UnauthorizedClient,
)
from tokenry.core.revocations import (
    DEFAULT_MAX_CLOCK_SKEW,
    Revocation,
    RevocationKind,
    family_expiry,
    token_expiry,
    watermark,
)

__all__ = [
    "MAX_REASON",
    "MAX_TOKEN",
    "OPAQUE_PREFIX",
    "DEFAULT_SNAPSHOT_BATCH",
    "Idempotency",
    "NoOpaqueTokens",
    "OpaqueTokens",
    "PresentedToken",
    "Recorded",
    "RevocationFlow",
    "RevocationRecorder",
    "RevocationWrite",
    "RevokeCommand",
    "RevokeOutcome",
    "Replayed",
    "Target",
    "TokenFinder",
    "IDEMPOTENCY_MISMATCH",
]

log = logging.getLogger(__name__)

MAX_REASON = 200
MAX_TOKEN = 8192  # the verifier's own size limit (RFC 8725 §3.11 spirit): nothing longer is ours
DEFAULT_SNAPSHOT_BATCH = 5_000
OPAQUE_PREFIX = "tkr_"
#: the description of ``invalid_request`` for a request_id reused with another request
IDEMPOTENCY_MISMATCH = "request_id was already used with a different request"
# jti and gid are base64url in Tokenry's tokens; allow any printable ASCII, bounded.
_ID = re.compile(r"[\x21-\x7e]{1,255}")
# Subjects and client ids: any text without control characters, bounded.
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_REASON = re.compile(r"[^\x00-\x1f\x7f]{0,200}")


class Target(StrEnum):
    TOKEN = "token"
    JTI = "jti"
    GRANT = "grant"
    SUBJECT = "subject"
    CLIENT = "client"


class Idempotency(Protocol):
    """A request_id and its body hash (``tokenry.store.idempotency.IdempotencyRequest``); the
    key needs the authenticated caller."""

    def key(self, caller: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class RevokeCommand:
    credentials: Presented
    target: Target
    value: str
    reason: str = ""
    expires_at: int = 0  # 0 = the default for the kind
    token_type_hint: str = ""
    # request_id (idempotent retries) and how the adapter serializes this request's answer,
    # stored with it in the same transaction (store/idempotency.py)
    idem: Idempotency | None = None
    respond: Callable[[RevokeOutcome], bytes] | None = None

    def __repr__(self) -> str:  # the value may be a bearer token: never print it
        return f"RevokeCommand(target={self.target!r}, credentials={self.credentials!r})"


@dataclass(frozen=True, slots=True)
class RevokeOutcome:
    """``revocation`` None: nothing needed recording (RFC 7009 §2.2). ``seq`` is the event
    announcing the revocation (an earlier one when it was already recorded), 0 for none."""

    seq: int
    revocation: Revocation | None
    recorded: bool


@dataclass(frozen=True, slots=True)
class Replayed:
    """The answer to a retry: the stored response of the first request with its request_id."""

    response: bytes

    def __repr__(self) -> str:
        return f"Replayed({len(self.response)} bytes)"


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """The facts of a verified token that revocation needs."""

    kind: str  # "access" | "refresh"
    jti: str
    client_id: str | None
    subject: str | None
    gid: str | None
    expires_at: int | None  # the token's own exp, None when unknown


class TokenFinder(Protocol):
    async def find(self, token: str) -> PresentedToken | None:
        """The token's revocation facts, or None when it is not a token of ours (RFC 7009
        §2.2: answered with success). A JWT is trusted only once its signature verifies
        against the published keys, expiry ignored (RFC 7009 §2.1)."""
        ...


class OpaqueTokens(TokenFinder, Protocol):
    """Opaque tokens (``tkr_at_``/``tkr_rt_``), looked up by their SHA-256 digest. Expired and
    already-revoked tokens may be returned: revoking them again is harmless."""


class NoOpaqueTokens:
    """A deployment without opaque tokens: every ``tkr_`` token is unknown."""

    async def find(self, token: str) -> PresentedToken | None:  # noqa: ARG002 - the port's signature
        return None


@dataclass(frozen=True, slots=True)
class Recorded:
    """The recorder's answer for one write. ``recorded`` False when an identical or stronger
    revocation already existed (``seq`` is its event). ``replay``: the stored answer of an
    earlier request with the same request_id (nothing was done); ``mismatch``: the request_id
    was used with another request; ``stale``: the caller's client row changed since it was
    read (nothing was written)."""

    seq: int
    recorded: bool
    replay: bytes | None = None
    mismatch: bool = False
    stale: bool = False


@dataclass(frozen=True, slots=True)
class RevocationWrite:
    """One revocation to commit with its event, in one transaction.

    ``expiry_given``: ``rev.expires_at`` came from the caller or the token (a fixed value), so
    raising it is news; a server-computed expiry slides with "now" and never counts.
    ``actor_*``: what the caller's client row must still hold at commit (it may have been
    authenticated from a cached registry). ``idem``/``respond``: the idempotency record.
    """

    rev: Revocation
    actor: str
    now: float
    traceparent: str | None
    expiry_given: bool
    actor_secret_hash: str | None
    actor_jwks_json: str | None
    actor_admin: bool
    idem: Any = None
    respond: Callable[[Recorded], bytes] | None = None

    def __repr__(self) -> str:
        return f"RevocationWrite(kind={self.rev.kind.value!r}, actor={self.actor!r})"


class RevocationRecorder(Protocol):
    """The durable record (docs/spec.md §4.1): PostgreSQL with its transactional outbox."""

    async def record(self, write: RevocationWrite) -> Recorded:
        """Commit the revocation and its event (or find it already recorded)."""
        ...

    def snapshot(self, now: int, batch_size: int) -> AsyncGenerator[Any, None]:
        """Every live revocation, in parts each current to an outbox seq."""
        ...

    async def head(self) -> int:
        """The last outbox seq committed, read after this call began."""
        ...


class _StaleClient(Exception):
    """The cached registration an attempt authenticated against has changed."""


class RevocationFlow:
    def __init__(
        self,
        *,
        clients: ClientLookup,
        peppers: dict[str, Pepper],
        recorder: RevocationRecorder,
        clock: Clock,
        jwts: TokenFinder,
        opaque: OpaqueTokens | None = None,
        max_clock_skew: int = DEFAULT_MAX_CLOCK_SKEW,
        assertions: AssertionContext | None = None,
        cached_clients: CachedClients | None = None,
    ) -> None:
        self._clients = clients
        # Authentication from the cached registry costs no round trip; every write then checks
        # in its own transaction that the registration it was authenticated against is still
        # current (the actor check), and anything the cache may have got wrong is retried fresh.
        self._cached = cached_clients
        # Secrets already checked against a client's current hash are not HMAC'd again.
        self._proven = ProvenSecrets()
        self._limiter = FailureLimiter(clock)  # issue 13 item 8: failures held back
        self._peppers = peppers
        self._recorder = recorder
        self._clock = clock
        self._jwts = jwts
        self._opaque = opaque or NoOpaqueTokens()
        self._skew = max_clock_skew
        self._assertions = assertions  # None: private_key_jwt is refused

    async def revoke(self, cmd: RevokeCommand) -> RevokeOutcome | Replayed:
        """Authenticate, authorise and record; returns once committed (never waits on NATS).

        With a request_id, a retry of a request that committed gets its stored answer
        (:class:`Replayed`) and nothing is written again.

        Raises:
            InvalidClient: client authentication failed.
            InsufficientScope: jti/grant/subject/client revocation without tokenry:admin.
            UnauthorizedClient: the token was issued to another client (RFC 7009 §2.1).
            InvalidRequest: a malformed value, reason or expires_at, or a request_id already
                used with another request; nothing is written.
        """
        cached = self._cached
        # A private_key_jwt assertion is single-use (replay protection): never authenticate
        # it twice, so never from a cache that may have to be retried.
        if cached is None or cmd.credentials.method == PRIVATE_KEY_JWT:
            return await self._revoke(cmd, self._clients)
        try:
            return await self._revoke(cmd, cached)
        except (InvalidClient, InsufficientScope, UnauthorizedClient, _StaleClient):
            pass  # a rotated secret, a new scope, a changed client: ask PostgreSQL
        return await self._revoke(cmd, self._clients, refresh=True)

    async def authenticate(self, credentials: Presented) -> Client:
        """The caller of a control-plane read (ListRevocations, GetHead; issue 13 item 3)."""
        return await authenticate(
            credentials,
            self._clients,
            self._peppers,
            self._assertions,
            self._proven,
            limiter=self._limiter,
        )

    async def _revoke(
        self, cmd: RevokeCommand, clients: ClientLookup, *, refresh: bool = False
    ) -> RevokeOutcome | Replayed:
        client = await authenticate(
            cmd.credentials,
            clients,
            self._peppers,
            self._assertions,
            self._proven,
            # Held back only on the authoritative attempt: a miss in the cache is retried.
            limiter=self._limiter if clients is self._clients else None,
        )
        if refresh and self._cached is not None:
            self._cached.invalidate(client.client_id)  # the next call reads it afresh
        needs_admin = cmd.target is not Target.TOKEN
        if needs_admin and ADMIN_SCOPE not in client.scopes:
            self._forget(client, clients)
            raise InsufficientScope(f"revoking by {cmd.target.value} needs {ADMIN_SCOPE}")
        _check_common(cmd)
        now = self._clock.now()
        if cmd.target is Target.TOKEN:
            rev = await self._for_token(cmd, client, now)
        else:
            rev = _for_admin(cmd, now, self._skew)
        if rev is None:
            return RevokeOutcome(0, None, recorded=False)
        result = await self._recorder.record(_write(cmd, client, rev, now))
        if result.stale:  # the registration changed since it was read: nothing was written
            self._forget(client, clients)
            if clients is self._clients:
                raise TemporarilyUnavailable("the client registration changed; retry")
            raise _StaleClient
        if result.mismatch:
            raise InvalidRequest(IDEMPOTENCY_MISMATCH)
        if result.replay is not None:
            return Replayed(result.replay)
        log.info(
            "revocation by %s: %s (seq %d%s)",
            client.client_id,
            rev.kind.value,
            result.seq,
            "" if result.recorded else ", already recorded",
        )
        return RevokeOutcome(result.seq, rev, result.recorded)

    def snapshot(self, batch_size: int = 0) -> AsyncGenerator[Any, None]:
        """Every live revocation, current to the seq in each part (ListRevocations)."""
        return self._recorder.snapshot(int(self._clock.now()), batch_size or DEFAULT_SNAPSHOT_BATCH)

    async def head(self) -> int:
        """The last outbox seq committed, read after this call began (GetHead, docs/spec.md §4.4).

        A verifier dates its proof of currency by its own clock at the moment it asked, so the
        answer must cover every revocation acknowledged before that moment: a cached or
        shared read that started earlier would not.
        """
        return await self._recorder.head()

    def _forget(self, client: Client, used: ClientLookup) -> None:
        if self._cached is not None and used is self._cached:
            self._cached.invalidate(client.client_id)

    async def _for_token(self, cmd: RevokeCommand, client: Client, now: float) -> Revocation | None:
        token = cmd.value
        # The hint only orders the search (RFC 7009 §2.1); both token formats are searched.
        found = await (
            self._opaque.find(token) if token.startswith(OPAQUE_PREFIX) else self._jwts.find(token)
        )
        if found is None:
            return None  # RFC 7009 §2.2: invalid or unknown tokens do not cause an error
        if found.client_id != client.client_id and ADMIN_SCOPE not in client.scopes:
            raise UnauthorizedClient("the token was not issued to this client")
        if found.kind == "refresh" and found.gid:
            # RFC 7009 §2.1 / docs/spec.md §3: a refresh token revokes its family. The grant
            # revocation covers the family's access tokens (until they can all have expired); the
            # store also ends the family itself, so its refresh tokens are refused for good.
            expires = family_expiry(now, math.ceil(now), None)
            return Revocation(RevocationKind.GRANT, found.gid, 0, expires, cmd.reason)
        expiry = token_expiry(now, found.expires_at)
        if expiry is None:
            return None  # expired: no verifier accepts it any more
        return Revocation(RevocationKind.JTI, found.jti, 0, expiry, cmd.reason)


def _write(cmd: RevokeCommand, client: Client, rev: Revocation, now: float) -> RevocationWrite:
    """The recorder's unit of work for one request: the revocation, how to dedupe it, what the
    caller's registration must still be, and its idempotency record."""
    # A server-computed expiry slides with "now": raising it is no news (a repeat would
    # publish an event every second). The caller's expires_at, or a token's own exp, is.
    if cmd.target is Target.TOKEN:
        expiry_given = rev.kind is RevocationKind.JTI
    else:
        expiry_given = cmd.expires_at != 0
    idem = None
    respond: Callable[[Recorded], bytes] | None = None
    if cmd.idem is not None:
        answer = cmd.respond
        if answer is None:
            raise ValueError("an idempotent revocation needs respond()")
        idem = cmd.idem.key(client.client_id)

        def respond(r: Recorded) -> bytes:
            return answer(RevokeOutcome(r.seq, rev, r.recorded))

    return RevocationWrite(
        rev=rev,
        actor=client.client_id,
        now=now,
        # The W3C traceparent of the current span, carried with the event (docs/design.md §4);
        # read here, in the request's context, not in the batch that commits it.
        traceparent=_traceparent(),
        expiry_given=expiry_given,
        actor_secret_hash=client.secret_hash,
        actor_jwks_json=client.jwks_json,
        actor_admin=cmd.target is not Target.TOKEN,
        idem=idem,
        respond=respond,
    )


def _check_common(cmd: RevokeCommand) -> None:
    if not _REASON.fullmatch(cmd.reason):
        raise InvalidRequest(f"reason must be at most {MAX_REASON} characters, no control codes")
    if cmd.expires_at < 0:
        raise InvalidRequest("expires_at must be a unix time in seconds, or 0 for the default")
    if cmd.target is Target.TOKEN:
        if not cmd.value:
            raise InvalidRequest("token is required (RFC 7009 §2.1)")
        if len(cmd.value) > MAX_TOKEN:
            raise InvalidRequest(f"token is longer than {MAX_TOKEN} characters")
        if not cmd.value.isascii() or not cmd.value.isprintable():
            raise InvalidRequest("token must be printable ASCII")
    elif cmd.target in (Target.JTI, Target.GRANT):
        if not _ID.fullmatch(cmd.value):
            raise InvalidRequest(f"{cmd.target.value} must be 1-255 printable ASCII characters")
    elif not _NAME.fullmatch(cmd.value):
        raise InvalidRequest(f"{cmd.target.value} must be 1-255 characters, no control codes")


def _for_admin(cmd: RevokeCommand, now: float, skew: int) -> Revocation | None:
    if cmd.target is Target.JTI:
        # docs/spec.md §4.7: until the token's own exp when the caller knows it, else the maximum
        # access-token lifetime; an exp already past needs no entry.
        expiry = token_expiry(now, cmd.expires_at or None)
        if expiry is None:
            return None
        return Revocation(RevocationKind.JTI, cmd.value, 0, expiry, cmd.reason)
    if cmd.target is Target.GRANT:
        expires = family_expiry(now, math.ceil(now), cmd.expires_at or None)
        return Revocation(RevocationKind.GRANT, cmd.value, 0, expires, cmd.reason)
    # docs/spec.md §4: every token of the subject/client with iat < not_before is revoked.
    not_before = watermark(now, skew)
    expires = family_expiry(now, not_before, cmd.expires_at or None)
    kind = RevocationKind.SUBJECT if cmd.target is Target.SUBJECT else RevocationKind.CLIENT
    return Revocation(kind, cmd.value, not_before, expires, cmd.reason)


def _traceparent() -> str | None:
    """The W3C traceparent of the current span, carried with the event (docs/design.md §4)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")
