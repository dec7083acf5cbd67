"""Revocation use cases: authorise the caller, record the revocation and its event atomically.

RFC 7009 (token revocation):

- §2.1: the client authenticates; it may revoke only tokens issued to it (an admin may revoke
  any). A JWT's signature is verified, expiry ignored, before its ``jti``/``client_id`` are
  trusted. Revoking a refresh token revokes its whole family (``gid``).
- §2.2: an invalid, unknown, expired or already-revoked token is answered with success; the
  ``token_type_hint`` is only a hint (every token type is searched).

Admin revocation (SPEC §4): by jti, grant/family, subject and client, each needing
``tokenry:admin``; subject and client revocations are watermarks ``not_before = ceil(now) +
max clock skew`` compared with the token's ``iat``.

Every accepted request writes one row and one outbox event in one statement, or nothing when
an equal or stronger revocation exists already; it never waits on NATS (SPEC §4.1, §4.5).
Concurrent requests are group-committed: one statement per batch, each request keeping those
semantics.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from opentelemetry import propagate

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.core.client_cache import CachedClients
from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import (
    AssertionContext,
    ClientLookup,
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
from tokenry.core.events import OutboxEvent
from tokenry.core.revocations import (
    DEFAULT_MAX_CLOCK_SKEW,
    Revocation,
    RevocationKind,
    family_expiry,
    token_expiry,
    watermark,
)
from tokenry.services.revocation.tokens import (
    OPAQUE_PREFIX,
    NoOpaqueTokens,
    OpaqueTokens,
    PresentedToken,
)
from tokenry.store.batching import Coalescer
from tokenry.store.idempotency import IdempotencyMismatch, IdempotencyRequest, Replay
from tokenry.store.revocations import ActorCheck, RevokeItem, RevokeResult, SnapshotPart

log = logging.getLogger(__name__)

MAX_REASON = 200
MAX_TOKEN = 8192  # the verifier's own size limit (RFC 8725 §3.11 spirit): nothing longer is ours
DEFAULT_SNAPSHOT_BATCH = 5_000
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
    idem: IdempotencyRequest | None = None
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


class RevocationRecorder(Protocol):
    async def revoke_many(
        self, items: Sequence[RevokeItem], *, now: int | None = None
    ) -> list[RevokeResult]: ...

    def snapshot(self, now: int, batch_size: int) -> AsyncGenerator[SnapshotPart, None]: ...

    async def head_seq(self) -> int: ...


class _StaleClient(Exception):
    """The cached registration an attempt authenticated against has changed."""


class TokenFinder(Protocol):
    async def find(self, token: str) -> PresentedToken | None: ...


class RevocationHandlers:
    def __init__(
        self,
        *,
        clients: ClientLookup,
        peppers: dict[str, Pepper],
        store: RevocationRecorder,
        subjects: Subjects,
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
        # current (ActorCheck), and anything the cache may have got wrong is retried fresh.
        self._cached = cached_clients
        # Secrets already checked against a client's current hash are not HMAC'd again.
        self._proven = ProvenSecrets()
        self._peppers = peppers
        self._store = store
        self._subjects = subjects
        self._clock = clock
        self._jwts = jwts
        self._opaque = opaque or NoOpaqueTokens()
        self._skew = max_clock_skew
        self._assertions = assertions  # None: private_key_jwt is refused
        # A read that starts after every request it answers (the batch in flight when one
        # arrives cannot answer it): one query serves a fleet of verifiers asking at once.
        self._heads: Coalescer[None, int] = Coalescer(self._read_heads)
        # Group commit: revocations that arrive while a batch is committing go out together as
        # the next batch, one statement and one WAL flush for all of them, each keeping its own
        # dedupe, seq, outbox row and idempotency record (RevocationStore.revoke_many). The
        # outbox counter lock serialises revocation commits, so one commit per revocation
        # capped throughput at one fsync each.
        self._writes: Coalescer[RevokeItem, RevokeResult] = Coalescer(self._write_batch)

    async def revoke(self, cmd: RevokeCommand) -> RevokeOutcome | Replay:
        """Authenticate, authorise and record; returns once committed (never waits on NATS).

        With a request_id, a retry of a request that committed gets its stored answer
        (:class:`Replay`) and nothing is written again.

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

    async def _revoke(
        self, cmd: RevokeCommand, clients: ClientLookup, *, refresh: bool = False
    ) -> RevokeOutcome | Replay:
        client = await authenticate(
            cmd.credentials, clients, self._peppers, self._assertions, self._proven
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
        event = codec.revocation_event(
            self._subjects, rev, now, _traceparent(), actor=client.client_id
        )
        result = await self._writes(_item(cmd, client, rev, event))
        if result.stale:  # the registration changed since it was read: nothing was written
            self._forget(client, clients)
            if clients is self._clients:
                raise TemporarilyUnavailable("the client registration changed; retry")
            raise _StaleClient
        if result.mismatch:
            raise IdempotencyMismatch
        if result.replay is not None:
            return Replay(result.replay)
        log.info(
            "revocation by %s: %s (seq %d%s)",
            client.client_id,
            rev.kind.value,
            result.seq,
            "" if result.recorded else ", already recorded",
        )
        return RevokeOutcome(result.seq, rev, result.recorded)

    def snapshot(self, batch_size: int = 0) -> AsyncGenerator[SnapshotPart, None]:
        """Every live revocation, current to the seq in each part (ListRevocations)."""
        return self._store.snapshot(int(self._clock.now()), batch_size or DEFAULT_SNAPSHOT_BATCH)

    async def head(self) -> int:
        """The last outbox seq committed, read after this call began (GetHead, SPEC §4.4).

        A verifier dates its proof of currency by its own clock at the moment it asked, so the
        answer must cover every revocation acknowledged before that moment: a cached or
        shared read that started earlier would not.
        """
        return await self._heads(None)

    def _forget(self, client: Client, used: ClientLookup) -> None:
        if self._cached is not None and used is self._cached:
            self._cached.invalidate(client.client_id)

    async def _write_batch(self, items: list[RevokeItem]) -> list[RevokeResult]:
        return await self._store.revoke_many(items, now=int(self._clock.now()))

    async def _read_heads(self, batch: list[None]) -> list[int]:
        seq = await self._store.head_seq()
        return [seq] * len(batch)

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
            # RFC 7009 §2.1 / SPEC §3: a refresh token revokes its family. The grant revocation
            # covers the family's access tokens (until they can all have expired); the store
            # also ends the family itself, so its refresh tokens are refused for good.
            expires = family_expiry(now, math.ceil(now), None)
            return Revocation(RevocationKind.GRANT, found.gid, 0, expires, cmd.reason)
        expiry = token_expiry(now, found.expires_at)
        if expiry is None:
            return None  # expired: no verifier accepts it any more
        return Revocation(RevocationKind.JTI, found.jti, 0, expiry, cmd.reason)


def _item(cmd: RevokeCommand, client: Client, rev: Revocation, event: OutboxEvent) -> RevokeItem:
    """The store's unit of work for one request: the revocation, its event, how to dedupe it,
    what the caller's registration must still be, and its idempotency record."""
    # A server-computed expiry slides with "now": raising it is no news (a repeat would
    # publish an event every second). The caller's expires_at, or a token's own exp, is.
    if cmd.target is Target.TOKEN:
        expiry_given = rev.kind is RevocationKind.JTI
    else:
        expiry_given = cmd.expires_at != 0
    check = ActorCheck(client.secret_hash, client.jwks_json, admin=cmd.target is not Target.TOKEN)
    item = RevokeItem(rev, client.client_id, event, expiry_given, actor_check=check)
    if cmd.idem is None:
        return item
    respond = cmd.respond
    if respond is None:
        raise ValueError("an idempotent revocation needs respond()")
    return replace(
        item,
        idem=cmd.idem.key(client.client_id),
        respond=lambda r: respond(RevokeOutcome(r.seq, rev, r.recorded)),
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
        # SPEC §4.7: until the token's own exp when the caller knows it, else the maximum
        # access-token lifetime; an exp already past needs no entry.
        expiry = token_expiry(now, cmd.expires_at or None)
        if expiry is None:
            return None
        return Revocation(RevocationKind.JTI, cmd.value, 0, expiry, cmd.reason)
    if cmd.target is Target.GRANT:
        expires = family_expiry(now, math.ceil(now), cmd.expires_at or None)
        return Revocation(RevocationKind.GRANT, cmd.value, 0, expires, cmd.reason)
    # SPEC §4: every token of the subject/client with iat < not_before is revoked.
    not_before = watermark(now, skew)
    expires = family_expiry(now, not_before, cmd.expires_at or None)
    kind = RevocationKind.SUBJECT if cmd.target is Target.SUBJECT else RevocationKind.CLIENT
    return Revocation(kind, cmd.value, not_before, expires, cmd.reason)


def _traceparent() -> str | None:
    """The W3C traceparent of the current span, carried with the event (ARCHITECTURE §4)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")
