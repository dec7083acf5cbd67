"""Client authentication shared by every service (RFC 6749 §2.3, RFC 7523 §2.2; docs/spec.md §3).

The transport adapters extract :class:`ClientCredentials` (from the gRPC ``authorization``
metadata or an HTTP header / form) with :func:`credentials_from` and call :func:`authenticate`,
which looks the client up through a :class:`ClientLookup` port and checks the method the client
registered:

- ``client_secret_basic`` / ``client_secret_post``: the Tokenry-generated secret, checked as
  HMAC-SHA-256 under the pepper in constant time (a client registered for either may use both,
  as they carry the same secret);
- ``private_key_jwt``: an RFC 7523 assertion (:mod:`tokenry.core.client_assertion`), replay
  protected through an :class:`AssertionReplay` port; services that do not pass an
  :class:`AssertionContext` refuse it;
- ``none``: a public client (RFC 6749 §2.1) identified by ``client_id`` alone; only the grants
  that allow it (authorization_code with PKCE, refresh_token) accept such a client.

Every failure is ``invalid_client``; before anything is proven the description is the same, so a
caller cannot tell an unknown client from a wrong secret (RFC 6749 §5.2).

Brute force and abuse (issue 13 item 8). Client ids are public and secrets are 256-bit random,
so the threat is lock-out and load, not guessing. :class:`FailureLimiter` therefore limits
*failures only*: the credential is always checked first, a correct one is answered at once
whatever happened before (no lock-out of a victim by an attacker who knows its id), and a
successful authentication never touches the limiter. A failure is held back (answered late,
still ``invalid_client``, with a ``retry after`` hint) once its (client_id, peer) or its peer
alone has used up a burst of failures. The peer is the transport's peer address, or the
client address a trusted proxy put in a configured header (:func:`peer_from`); adapters set
it for the request in :data:`request_peer`, or leave it to the per-call transport object they
put in ``mtls.request_certificate`` (:class:`PeerSource`). :class:`CallerLimiter` bounds the
calls of one authenticated caller (introspection). Both hold their state in the process: with
``--workers N`` each worker limits on its own (the limits hold per process, N times looser
across a host).

Size: client authentication and the limits on its failures are one rule (every service
authenticates through here); the limiters can move to a module of their own if they grow.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from typing import Final, NamedTuple, Protocol
from urllib.parse import unquote_plus

from tokenry.core import mtls
from tokenry.core.client_assertion import (
    CLIENT_ASSERTION_TYPE,
    unverified_subject,
    verify_client_assertion,
)
from tokenry.core.client_secrets import Pepper, hash_secret, verify_secret
from tokenry.core.clients import NO_AUTH, PRIVATE_KEY_JWT, SECRET_METHODS, TLS_CLIENT_AUTH, Client
from tokenry.core.clock import Clock
from tokenry.core.errors import InvalidClient, InvalidRequest, TemporarilyUnavailable

MAX_CREDENTIAL_LENGTH = 512
_BAD_CLIENT = "client authentication failed"
# Compared against when the client is unknown, so both paths cost one HMAC and one compare.
_DUMMY_HASH = "0" * 64

BASIC = "client_secret_basic"
POST = "client_secret_post"

# The gateway's token endpoint (docs/spec.md §2), which a client assertion may name as its ``aud``.
TOKEN_ENDPOINT_PATH = "/oauth2/token"

PROVEN_SECRETS_SIZE: Final = 4096


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    secret: str
    method: str  # "client_secret_basic" | "client_secret_post" | "private_key_jwt" | "none"
    assertion: str = ""

    def __repr__(self) -> str:  # never print the secret or the assertion
        return f"ClientCredentials(client_id={self.client_id!r}, method={self.method!r})"


class BasicHeader(NamedTuple):
    """client_secret_basic exactly as presented (RFC 6749 §2.3.1): parsed only when
    :class:`ProvenSecrets` cannot vouch for it, so a client that authenticates on every call
    (the norm for service clients) costs a hash and a dict lookup instead of base64, URL decoding
    and an HMAC. (A NamedTuple: built on every call, it should cost no more than a tuple.)"""

    authorization: str

    @property
    def method(self) -> str:
        return BASIC

    def __repr__(self) -> str:  # never print the secret
        return "BasicHeader(<client_secret_basic>)"

    def parse(self) -> ClientCredentials:
        return parse_basic(self.authorization)


# What a transport adapter hands to :func:`authenticate`.
Presented = ClientCredentials | BasicHeader

_new_tuple = tuple.__new__
_ONE_METHOD = "use exactly one client authentication method"


class ProvenSecrets:
    """Positive-only memo of client-secret checks.

    Keyed by BLAKE2s-256 of the exact credential material presented (the Basic header, or client
    id and secret; hashlib's built-in BLAKE2 costs a fraction of a trip through OpenSSL's SHA-256
    on a busy server, and is as collision-resistant), it holds only ``(client_id,
    secret_hash)``: no secret is kept. An entry vouches for a client only while that client's
    stored hash, pepper and method are unchanged, so a rotated secret, a deleted client or a
    retired pepper void it at once. Failed checks are never remembered: every wrong guess pays
    the full HMAC and constant-time compare. A hit is only faster for whoever already holds the
    right secret, so it is no timing oracle.

    Bounded: when full, the oldest eighth is dropped. One instance per process, shared by
    every call (dict reads and writes are atomic; entries are immutable tuples).
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = PROVEN_SECRETS_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._entries: dict[bytes, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(credentials: Presented) -> bytes:
        if isinstance(credentials, BasicHeader):
            material = "basic\0" + credentials.authorization
        else:
            material = f"{credentials.method}\0{credentials.client_id}\0{credentials.secret}"
        return hashlib.blake2s(material.encode()).digest()

    def recall(self, credentials: Presented) -> tuple[bytes, tuple[str, str] | None]:
        """The key of ``credentials`` and, if they were proven, (client id, hash proven)."""
        key = self.key(credentials)
        return key, self._entries.get(key)

    def recall_basic(self, authorization: str) -> tuple[str, str] | None:
        """``recall(BasicHeader(authorization))[1]`` (the same key), without building the
        header or the pair: the introspector's warm path."""
        return self._entries.get(hashlib.blake2s(("basic\0" + authorization).encode()).digest())

    @staticmethod
    def vouches(proven: tuple[str, str], client: Client, peppers: dict[str, Pepper]) -> bool:
        """Whether what was proven still holds for ``client`` as it is registered now."""
        return (
            client.client_id == proven[0]
            and client.secret_hash == proven[1]
            and client.auth_method in SECRET_METHODS
            and client.pepper_id in peppers
        )

    def remember(self, key: bytes, client: Client) -> None:
        if client.secret_hash is None:
            return
        entries = self._entries
        if len(entries) >= self._size and key not in entries:
            for oldest in list(islice(entries, max(1, self._size // 8))):
                entries.pop(oldest, None)
        entries[key] = (client.client_id, client.secret_hash)


class ClientLookup(Protocol):
    async def get_client(self, client_id: str) -> Client | None:
        """The registered client, or None when there is no such client."""
        ...


class AssertionReplay(Protocol):
    async def first_use(self, client_id: str, jti: str, remember_until: int) -> bool:
        """Record an assertion's jti; False when it was already used (RFC 7523 §3 item 7)."""
        ...


@dataclass(frozen=True, slots=True)
class AssertionContext:
    """What a service needs to accept private_key_jwt."""

    # The issuer identifier and the token endpoint URL (RFC 7523 §3 item 3).
    audiences: frozenset[str]
    clock: Clock
    replay: AssertionReplay


def assertion_audiences(issuer_url: str) -> frozenset[str]:
    """The ``aud`` values a client assertion may carry (RFC 7523 §3 item 3), at every endpoint
    alike: the issuer identifier or the gateway's token endpoint URL (docs/spec.md §3)."""
    return frozenset({issuer_url, issuer_url.rstrip("/") + TOKEN_ENDPOINT_PATH})


def parse_basic(authorization: str) -> ClientCredentials:
    """Parse ``Basic base64(urlencode(id):urlencode(secret))`` (RFC 6749 §2.3.1).

    Raises:
        InvalidClient: the header is not valid Basic credentials.
    """
    if len(authorization) > MAX_CREDENTIAL_LENGTH:
        raise InvalidClient("client credentials too long")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise InvalidClient("expected HTTP Basic client credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep or not raw_id:
        raise InvalidClient("malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return ClientCredentials(unquote_plus(raw_id), unquote_plus(raw_secret), BASIC)


def credentials_from(
    authorization: str | None,
    client_id: str,
    client_secret: str,
    client_assertion_type: str = "",
    client_assertion: str = "",
) -> Presented:
    """Pick the one authentication method used (RFC 6749 §2.3: "MUST NOT use more than one")."""
    if authorization:
        if client_secret or client_assertion:
            raise InvalidRequest(_ONE_METHOD)
        if not client_id:
            if len(authorization) > MAX_CREDENTIAL_LENGTH:
                raise InvalidClient("client credentials too long")
            # Parsed by authenticate() if it must be. tuple.__new__ is what the NamedTuple's
            # generated __new__ calls, without its frame (one per call on the hot path).
            return _new_tuple(BasicHeader, (authorization,))
        creds = parse_basic(authorization)
        if client_id and client_id != creds.client_id:
            raise InvalidClient(_BAD_CLIENT)
        return creds
    if client_secret and client_assertion:
        raise InvalidRequest(_ONE_METHOD)
    if client_assertion or client_assertion_type:
        if client_assertion_type != CLIENT_ASSERTION_TYPE or not client_assertion:
            raise InvalidClient(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        sub = unverified_subject(client_assertion)
        if client_id and client_id != sub:
            raise InvalidClient(_BAD_CLIENT)
        return ClientCredentials(sub, "", PRIVATE_KEY_JWT, client_assertion)
    if client_id and client_secret:
        return ClientCredentials(client_id, client_secret, POST)
    if client_id:
        return ClientCredentials(client_id, "", NO_AUTH)
    raise InvalidClient("client authentication required")


async def authenticate(
    credentials: Presented,
    lookup: ClientLookup,
    peppers: dict[str, Pepper],
    assertions: AssertionContext | None = None,
    proven: ProvenSecrets | None = None,
    *,
    limiter: FailureLimiter | None = None,
) -> Client:
    """Return the authenticated client or raise ``InvalidClient``.

    A client may only use the method it registered (a secret client either secret method).
    With ``proven``, a secret already checked against the client's current hash is not checked
    again (see :class:`ProvenSecrets`). With ``limiter``, a failure is answered late once its
    (client_id, peer) or peer has failed too often (:class:`FailureLimiter`); a success costs
    nothing more.
    """
    # One coroutine frame on the success path (the issuance hot path): the proven-secret check
    # is inline rather than in a helper coroutine, and the limiter is touched only in the except.
    try:
        if proven is not None:
            # A Basic header (the norm for service clients) is recalled by its key alone, and
            # keyed again only if it must be remembered: no (key, known) pair, no method property.
            if isinstance(credentials, BasicHeader):
                known = proven.recall_basic(credentials.authorization)
            elif credentials.method in (BASIC, POST):
                known = proven.recall(credentials)[1]
            else:
                return await _authenticate(credentials, lookup, peppers, assertions)
            if known is not None:
                client = await lookup.get_client(known[0])
                if client is not None and proven.vouches(known, client, peppers):
                    return client
            client = await _authenticate(credentials, lookup, peppers, assertions)
            proven.remember(proven.key(credentials), client)
            return client
        return await _authenticate(credentials, lookup, peppers, assertions)
    except InvalidClient as exc:
        if limiter is not None:
            peer = request_peer.get()
            await limiter.hold_failure(
                _claimed_id(credentials), peer if isinstance(peer, str) else peer(), exc
            )
        raise


def _claimed_id(credentials: Presented) -> str:
    if isinstance(credentials, BasicHeader):
        try:
            return credentials.parse().client_id[:MAX_CREDENTIAL_LENGTH]
        except InvalidClient:
            return ""
    return credentials.client_id[:MAX_CREDENTIAL_LENGTH]


async def _authenticate(
    credentials: Presented,
    lookup: ClientLookup,
    peppers: dict[str, Pepper],
    assertions: AssertionContext | None,
) -> Client:
    if isinstance(credentials, BasicHeader):
        credentials = credentials.parse()
    if len(credentials.client_id) > MAX_CREDENTIAL_LENGTH:
        raise InvalidClient(_BAD_CLIENT)
    client = await lookup.get_client(credentials.client_id)
    method = credentials.method
    if method in (BASIC, POST):
        if (
            client is None
            or client.auth_method not in SECRET_METHODS
            or client.secret_hash is None
            or client.pepper_id not in peppers
        ):
            # Spend the same work as a real check so an unknown id is not a timing oracle.
            any_pepper = next(iter(peppers.values()))
            verify_secret(any_pepper, credentials.secret, _DUMMY_HASH)
            raise InvalidClient(_BAD_CLIENT)
        if not verify_secret(peppers[client.pepper_id], credentials.secret, client.secret_hash):
            raise InvalidClient(_BAD_CLIENT)
        return client
    if method == PRIVATE_KEY_JWT:
        if (
            client is None
            or assertions is None
            or client.auth_method != PRIVATE_KEY_JWT
            or not client.jwks_json
        ):
            raise InvalidClient(_BAD_CLIENT)
        verified = verify_client_assertion(
            credentials.assertion,
            client_id=client.client_id,
            jwks_json=client.jwks_json,
            audiences=assertions.audiences,
            now=assertions.clock.now(),
        )
        if not await assertions.replay.first_use(
            verified.client_id, verified.jti, verified.remember_until
        ):
            raise InvalidClient("client assertion was already used (jti replay, RFC 7523 §3)")
        return client
    if method == NO_AUTH:
        if client is not None and client.auth_method == TLS_CLIENT_AUTH:
            return _tls_client(client)
        if client is None or not client.is_public or client.auth_method != NO_AUTH:
            raise InvalidClient(_BAD_CLIENT)
        return client
    raise InvalidClient(_BAD_CLIENT)


def _tls_client(client: Client) -> Client:
    """RFC 8705 §2.1: the listener verified the chain; the certificate must carry the client's
    one registered identifier (§2.1.2). Without a certificate, or with another client's, the
    answer is the same invalid_client."""
    cert = mtls.current_certificate()
    if cert is None or not mtls.registered_identity_matches(
        cert,
        san_uri=client.tls_client_auth_san_uri,
        subject_dn=client.tls_client_auth_subject_dn,
        san_dns=client.tls_client_auth_san_dns,
    ):
        raise InvalidClient(_BAD_CLIENT)
    return client


# --- brute force and abuse (issue 13 item 8) -----------------------------------------------------


class PeerSource(Protocol):
    """A transport adapter's per-call object that also knows the caller's peer."""

    def peer(self) -> str:
        """The peer a limiter keys on (:func:`peer_from`)."""
        ...


def _peer_of_certificate_source() -> str:
    """The peer of the call's transport object when the adapter put one in
    ``mtls.request_certificate`` that knows it (servicekit.grpcmeta: one ``ContextVar`` set per
    call for both), else "" (unknown)."""
    peer: Callable[[], str] | None = getattr(mtls.request_certificate.get(), "peer", None)
    return peer() if peer is not None else ""


#: The caller's network identity for the current request, set by the transport adapter before it
#: authenticates: the peer (see :func:`peer_from`), or a function that resolves it, called only
#: when a failure needs it. Unset, a function that asks the call's certificate source (a
#: :class:`PeerSource` as well), "" when it has no peer (then only the per-client keys apply).
request_peer: ContextVar[str | Callable[[], str]] = ContextVar(
    "tokenry_request_peer", default=_peer_of_certificate_source
)


def peer_from(transport_peer: str, forwarded: str | None = None, *, trusted: bool = False) -> str:
    """The peer a limiter keys on.

    Args:
        transport_peer: the transport's peer (gRPC ``context.peer()``, e.g. ``ipv4:10.0.0.7:5123``,
            or the HTTP client host). Its port is dropped: one host, many connections.
        forwarded: the value of the configured trusted-proxy header (``X-Forwarded-For``
            style), if the request carried one.
        trusted: whether a trusted-proxy header is configured. Without it the header is ignored,
            so a client cannot pick its own peer to dodge the per-peer limit.
    """
    if trusted and forwarded:
        # The rightmost entry is the one the trusted proxy appended; earlier ones are the
        # client's own claims.
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:128]
    peer = transport_peer
    if peer.startswith(("ipv4:", "ipv6:")):
        peer = peer.partition(":")[2]
        peer = peer.rpartition(":")[0] or peer
        peer = peer.strip("[]").replace("%5B", "").replace("%5D", "")
    return peer[:128]


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``burst`` events at once, then ``per_second``."""

    burst: float
    per_second: float


@dataclass(frozen=True, slots=True)
class FailureLimits:
    """The failure limits (docs/security.md states them).

    Defaults: per (client_id, peer) 10 failures at once, then one every 2 s; per peer 100 at
    once, then 20/s; a held failure waits at most ``max_delay`` (2 s) and at most ``max_held``
    failures wait at the same time (beyond that they are answered at once: holding is a
    courtesy to the server, not a promise to the attacker). ``max_keys`` bounds the memory.
    """

    pair: Bucket = Bucket(10, 0.5)
    peer: Bucket = Bucket(100, 20.0)
    max_delay: float = 2.0
    max_held: int = 1024
    max_keys: int = 65_536


class _Buckets:
    """Token buckets by key, pure: ``take`` returns how long the event should have waited."""

    __slots__ = ("_bucket", "_entries", "_max_keys")

    def __init__(self, bucket: Bucket, max_keys: int) -> None:
        self._bucket = bucket
        self._max_keys = max_keys
        self._entries: dict[object, tuple[float, float]] = {}  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, key: object, now: float, floor: float) -> float:
        b = self._bucket
        tokens, at = self._entries.get(key, (b.burst, now))
        tokens = min(b.burst, tokens + max(0.0, now - at) * b.per_second) - 1.0
        # The deficit is bounded so that a flood ends: it never owes more than ``floor`` s.
        tokens = max(tokens, -floor * b.per_second)
        entries = self._entries
        if key not in entries and len(entries) >= self._max_keys:
            self._sweep(now)
        entries[key] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / b.per_second

    def _sweep(self, now: float) -> None:
        b = self._bucket
        full = [
            k for k, (t, at) in self._entries.items() if t + (now - at) * b.per_second >= b.burst
        ]
        for k in full:
            del self._entries[k]
        if len(self._entries) >= self._max_keys:  # still full: drop the oldest eighth
            for k in list(islice(self._entries, max(1, self._max_keys // 8))):
                del self._entries[k]


class FailureLimiter:
    """Delays failed client authentications only (issue 13 item 8).

    Pure apart from the injected ``sleep``: time comes from ``clock.monotonic()``. One instance
    per process, shared by every call on its event loop.
    """

    __slots__ = ("_clock", "_held", "_limits", "_pairs", "_peers", "_sleep")

    def __init__(
        self,
        clock: Clock,
        limits: FailureLimits | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._limits = limits = limits or FailureLimits()
        self._pairs = _Buckets(limits.pair, limits.max_keys)
        self._peers = _Buckets(limits.peer, limits.max_keys)
        self._sleep = sleep
        self._held = 0

    def __len__(self) -> int:
        return len(self._pairs) + len(self._peers)

    def failed(self, client_id: str, peer: str) -> float:
        """Record one failure; the seconds its answer should be held back (0: answer now)."""
        now = self._clock.monotonic()
        cap = self._limits.max_delay
        delay = self._pairs.take((client_id, peer), now, cap)
        if peer:
            delay = max(delay, self._peers.take(peer, now, cap))
        return min(delay, cap)

    async def hold_failure(self, client_id: str, peer: str, exc: InvalidClient) -> None:
        """Record the failure, add the retry hint to ``exc`` and hold the answer back."""
        delay = self.failed(client_id, peer)
        if delay <= 0:
            return
        retry_after = max(1, math.ceil(delay))
        exc.retry_after = retry_after  # type: ignore[attr-defined]
        exc.description = f"{exc.description}; retry after {retry_after} s"
        if self._held >= self._limits.max_held:
            return
        self._held += 1
        try:
            await self._sleep(delay)
        finally:
            self._held -= 1


class CallerLimiter:
    """Bounds the calls of each authenticated caller (introspection, issue 13 item 8): a token
    bucket per client id, per process. ``check`` raises ``TemporarilyUnavailable`` with a retry
    hint when the caller is over its rate.

    The bucket is kept in its one-number form (GCRA, the virtual-scheduling leaky bucket): per
    caller the time at which its bucket is full again, ``tat``. A call moves it one interval
    (1 / rate) later, from now at the earliest; the call is over the limit when ``tat`` lies
    more than ``burst`` intervals ahead. This is the token bucket of :class:`_Buckets`
    exactly (tokens = burst - (tat - now) * rate, refusals count too, and the deficit is bounded
    at one second), at a fraction of its cost on the introspector's warm path: one float per
    caller, no tuple, no min/max.
    """

    __slots__ = ("_interval", "_max_keys", "_monotonic", "_overdue", "_tat", "_tau")

    def __init__(
        self, clock: Clock, bucket: Bucket = Bucket(2000, 1000.0), max_keys: int = 65_536
    ) -> None:
        self._monotonic = clock.monotonic
        self._interval = 1.0 / bucket.per_second
        self._tau = bucket.burst * self._interval  # how far ahead tat may run
        self._overdue = self._tau + 1.0  # a flood owes at most one second more
        self._max_keys = max_keys
        self._tat: dict[str, float] = {}

    def check(self, client_id: str) -> None:
        now = self._monotonic()
        tat = self._tat.get(client_id)
        if tat is None:
            if len(self._tat) >= self._max_keys:
                self._sweep(now)
            tat = now
        elif tat < now:
            tat = now
        tat += self._interval
        if tat - now <= self._tau:
            self._tat[client_id] = tat
            return
        if tat - now > self._overdue:
            tat = now + self._overdue
        self._tat[client_id] = tat
        retry_after = max(1, math.ceil(tat - now - self._tau))
        raise TemporarilyUnavailable(
            f"too many calls from this client; retry after {retry_after} s"
        )

    def _sweep(self, now: float) -> None:
        full = [k for k, tat in self._tat.items() if tat <= now]
        for k in full:
            del self._tat[k]
        if len(self._tat) >= self._max_keys:  # still full: drop the oldest eighth
            for k in list(islice(self._tat, max(1, self._max_keys // 8))):
                del self._tat[k]


__all__ = [
    "AssertionContext",
    "Bucket",
    "CallerLimiter",
    "FailureLimiter",
    "FailureLimits",
    "AssertionReplay",
    "BasicHeader",
    "PeerSource",
    "Presented",
    "ProvenSecrets",
    "TOKEN_ENDPOINT_PATH",
    "ClientCredentials",
    "ClientLookup",
    "assertion_audiences",
    "authenticate",
    "credentials_from",
    "hash_secret",
    "parse_basic",
    "peer_from",
    "request_peer",
]
